"""Reports rendered from the KPI code: the monthly heat-delivery statement (``dcim report
heat``), as PDF, CSV and JSON with the same figures, and the yearly EU data-centre report
(``dcim report eed``). Nothing is imported here: the site-file
models (:mod:`dcim.reports.settings`) are imported by :mod:`dcim.config`."""

from __future__ import annotations


def missing_extra() -> str | None:
    """The message for an install without the ``report`` extra, else None."""
    import importlib.util

    gone = [m for m in ("typst", "matplotlib", "babel") if importlib.util.find_spec(m) is None]
    if not gone:
        return None
    return (
        f"dcim report needs {', '.join(gone)}: install the report extra, "
        "pip install 'dcim-heat[report]'"
    )
