"""The digital twin's site model: every simulated device's values at any time, and the truth.

``SiteModel(cfg, t0=..., seed=...)`` maps each device of the config to a simulated entity
by its profile (or, for a profile unknown here, its measurement), role and rack, and
simulates the plant with :mod:`dcim.twin.physics`. ``values(device, t)`` gives every
canonical field (glossary in docs/architecture.md) at UNIX time ``t >= t0``;
``series(device, ts)`` the same over an array of times (what :func:`backfill` uses).

Counters (``*_total``) are integrals from ``t0`` of their rate, starting at a realistic
non-zero index: the linear parts (IT load per rack/PDU/UPS output) exactly, the rest with
the trapezoid rule on a 1 s grid from ``t0`` (cached per hour of model time), linearly
interpolated in between. :meth:`SiteModel.truth` takes its figures from the same
integrals, so ``truth(t1, t2).counters[(dev, f)] == values(dev, t2)[f] - values(dev, t1)[f]``.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from dcim.config import Device, SiteConfig
from dcim.twin import physics as ph
from dcim.twin.backfill import backfill, device_series  # backfill re-exported
from dcim.twin.physics import Arr
from dcim.twin.site import CPCU, HeatNetwork

# profile -> (measurement, canonical fields), as in the glossary of docs/architecture.md
_GLOSSARY = """
ups_rfc1628 ups input_power_w output_power_w output_load_pct battery_charge_pct battery_status
    on_battery battery_runtime_min
apc_rpdu2 pdu power_w energy_wh_total current_a voltage_v
bmc_server server inlet_temp_c power_w
energy_meter_3ph energy_meter energy_wh_total power_w power_l1_w power_l2_w power_l3_w
    voltage_l1_v voltage_l2_v voltage_l3_v current_l1_a current_l2_a current_l3_a frequency_hz
    power_factor
heat_meter_en1434 heat_meter heat_energy_wh_total volume_m3_total heat_power_w flow_m3_per_h
    supply_temp_c return_temp_c status
plate_heat_exchanger heat_exchanger primary_supply_temp_c primary_return_temp_c
    secondary_supply_temp_c secondary_return_temp_c heat_power_w primary_flow_m3_per_h
heat_pump heat_pump electrical_power_w heat_output_w electrical_energy_wh_total
    heat_energy_wh_total source_inlet_temp_c source_outlet_temp_c supply_temp_c return_temp_c
    cop running fault_code
crah crah supply_air_temp_c return_air_temp_c fan_power_w cooling_power_w valve_pct
dry_cooler dry_cooler power_w heat_rejected_w fan_speed_pct water_inlet_temp_c
    water_outlet_temp_c outdoor_temp_c
