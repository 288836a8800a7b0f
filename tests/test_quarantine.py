"""``dcim quarantine``: what the database refused, readable while the collector runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dcim.cli import main
from dcim.forwarder import Forwarder
from dcim.reading import Reading
from dcim.spool import Spool
from dcim.storage.sqlite import SqliteStore

T = 1_790_000_000 * 1_000_000_000


def rd(i: int, value: float) -> Reading:
    return Reading("pdu", {"site": "s", "device": "pdu-1"}, {"power_w": value}, T + i)


def test_list_show_requeue_drop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool_dir = tmp_path / "spool"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(
        yaml.safe_dump({"site": {"name": "s"}, "storage": {"spool_dir": str(spool_dir)}})
    )
    store = SqliteStore(tmp_path / "s.sqlite")
    with Spool(spool_dir) as sp:  # the running collector holds the spool
        sp.append([rd(1, 1.0), rd(2, float("nan")), rd(3, 3.0)])
        assert Forwarder(sp, store, batch_size=10, backoff_initial_s=0.01).flush(5)
        assert main(["quarantine", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert (
            "1 quarantined batch(es)" in out
            and "1 reading(s)" in out
            and "nan in pdu.power_w" in out
        )
        (qid,) = (x.id for x in sp.quarantined())
        assert main(["quarantine", str(cfg), "show", str(qid)]) == 0
        assert "not encodable" in capsys.readouterr().out  # NaN: the reason it was refused
        assert main(["quarantine", str(cfg), "requeue", str(qid)]) == 1
        assert "stop the collector" in capsys.readouterr().err
    assert main(["quarantine", str(cfg), "show"]) == 2
    assert main(["quarantine", str(cfg), "show", "999"]) == 1
    assert main(["quarantine", str(cfg), "requeue", str(qid)]) == 0
    with Spool(spool_dir) as sp:
        assert sp.pending() == 1 and sp.quarantined() == []
        Forwarder(sp, store, batch_size=10, backoff_initial_s=0.01).flush(5)  # back again
        (qid,) = (x.id for x in sp.quarantined())
    assert main(["quarantine", str(cfg), "drop", str(qid)]) == 0
    with Spool(spool_dir) as sp:
        assert sp.quarantined() == [] and sp.pending() == 0
    store.close()
