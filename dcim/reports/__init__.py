"""Reports rendered from the KPI code: the yearly EU data-centre report (``dcim report eed``)."""