water_meter water_meter volume_m3_total
greenhouse_climate greenhouse air_temp_c humidity_pct co2_ppm
"""
GLOSSARY: dict[str, tuple[str, tuple[str, ...]]] = {
    w[0]: (w[1], tuple(w[2:]))
    for w in (e.split() for e in _GLOSSARY.replace("\n    ", " ").strip().splitlines())
}
KIND_OF_MEASUREMENT = {m: k for k, (m, _) in GLOSSARY.items()}
INT_FIELDS = frozenset({"battery_status", "on_battery", "status", "running", "fault_code"})
BLOCK = 3600  # 1 s grid points per cached integration block
U_NOM = 0.45  # utilisation at which "nominal" sizes are taken


@dataclass
class GroundTruth:
    """True energies over [start, end] (UNIX s). Wh unless stated; counters in their unit."""

    start: float
    end: float
    counters: dict[tuple[str, str], float]  # (device, counter field) -> increase
    e_it_wh: dict[int, float]  # PUE category -> IT energy (1 UPS output, 2 PDU output)
    e_dc_wh: float  # grid incomer less the heat-pump board(s) downstream of it
    e_heat_pump_wh: float
    heat_cpcu_wh: float
    heat_greenhouse_wh: float
    heat_recovered_wh: float

    def pue(self, category: int = 1) -> float:
        return self.e_dc_wh / self.e_it_wh[category]


@dataclass
class _Flow:
    """A rate (W, or m3/h) = a + c . S(t) + num . series(t); counter = index + scale * integral."""

    a: float
    c: Arr  # (K,) weights of the smooth basis
    num: Arr  # (n_series,) weights of the numeric series (series 0: utilisation u)
    scale: float = 1.0 / 3600.0  # W s -> Wh, (m3/h) s -> m3
    index: float = 0.0


@dataclass
class _Dev:
    kind: str
    unit: int = 0  # index among the simulated units of its kind (rack for servers/PDUs)
    share: float = 1.0
    counters: dict[str, _Flow] = field(default_factory=dict)
    rate: _Flow | None = None  # energy meters, PDUs: their power
    extra: dict[str, float] = field(default_factory=dict)
    name: str = ""


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


class SiteModel:
    """The reference site's physics, as device values and ground truth (see module doc)."""

    glossary = GLOSSARY  # for dcim.twin.backfill, which must not import this module

    def __init__(
        self, cfg: SiteConfig, *, t0: float, seed: int = 1, network: HeatNetwork = CPCU
    ) -> None:
        self.cfg, self.t0, self.seed = cfg, float(t0), seed
        self.network = network  # the heat network's supply/return curve
        rng = np.random.default_rng([seed, 0])
        self.basis = ph.Waves.make(rng, ph.K_BASIS, 300.0, 6 * 3600.0, 1.0)
        self.drift = ph.Waves.make(rng, 3, 2 * 3600.0, 9 * 3600.0, 0.04)
        self.weather = ph.Waves.make(rng, 5, 1.5 * ph.DAY, 9 * ph.DAY, 3.5)
        self.grid_v = ph.Waves.make(rng, 4, 600.0, 3 * 3600.0, 0.008)
        self.grid_f = ph.Waves.make(rng, 4, 60.0, 1800.0, 0.03)
        self.clock = ph.Clock(cfg.site.timezone)
        try:
            self._profiles = cfg.profiles()
        except Exception:  # noqa: BLE001 - profiles being written elsewhere: glossary only
            self._profiles = {}
        self.devices: dict[str, _Dev] = {}
        self._lock = threading.Lock()
        self._blocks: OrderedDict[int, tuple[Arr, Arr]] = OrderedDict()
        self._build()
        self._prefix: list[Arr] = [np.zeros(self.n_series)]
        self._set_indexes()

    # -- topology ---------------------------------------------------------------------------
    def _rng(self, *parts: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, *(_crc(p) for p in parts)])

    def kind_of(self, dev: Device) -> str | None:
        """The glossary profile this device is simulated as (None: not simulated)."""
        if dev.profile in GLOSSARY:
            return dev.profile
        prof = self._profiles.get(dev.profile)
        return KIND_OF_MEASUREMENT.get(prof.measurement) if prof is not None else None

    def _build(self) -> None:
        K = ph.K_BASIS
        by_kind: dict[str, list[Device]] = {}
        for d in self.cfg.devices:
            kind = self.kind_of(d)
            if kind is not None:
                by_kind.setdefault(kind, []).append(d)
        servers, pdus = by_kind.get("bmc_server", []), by_kind.get("apc_rpdu2", [])
        racks = [r.name for r in self.cfg.racks]
        for d in servers + pdus:
            rk = d.rack or "_unracked"
            if rk not in racks:
                racks.append(rk)
        srv_names = [d.name for d in servers]
        srv_rack = [racks.index(d.rack or "_unracked") for d in servers]
        if not racks:  # no IT in the config: the reference site's, unmonitored
            racks = [f"_R{r:02d}" for r in range(30)]
            srv_names = [f"_srv{r}-{s}" for r in range(30) for s in range(10)]
            srv_rack = [r for r in range(30) for _ in range(10)]
        self.racks = racks
        room_of = {r.name: r.room for r in self.cfg.racks}
        n_r, n_s = len(racks), len(srv_names)
        # servers: power = idle + span * (g u + w . S)
        self.srv_idle, self.srv_span, self.srv_g = np.zeros(n_s), np.zeros(n_s), np.zeros(n_s)
        self.srv_w, self.srv_pos = np.zeros((n_s, K)), np.zeros(n_s)
        self.srv_rack = np.array(srv_rack, dtype=np.int64)
        for i, name in enumerate(srv_names):
            r = self._rng("server", name)
            self.srv_idle[i], self.srv_span[i] = r.uniform(180, 260), r.uniform(300, 440)
            self.srv_g[i], self.srv_pos[i] = r.uniform(0.75, 1.2), r.uniform(0.0, 1.2)
            w = r.normal(size=K)
            self.srv_w[i] = w * 0.08 * r.uniform(0.5, 1.0) / np.abs(w).sum()
        # racks: servers + storage/network gear
        ra, rb, rc = np.zeros(n_r), np.zeros(n_r), np.zeros((n_r, K))
        self.rack_inlet, rack_delta = np.zeros(n_r), np.zeros(n_r)
        for j, name in enumerate(racks):
            r = self._rng("rack", name)
            gear = r.uniform(800, 2200)
            w = r.normal(size=K)
            ra[j], rc[j] = gear, gear * 0.03 * w / np.abs(w).sum()
            self.rack_inlet[j], rack_delta[j] = r.uniform(0.0, 1.8), r.uniform(-0.03, 0.03)
        np.add.at(ra, self.srv_rack, self.srv_idle)
        np.add.at(rb, self.srv_rack, self.srv_span * self.srv_g)
        np.add.at(rc, self.srv_rack, self.srv_span[:, None] * self.srv_w)
        # UPS feeding: PDU j of a rack -> UPS j mod n; racks without PDUs: shared
        ups_devs = by_kind.get("ups_rfc1628", [])
        n_ups = len(ups_devs) or 2
        feed = np.zeros((n_ups, n_r))
        pdu_rows: list[tuple[str, int, float]] = []
        for j, rk in enumerate(racks):
            mine = sorted(d.name for d in pdus if (d.rack or "_unracked") == rk)
            if not mine:
                feed[:, j] += 1.0 / n_ups
                continue
            if len(mine) == 2:
                fr = [0.5 + rack_delta[j], 0.5 - rack_delta[j]]
            else:
                raw = [1.0 + self._rng("pdu", p).uniform(-0.05, 0.05) for p in mine]
                fr = [x / sum(raw) for x in raw]
            for k, (p, f) in enumerate(zip(mine, fr, strict=True)):
                feed[k % n_ups, j] += f
                pdu_rows.append((p, j, f))
        feed *= 1.0 + ph.DIST_LOSS
        # CRAHs: each rack's heat to the CRAHs of its room (all CRAHs if none there)
        crah_devs = by_kind.get("crah", [])
        n_crah = len(crah_devs) or 1
        share = np.zeros((n_crah, n_r))
        for j, rk in enumerate(racks):
            here = [i for i, d in enumerate(crah_devs) if d.room and d.room == room_of.get(rk)]
            idx = here or list(range(n_crah))
            share[idx, j] = 1.0 / len(idx)
        self.rows = (ra, rb, rc)
        self.ups_rows = (feed @ ra, feed @ rb, feed @ rc)
        self.crah_rows = (
            share @ (ra * (1 + ph.DIST_LOSS)),
            share @ (rb * (1 + ph.DIST_LOSS)),
            share @ (rc * (1 + ph.DIST_LOSS)),
        )
        nom = float((self.ups_rows[0] + self.ups_rows[1] * U_NOM).sum())
        hp_devs = by_kind.get("heat_pump", [])
        n_hp = len(hp_devs) or 2
        eta = np.array(
            [ph.HP_ETA + self._rng("hp", str(i)).uniform(-0.02, 0.02) for i in range(n_hp)]
        )
        crah_nom = np.maximum(self.crah_rows[0] + self.crah_rows[1] * U_NOM, 1000.0)
        sa_off = np.array([self._rng("crah", str(c)).uniform(-0.3, 0.3) for c in range(n_crah)])
        self.plant = ph.Plant(
            nom=nom,
            ups_rated=1.25 * nom / max(1, n_ups - 1),
            crah_nom=crah_nom,
            crah_sa_off=sa_off,
            hp_eta=eta,
            network=self.network,
        )
        self.n_ups, self.n_hp = n_ups, n_hp
        self.n_dc = len(by_kind.get("dry_cooler", [])) or 2
        # numeric series (integrated on the grid)
        names = [
            "u",
            *(f"ups_in{j}" for j in range(n_ups)),
            "cooling",
            "aux",
            *(f"hp_elec{i}" for i in range(n_hp)),
            *(f"hp_heat{i}" for i in range(n_hp)),
            "q_loop",
            "v_loop",
            "heat_cpcu",
            "v_cpcu",
            "heat_gh",
            "v_gh",
            "water",
        ]
        self.sidx = {n: i for i, n in enumerate(names)}
        self.n_series = len(names)
        self._map_devices(by_kind, servers, pdu_rows)

    def _flow(
        self,
        a: float = 0.0,
        c: Arr | None = None,
        b: float = 0.0,
        num: dict[str, float] | None = None,
    ) -> _Flow:
        v = np.zeros(self.n_series)
        v[0] = b
        for k, x in (num or {}).items():
            v[self.sidx[k]] += x
        return _Flow(a, np.zeros(ph.K_BASIS) if c is None else c, v)

    def _map_devices(
        self,
        by_kind: dict[str, list[Device]],
        servers: list[Device],
        pdu_rows: list[tuple[str, int, float]],
    ) -> None:
        ra, rb, rc = self.rows
        ua, ub, uc = self.ups_rows
        for i, d in enumerate(servers):
            self.devices[d.name] = _Dev("bmc_server", i)
        for p, j, f in pdu_rows:
            fl = self._flow(float(f * ra[j]), f * rc[j], float(f * rb[j]))
            self.devices[p] = _Dev("apc_rpdu2", j, f, {"energy_wh_total": fl}, fl)
        for kind in (
            "ups_rfc1628",
            "crah",
            "heat_pump",
            "dry_cooler",
            "greenhouse_climate",
            "plate_heat_exchanger",
        ):
            for i, d in enumerate(by_kind.get(kind, [])):
                self.devices[d.name] = _Dev(kind, i)
        for i, d in enumerate(by_kind.get("heat_pump", [])):
            u = i % self.n_hp
            self.devices[d.name].counters = {
                "electrical_energy_wh_total": self._flow(num={f"hp_elec{u}": 1.0}),
                "heat_energy_wh_total": self._flow(num={f"hp_heat{u}": 1.0}),
            }
        # energy meters by role
        meters = by_kind.get("energy_meter_3ph", [])
        groups: dict[str, list[Device]] = {}
        for d in meters:
            groups.setdefault(d.role or "aux", []).append(d)
        every = {f"ups_in{j}": 1.0 for j in range(self.n_ups)}
        every |= {f"hp_elec{i}": 1.0 for i in range(self.n_hp)}
        for role, devs in groups.items():
            s = 1.0 / len(devs)
            for k, d in enumerate(devs):
                if role == "grid_incomer":
                    fl = self._flow(num={"cooling": s, "aux": s} | {n: s for n in every})
                elif role == "ups_output" and len(devs) == self.n_ups:
                    fl = self._flow(float(ua[k]), uc[k], float(ub[k]))
                elif role == "ups_output":
                    fl = self._flow(float(s * ua.sum()), s * uc.sum(0), float(s * ub.sum()))
                elif role in ("pdu_output", "it_input"):
                    fl = self._flow(float(s * ra.sum()), s * rc.sum(0), float(s * rb.sum()))
                elif role == "cooling_board":
                    fl = self._flow(num={"cooling": s})
                elif role == "heat_pump_board":
                    fl = self._flow(num={f"hp_elec{i}": s for i in range(self.n_hp)})
                elif role == "renewable_onsite":
                    fl = self._flow()
                else:
                    fl = self._flow(num={"aux": s})
                self.devices[d.name] = _Dev("energy_meter_3ph", k, s, {"energy_wh_total": fl}, fl)
        # heat meters by role (or name), water meters
        loops: dict[str, list[Device]] = {}
        for d in by_kind.get("heat_meter_en1434", []):
            n = d.name.lower()
            loop = {"heat_export_cpcu": "cpcu", "heat_export_greenhouse": "gh"}.get(
                d.role or "", "cpcu" if "cpcu" in n else "gh" if "green" in n else "loop"
            )
            loops.setdefault(loop, []).append(d)
        for loop, devs in loops.items():
            q, v = ("q_loop", "v_loop") if loop == "loop" else (f"heat_{loop}", f"v_{loop}")
            for d in devs:
                s = 1.0 / len(devs)
                self.devices[d.name] = _Dev(
                    "heat_meter_en1434",
                    0,
                    s,
                    {
                        "heat_energy_wh_total": self._flow(num={q: s}),
                        "volume_m3_total": self._flow(num={v: s}),
                    },
                    extra={"loop": float(["loop", "cpcu", "gh"].index(loop))},
                )
        wms = by_kind.get("water_meter", [])
        for d in wms:
            self.devices[d.name] = _Dev(
                "water_meter",
                0,
                1.0 / len(wms),
                {"volume_m3_total": self._flow(num={"water": 1.0 / len(wms)})},
            )
        for name, dev in self.devices.items():
            dev.name = name

    def _set_indexes(self) -> None:
        """Initial meter indexes: 0.3-1.5 years of service at the rate seen at t0, kept
        below 1.9e9 (Wh or m3) so any 32-bit register holds them."""
        at = ph.At(self, np.array([self.t0]))
        for name, dev in self.devices.items():
            for fname, fl in dev.counters.items():
                r = self._rng("index", name, fname)
                volume = fname.startswith("volume")
                rate = max(float(at.rate(fl)[0]), 0.5 if volume else 0.02 * self.plant.nom)
                fl.index = min(rate * r.uniform(2600, 13000), 1.9e9 * r.uniform(0.3, 0.9))

    # -- integration --------------------------------------------------------------------------
    def _block(self, k: int) -> tuple[Arr, Arr, Arr]:
        """(rates on the grid (n_series, BLOCK+1), cumulative trapezoid, integral at its start)."""
        with self._lock:
            while len(self._prefix) <= k:
                j = len(self._prefix) - 1
                _, cum = self._compute_block(j)
                self._prefix.append(self._prefix[j] + cum[:, -1])
            got = self._compute_block(k)
            return got[0], got[1], self._prefix[k]

    def _compute_block(self, k: int) -> tuple[Arr, Arr]:
        if k in self._blocks:
            self._blocks.move_to_end(k)
            return self._blocks[k]
        ts = self.t0 + (k * BLOCK + np.arange(BLOCK + 1)).astype(np.float64)
        p = ph.At(self, ts).series
        cum = np.zeros_like(p)
        np.cumsum((p[:, 1:] + p[:, :-1]) * 0.5, axis=1, out=cum[:, 1:])
        self._blocks[k] = (p, cum)
        if len(self._blocks) > 16:
            self._blocks.popitem(last=False)
        return p, cum

    def integrals(self, ts: Arr, rows: list[int] | None = None) -> Arr:
        """Integral from t0 of each numeric series at each time, (n_series, T), unit*s.
        ``rows``: compute only these series (the others are left 0)."""
        tau = ts - self.t0
        if tau.size and float(tau.min()) < 0:
            raise ValueError(f"time {float(ts.min())} is before the model start t0={self.t0}")
        r = np.arange(self.n_series) if rows is None else np.asarray(rows, dtype=np.int64)
        ks = np.floor(tau / BLOCK).astype(np.int64)
        out = np.zeros((self.n_series, ts.size))
        for k in np.unique(ks).tolist():
            m = ks == k
            p, cum, base = self._block(k)
            x = tau[m] - k * BLOCK
            i = np.minimum(np.floor(x).astype(np.int64), BLOCK - 1)
            f = x - i
            p0, p1 = p[np.ix_(r, i)], p[np.ix_(r, i + 1)]
            out[np.ix_(r, np.flatnonzero(m))] = (
                base[r, None] + cum[np.ix_(r, i)] + f * p0 + 0.5 * f * f * (p1 - p0)
            )
        return out

    def counter_rows(self, device: str) -> list[int]:
        """The numeric series the counters of ``device`` integrate."""
        rows = {k for fl in self.devices[device].counters.values() for k in np.flatnonzero(fl.num)}
        return sorted(int(k) for k in rows)

    def counter(self, fl: _Flow, ts: Arr, integ: Arr) -> Arr:
        lin = fl.a * (ts - self.t0) + ph.dot(fl.c, self.basis.basis_integral(ts, self.t0))
        for k in np.flatnonzero(fl.num).tolist():
            lin = lin + fl.num[k] * integ[k]
        return np.asarray(fl.index + fl.scale * lin)

    # -- public API ------------------------------------------------------------------------------
    def fields_of(self, device: str) -> tuple[str, ...]:
        return GLOSSARY[self.devices[device].kind][1]

    def series(self, device: str, ts: Arr, integrals: Arr | None = None) -> dict[str, Arr]:
        """Every canonical field of ``device`` at each time of ``ts`` (UNIX s, >= t0).
        ``integrals``: ``self.integrals(ts)`` if the caller has it already."""
        dev = self.devices.get(device)
        if dev is None:
            raise KeyError(
                f"device {device!r} is not simulated by the twin (unknown or "
                "profile without a simulated kind)"
            )
        ts = np.asarray(ts, dtype=np.float64)
        out = device_series(self, dev, ph.At(self, ts, integrals))
        return {f: out[f] for f in GLOSSARY[dev.kind][1]}

    def values(self, device: str, t: float) -> dict[str, float | int]:
        """Every canonical field of ``device`` at UNIX time ``t`` (>= t0), counters included."""
        s = self.series(device, np.array([float(t)]))
        return {k: v.tolist()[0] for k, v in s.items()}

    def truth(self, start: float, end: float) -> GroundTruth:
        """The true energies over [start, end] (UNIX s, t0 <= start <= end)."""
        ts = np.array([float(start), float(end)])
        integ = self.integrals(ts)
        counters: dict[tuple[str, str], float] = {}
        for name, dev in self.devices.items():
            for fname, fl in dev.counters.items():
                c = self.counter(fl, ts, integ)
                counters[(name, fname)] = float(c[1] - c[0])
        d = (integ[:, 1] - integ[:, 0]) / 3600.0  # Wh (or m3/h * h)
        s = self.sidx

        def sum_of(*keys: str) -> float:
            return float(sum(d[s[k]] for k in keys))

        tau = ts - self.t0
        sint = self.basis.basis_integral(ts, self.t0)

        def lin(a: Arr, b: Arr, c: Arr) -> float:
            v = a.sum() * tau + c.sum(0) @ sint
            return float(v[1] - v[0]) / 3600.0 + float(b.sum()) * float(d[0])

        ups_in = [f"ups_in{j}" for j in range(self.n_ups)]
        hp = [f"hp_elec{i}" for i in range(self.n_hp)]
        e_it = {1: lin(*self.ups_rows), 2: lin(*self.rows)}
        e_dc = sum_of(*ups_in, "cooling", "aux")
        by_role = self._role_sums(counters)
        if "ups_output" in by_role:
            e_it[1] = by_role["ups_output"]
        if "pdu_output" in by_role:
            e_it[2] = by_role["pdu_output"]
        if "grid_incomer" in by_role:
            e_dc = by_role["grid_incomer"] - by_role.get("_hp_board_downstream", 0.0)
        return GroundTruth(
            start=float(start),
            end=float(end),
            counters=counters,
            e_it_wh=e_it,
            e_dc_wh=e_dc,
            e_heat_pump_wh=sum_of(*hp),
            heat_cpcu_wh=by_role.get("heat_export_cpcu", sum_of("heat_cpcu")),
            heat_greenhouse_wh=by_role.get("heat_export_greenhouse", sum_of("heat_gh")),
            heat_recovered_wh=by_role.get("heat_recovered", sum_of("q_loop")),
        )

    def _role_sums(self, counters: dict[tuple[str, str], float]) -> dict[str, float]:
        """Counter increases summed per role (enabled devices), as the KPIs would sum them."""
        from dcim.config import ROLE_FIELD

        out: dict[str, float] = {}
        incomers = {d.name for d in self.cfg.devices_with_role("grid_incomer")}
        for d in self.cfg.devices:
            if not d.enabled or d.role is None or (d.name, ROLE_FIELD[d.role]) not in counters:
                continue
            v = counters[(d.name, ROLE_FIELD[d.role])]
            out[d.role] = out.get(d.role, 0.0) + v
            if d.role == "heat_pump_board" and d.upstream in incomers:
                out["_hp_board_downstream"] = out.get("_hp_board_downstream", 0.0) + v
        return out


__all__ = ["GroundTruth", "SiteModel", "backfill", "GLOSSARY"]
