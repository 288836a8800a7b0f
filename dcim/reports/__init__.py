"""Reports rendered from the KPI code: the monthly heat-delivery statement (``dcim report
heat``), as PDF, CSV and JSON with the same figures, and the yearly EU data-centre report
(``dcim report eed``). Nothing is imported here: the site-file
models (:mod:`dcim.reports.settings`) are imported by :mod:`dcim.config`."""
