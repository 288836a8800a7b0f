"""The structure of the EU data-centre report: Commission Delegated Regulation (EU) 2024/1364,
Annex I (information on the data centre, the items a site file gives), Annex II (key
performance indicators: 1 energy and sustainability, 2 ICT capacity, 3 data traffic) and
Annex III (the sustainability indicators computed from them: PUE, WUE, ERF, REF).

Items (in the annexes' order), symbols and units as the annexes word them (OJ L,
2024/1364, 17.5.2024, ELI http://data.europa.eu/eli/reg_del/2024/1364/oj), written without
the annexes' text at hand: docs/eed.md says what was searched, what was not found, and which
items secondary sources add (backup generators' energy, redundancy levels) to check first.
``source`` says where each value comes from: ``kpi:<figure>`` (the KPI report of the same year,
:mod:`dcim.kpi.period`), ``declared:<key>`` (the site file's ``reports.eed`` section), or
a name computed in
:mod:`dcim.reports.eed` (``twh``, ``renewable:<kind>``, ``potable``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    indicator: str  # as the annex words it
    symbol: str  # the annex's symbol, "" where it has none
    unit: str
    source: str

    @property
    def key(self) -> str:
        """Machine name in the JSON and CSV: the annex's symbol, else the source key."""
        return self.symbol.replace("-", "_") or self.source.split(":")[-1]


@dataclass(frozen=True)
class Section:
    ref: str
    title: str
    items: tuple[Item, ...]


SECTIONS: tuple[Section, ...] = (
    Section(
        "I",
        "Information on the data centre",
        (
            Item("total floor area", "", "m2", "declared:total_floor_area_m2"),
            Item("computer room floor area", "", "m2", "declared:computer_room_floor_area_m2"),
            Item("installed power", "Pinstalled", "kW", "declared:installed_power_kw"),
            Item(
                "installed information technology power demand",
                "PDIT",
                "kW",
                "declared:installed_it_power_kw",
            ),
        ),
    ),
    Section(
        "II.1",
        "Energy and sustainability key performance indicators",
        (
            Item("total energy consumption", "EDC", "kWh", "kpi:e_dc_kwh"),
            Item(
                "total energy consumption of the information technology equipment",
                "EIT",
                "kWh",
                "kpi:e_it",
            ),
            Item("total water input", "WIN", "m3", "kpi:water_m3"),
            Item("total potable water input", "WIN-POT", "m3", "potable"),
            Item("waste heat reused", "EREUSE", "kWh", "kpi:e_reuse_kwh"),
            Item("average waste heat temperature", "TWH", "°C", "twh"),
            Item(
                "average setpoint information technology equipment intake air temperature",
                "TIN",
                "°C",
                "declared:it_intake_setpoint_c",
            ),
            Item(
                "type of refrigerants used in the cooling and refrigeration equipment",
                "",
                "",
                "declared:refrigerants",
            ),
            Item(
                "cooling degree days", "CDD", "degree days", "declared:cooling_degree_days"
            ),  # fmt: skip
            Item(
                "total renewable energy consumption",
                "ERES-TOT",
                "kWh",
                "kpi:e_renewable_kwh",
            ),
            Item(
                "total renewable energy consumption from Guarantees of Origin",
                "ERES-GOO",
                "kWh",
                "renewable:guarantees_of_origin",
            ),
            Item(
                "total renewable energy consumption from Power Purchasing Agreements",
                "ERES-PPA",
                "kWh",
                "renewable:ppa",
            ),
            Item(
                "total renewable energy consumption from on-site renewables",
                "ERES-OS",
                "kWh",
                "renewable:onsite",
            ),
        ),
    ),
    Section(
        "II.2",
        "ICT capacity key performance indicators",
        (
            Item("ICT capacity for servers", "CSERV", "", "declared:server_capacity"),
            Item(
                "ICT capacity for storage equipment",
                "CSTOR",
                "PB",
                "declared:storage_capacity_pb",
            ),
        ),
    ),
    Section(
        "II.3",
        "Data traffic key performance indicators",
        (
            Item(
                "incoming traffic bandwidth", "", "Gbps", "declared:incoming_bandwidth_gbps"
            ),  # fmt: skip
            Item(
                "outgoing traffic bandwidth", "", "Gbps", "declared:outgoing_bandwidth_gbps"
            ),  # fmt: skip
            Item("incoming data traffic", "", "EB", "declared:incoming_traffic_eb"),
            Item("outgoing data traffic", "", "EB", "declared:outgoing_traffic_eb"),
        ),
    ),
    Section(
        "III",
        "Data centre sustainability indicators",
        (
            Item("power usage effectiveness", "PUE", "", "kpi:pue"),
            Item("water usage effectiveness", "WUE", "L/kWh", "kpi:wue"),
            Item("energy reuse factor", "ERF", "", "kpi:erf"),
            Item("renewable energy factor", "REF", "", "kpi:ref"),
        ),
    ),
)


def items() -> list[tuple[Section, Item]]:
    return [(s, i) for s in SECTIONS for i in s.items]
