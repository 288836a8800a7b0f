"""The reference site (City of Paris datacenter, Porte de la Chapelle) as a site config.

``paris_chapelle(...)`` builds the config document (a dict, dumped to YAML by
``dcim twin write-config``); ``examples/paris-chapelle.yaml`` is its output with the default
ports. Tests build it with free ports and a scale factor.

Addressing, as on a real site: every SNMP device (BMC, PDU, UPS) has its own agent
address (here: its own UDP port on 127.0.0.1); the electrical meters sit behind one Modbus
TCP gateway (unit ids 1..n), the heat meters behind another; the HVAC and heat-recovery
controllers each have their own Modbus TCP port; the greenhouse sensors publish on MQTT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SERVERS_PER_RACK = 10


@dataclass(frozen=True)
class HeatNetwork:
    """A hot-water district-heating network's temperatures, as its operator runs them: a
    weather-compensation curve ("loi d'eau") of the supply and the return on the outdoor
    daily-mean temperature, flat beyond its two knots and linear in between.

    The defaults are the CPCU's newer hot-water loops as the site describes them (about
    65 degC supply, docs/design.md), run as a 4th-generation network (Lund et al., "4th
    Generation District Heating", Energy 68, 2014: supply 50-70 degC, return 25-40 degC):
    65 degC through the cold half of the heating season, down to a 60 degC summer floor
    once heating stops (about 15 degC outside), the floor being what domestic hot water
    needs at the substations (55 degC at the heater's outlet against legionella, French
    arrete of 30 November 2005, plus the substation's approach). The return, 40 degC in
    winter (radiators and floor heating draw it down), rises to 45 degC in summer when only
    hot water is drawn (smaller temperature drop at the substations).
    """

    supply_winter_c: float = 65.0
    supply_summer_c: float = 60.0
    return_winter_c: float = 40.0
    return_summer_c: float = 45.0
    winter_below_c: float = 5.0  # outdoor daily mean at and below which the winter values hold
    summer_above_c: float = 15.0  # ... and at and above which the summer values hold

    def __post_init__(self) -> None:
        if not self.winter_below_c < self.summer_above_c:
            raise ValueError(
                f"heat network curve: winter knot {self.winter_below_c} degC must be below "
                f"the summer knot {self.summer_above_c} degC"
            )
        for season in ("winter", "summer"):
            sup, ret = getattr(self, f"supply_{season}_c"), getattr(self, f"return_{season}_c")
            if not ret < sup:
                raise ValueError(
                    f"heat network curve: {season} return {ret} degC must be below its "
                    f"supply {sup} degC"
                )

    def _curve(self, winter: float, summer: float, t_out_mean: float) -> float:
        x = (t_out_mean - self.winter_below_c) / (self.summer_above_c - self.winter_below_c)
        return winter + (summer - winter) * min(1.0, max(0.0, x))

    def supply_c(self, t_out_mean: float) -> float:
        """Network supply temperature, degC, at this outdoor daily-mean temperature."""
        return self._curve(self.supply_winter_c, self.supply_summer_c, t_out_mean)

    def return_c(self, t_out_mean: float) -> float:
        """Network return temperature, degC, at this outdoor daily-mean temperature."""
        return self._curve(self.return_winter_c, self.return_summer_c, t_out_mean)


CPCU = HeatNetwork()  # the reference site's network (CPCU hot-water loop)

# (name, profile, role, upstream)
ELECTRICAL_METERS: list[tuple[str, str | None, str | None]] = [
    ("meter-incomer", "grid_incomer", None),
    ("meter-ups-a-out", "ups_output", None),
    ("meter-ups-b-out", "ups_output", None),
    ("meter-cooling", "cooling_board", None),
    ("meter-heatpumps", "heat_pump_board", "meter-incomer"),
    ("meter-aux", None, None),
]
HEAT_METERS: list[tuple[str, str]] = [
    ("hm-recovery", "heat_recovered"),
    ("hm-cpcu", "heat_export_cpcu"),
    ("hm-greenhouse", "heat_export_greenhouse"),
]
CRAH_UNITS = 6
HEAT_PUMPS = 2
DRY_COOLERS = 2
GREENHOUSE_ZONES = 4


def paris_chapelle(
    *,
    racks: int = 30,
    servers_per_rack: int = SERVERS_PER_RACK,
    snmp_base_port: int = 16100,
    modbus_base_port: int = 15020,
    mqtt_port: int = 1883,
    interval_s: float = 10.0,
    spool_dir: str = "var/spool",
    sink: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
) -> dict[str, Any]:
    """The site document. SNMP devices take ports ``snmp_base_port`` upwards (one each),
    Modbus endpoints ``modbus_base_port`` upwards."""
    snmp_port = iter(range(snmp_base_port, 65536))
    modbus_port = iter(range(modbus_base_port, 65536))
    community = {"value": "public"}
    half = max(1, racks // 2)
    rooms = [{"name": "salle-a"}, {"name": "salle-b"}]
    rack_list = [
        {"name": f"R{r:02d}", "room": "salle-a" if r <= half else "salle-b"}
        for r in range(1, racks + 1)
    ]
    devices: list[dict[str, Any]] = []

    def snmp_dev(name: str, profile: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "snmp",
            "profile": profile,
            "host": host,
            "port": next(snmp_port),
            "snmp": {"version": "2c", "community": community},
            **extra,
        }

    for ups in ("a", "b"):
        devices.append(snmp_dev(f"ups-{ups}", "ups_rfc1628", room="salle-a"))
    for rack in rack_list:
        rn = rack["name"]
        for side in ("A", "B"):
            devices.append(snmp_dev(f"pdu-{rn}-{side}", "apc_rpdu2", rack=rn, role="pdu_output"))
        for s in range(1, servers_per_rack + 1):
            devices.append(snmp_dev(f"srv-{rn}-{s:02d}", "bmc_server", rack=rn))

    power_gw = next(modbus_port)
    for unit, (name, role, upstream) in enumerate(ELECTRICAL_METERS, start=1):
        dev: dict[str, Any] = {
            "name": name,
            "protocol": "modbus",
            "profile": "energy_meter_3ph",
            "host": host,
            "port": power_gw,
            "modbus": {"unit_id": unit},
        }
        if role:
            dev["role"] = role
        if upstream:
            dev["upstream"] = upstream
        devices.append(dev)
    heat_gw = next(modbus_port)
    for unit, (name, role) in enumerate(HEAT_METERS, start=1):
        devices.append(
            {
                "name": name,
                "protocol": "modbus",
                "profile": "heat_meter_en1434",
                "host": host,
                "port": heat_gw,
                "modbus": {"unit_id": unit},
                "role": role,
            }
        )

    def modbus_dev(name: str, profile: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "protocol": "modbus",
            "profile": profile,
            "host": host,
            "port": next(modbus_port),
            "modbus": {"unit_id": 1},
            **extra,
        }

    devices.append(modbus_dev("hx-1", "plate_heat_exchanger"))
    for i in range(1, HEAT_PUMPS + 1):
        devices.append(modbus_dev(f"hp-{i}", "heat_pump"))
    for i in range(1, CRAH_UNITS + 1):
        devices.append(
            modbus_dev(f"crah-{i}", "crah", room="salle-a" if i <= CRAH_UNITS // 2 else "salle-b")
        )
    for i in range(1, DRY_COOLERS + 1):
        devices.append(modbus_dev(f"drycooler-{i}", "dry_cooler"))
    devices.append(modbus_dev("wm-1", "water_meter", role="water"))
    for z in range(1, GREENHOUSE_ZONES + 1):
        devices.append(
            {
                "name": f"gh-zone-{z}",
                "protocol": "mqtt",
                "profile": "greenhouse_climate",
                "mqtt": {"topic": f"dcim/paris-chapelle/greenhouse/zone-{z}/climate"},
                "tags": {"zone": f"zone-{z}"},
            }
        )

    return {
        "site": {
            "name": "paris-chapelle",
            "timezone": "Europe/Paris",
            "description": (
                "City of Paris datacenter, Porte de la Chapelle (digital twin addresses)"
            ),
        },
        "defaults": {"interval_s": interval_s, "timeout_s": 2.0, "retries": 1, "jitter_s": 0.0},
        "rooms": rooms,
        "racks": rack_list,
        "mqtt": {"host": host, "port": mqtt_port, "qos": 1},
        "storage": {
            "spool_dir": spool_dir,
            "sink": sink or {"type": "embedded", "path": "var/dcim.sqlite"},
        },
        "devices": devices,
    }
