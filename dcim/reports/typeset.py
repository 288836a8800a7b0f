"""PDF typesetting with Typst (the PyPI ``typst`` package bundles the compiler: no system
package). A report is a Typst template that reads its figures from ``data.json``."""

from __future__ import annotations

import json
import tempfile
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

TEMPLATES = "dcim.reports.templates"


def template_source(name: str) -> str:
    """The text of the template ``name`` shipped in :mod:`dcim.reports.templates`."""
    return (package_files(TEMPLATES) / name).read_text(encoding="utf-8")


def render_pdf(template: str, data: dict[str, Any], files: dict[str, bytes] | None = None) -> bytes:
    """The PDF of ``template`` (a shipped template's name, e.g. ``"eed.typ"``, or Typst source)
    with ``data`` as ``data.json`` and ``files`` (name -> bytes: charts, logos) beside it.
    The compilation runs in a throwaway folder: a template reads nothing else."""
    source = template_source(template) if template.endswith(".typ") else template
    with tempfile.TemporaryDirectory(prefix="dcim-typst-") as tmp:
        root = Path(tmp)
        (root / "main.typ").write_text(source, encoding="utf-8")
        (root / "data.json").write_text(json.dumps(data), encoding="utf-8")
        for name, blob in (files or {}).items():
            (root / name).write_bytes(blob)
        import typst  # a compiled extension: loaded only when a PDF is made

        pdf = typst.compile(str(root / "main.typ"), root=str(root), ignore_system_fonts=False)
    assert isinstance(pdf, bytes)
    return pdf
