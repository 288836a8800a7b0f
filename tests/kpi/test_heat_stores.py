"""``integrated_heat`` on the embedded store: reading the three means together
(``SqliteStore.window_means``) gives the same result, to the last bit, as one ``aggregate``
per field; so does a month-long read on the rollups."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from dcim.config import SiteConfig
from dcim.kpi.gather import heat_meters
from dcim.kpi.heat import integrated_heat
from dcim.reading import Reading
from dcim.storage.base import means_by_field
from dcim.storage.sqlite import SqliteStore
from dcim.twin.site import paris_chapelle

S = 1_000_000_000
H = 3600 * S
T0 = 472_222 * H  # 2023-11-14 22:00 UTC


class AggregateOnly:
    """The store's own ``aggregate``, and ``window_means`` the long way (one ``aggregate``
    per field, :func:`means_by_field`), as a store without a faster one answers."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    def aggregate(self, **kw: Any) -> Any:
        return self.store.aggregate(**kw)

    def window_means(self, **kw: Any) -> Any:
        return means_by_field(self, **kw)  # type: ignore[arg-type]


def test_window_means_and_aggregate_give_the_same_heat(tmp_path: Path) -> None:
    cfg = SiteConfig.model_validate(paris_chapelle())
    dev = heat_meters(cfg)[0]
    rng = random.Random(3)
    st = SqliteStore(tmp_path / "s.sqlite")
    tags = {"site": cfg.site.name, "device": dev.name}
    readings = []
    for i in range(5 * 360):  # 5 h every 10 s, a hole, a window with a sensor fault value
        t = T0 + i * 10 * S + rng.randrange(S)
        if 2 * H < t - T0 < 2 * H + 600 * S:
            continue
        supply = -327.68 if 3 * H < t - T0 < 3 * H + 60 * S else rng.uniform(55, 65)
        fields: dict[str, float | int | bool | str] = {
            "flow_m3_per_h": rng.uniform(10, 20),
            "supply_temp_c": supply,
            "return_temp_c": rng.uniform(35, 45),
        }
        readings.append(Reading("heat_meter", dict(tags), fields, t))
    st.write(readings)
    st.maintain(now_ns=T0 + 8 * H)
    for a, b in [(T0, T0 + 5 * H), (T0 + 17 * S, T0 + 4 * H + 1234 * S), (T0, T0 + 2 * H)]:
        got = integrated_heat(st, cfg, dev, a, b, measurement="heat_meter")
        want = integrated_heat(AggregateOnly(st), cfg, dev, a, b, measurement="heat_meter")  # type: ignore[arg-type]
        assert got == want
        assert got.value_wh is not None and math.isfinite(got.value_wh) and got.windows > 60
    with st._reader() as con:  # the whole hours: from the 1-minute rollups as stored
        names = ("flow_m3_per_h", "supply_temp_c", "return_temp_c")
        assert st._stored_means(con, "heat_meter", names, T0, T0 + 5 * H, 60, tags)
    faulty = integrated_heat(st, cfg, dev, T0, T0 + 5 * H, measurement="heat_meter")
    assert faulty.invalid and faulty.invalid[0].field == "supply_temp_c"
    assert faulty.completeness < 1.0  # the hole and the fault value
    st.close()
