"""dcim.cmdline: a sub-command's site file, or every error in it and exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcim.cmdline import load_or_exit

ROOT = Path(__file__).resolve().parent.parent


def test_loads_a_good_site() -> None:
    cfg = load_or_exit(ROOT / "examples" / "paris-chapelle.yaml")
    assert cfg.site.name == "paris-chapelle"


def test_bad_site_prints_every_error_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {name: x}\ndefaults: {interval_s: -1, timeout_s: -2}\n")
    with pytest.raises(SystemExit) as exc:
        load_or_exit(bad)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error(s) in the configuration" in err
    assert "interval_s" in err and "timeout_s" in err, err
    assert str(bad) in err, err
