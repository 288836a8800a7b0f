"""PDF typesetting with Typst (the ``typst`` wheel: a self-contained engine with its own
fonts, nothing else to install): a template from ``dcim/reports/templates/`` reads its data
from ``data.json`` beside it, and its images from ``files``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typst

TEMPLATES = Path(__file__).parent / "templates"


def render_pdf(template: str, data: dict[str, Any], files: dict[str, bytes] | None = None) -> bytes:
    """The PDF of ``template`` (a file name under ``dcim/reports/templates/``, or Typst
    source) with ``data``
    as ``data.json`` and ``files`` (name -> bytes: charts) in its folder. Only the fonts
    embedded in Typst are used, so the output does not depend on the machine's fonts."""
    source = (
        (TEMPLATES / template).read_text(encoding="utf-8")
        if template.endswith(".typ")
        else template
    )
    with tempfile.TemporaryDirectory(prefix="dcim-typst-") as tmp:
        root = Path(tmp)
        (root / "main.typ").write_text(source, encoding="utf-8")
        (root / "data.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        for name, content in (files or {}).items():
            (root / name).write_bytes(content)
        pdf = typst.compile(str(root / "main.typ"), root=str(root), ignore_system_fonts=True,
                            format="pdf")  # fmt: skip
    if not isinstance(pdf, bytes):
        raise RuntimeError("typst returned no PDF")
    return pdf
