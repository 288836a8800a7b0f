"""The Modbus collector against the twin's Modbus servers on 127.0.0.1 (free ports)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.modbus.codec import FieldCodec, field_codecs
from collectors.modbus.options import ModbusOptions
from collectors.modbus.poller import BACKOFF_MIN_S, make_poller
from dcim.config import Device, SiteConfig
from dcim.profiles import load_profile
from dcim.protocols import PollError
from dcim.twin.ports import free_ports
from dcim.twin.serve_modbus import ModbusTwin
from dcim.twin.site import paris_chapelle

SAMPLE = Path(__file__).resolve().parents[3] / "collectors" / "modbus" / "sample.yaml"

# Canonical values the fake site serves; device k adds k * step(field) so units differ.
BASE: dict[str, float] = {
    "energy_wh_total": 1_234_567_890,
    "power_w": 250_000.0,
    "power_factor": 0.97,
    "voltage_l1_v": 230.1,
    "voltage_l2_v": 231.2,
    "voltage_l3_v": 229.8,
    "current_l1_a": 360.5,
    "current_l2_a": 355.25,
    "current_l3_a": 362.75,
    "power_l1_w": 83_250.0,
    "power_l2_w": 82_000.5,
    "power_l3_w": 84_749.5,
    "frequency_hz": 50.02,
    "heat_energy_wh_total": 3_000_000_000,
    "volume_m3_total": 123_456.789,
    "heat_power_w": 412_345,
    "flow_m3_per_h": 35.123,
    "supply_temp_c": 38.25,
    "return_temp_c": 28.5,
    "status": 0,
    "meter_serial": 71_234_567,
    "primary_supply_temp_c": 40.1,
    "primary_return_temp_c": 30.2,
    "secondary_supply_temp_c": 37.3,
    "secondary_return_temp_c": 27.4,
    "primary_flow_m3_per_h": 35.12,
    "electrical_power_w": 150_000,
    "heat_output_w": 517_500,
    "electrical_energy_wh_total": 123_456_789,
    "source_inlet_temp_c": 35.5,
    "source_outlet_temp_c": 30.5,
    "cop": 3.45,
    "running": 1,
    "fault_code": 0,
    "supply_air_temp_c": 21.3,
    "return_air_temp_c": 35.2,
    "fan_power_w": 3500.25,
    "cooling_power_w": 80_000.5,
    "valve_pct": 45.6,
    "heat_rejected_w": 250_000.5,
    "fan_speed_pct": 55.5,
    "water_inlet_temp_c": 45.1,
    "water_outlet_temp_c": 35.2,
    "outdoor_temp_c": -3.4,
}


def site(
    profile_dirs: list[str] | None = None, timeout_s: float = 1.0, retries: int = 1
) -> SiteConfig:
    """The reference site's Modbus devices (2 racks), on free ports."""
    doc = paris_chapelle(racks=2, servers_per_rack=2, modbus_base_port=free_ports(16))
    doc["devices"] = [d for d in doc["devices"] if d["protocol"] == "modbus"]
    doc["defaults"].update(timeout_s=timeout_s, retries=retries)
    if profile_dirs:
        doc["profile_dirs"] = profile_dirs
    return SiteConfig.model_validate(doc)


def step(f: FieldCodec) -> float:
    return 0.5 if f.type.startswith("float") else 10 * f.scale


def fake_values(cfg: SiteConfig) -> Callable[[str], Mapping[str, float | int]]:
    profiles = cfg.profiles()
    table: dict[str, dict[str, float | int]] = {}
    for k, dev in enumerate(cfg.devices):
        vals: dict[str, float | int] = {}
        for f in field_codecs(profiles[dev.profile]):
            vals[f.name] = k % 2 if f.type == "bool" else BASE[f.name] + k * step(f)
        table[dev.name] = vals
    return table.__getitem__


def tolerance(f: FieldCodec, value: float) -> float:
    if f.type == "float32":
        return abs(value) * 1e-6 + 1e-6
    if f.type == "float64":
        return abs(value) * 1e-12
    return abs(f.scale) / 2 + 1e-9


def run(
    cfg: SiteConfig,
    body: Callable[[ModbusTwin], Awaitable[Any]],
    twin_cfg: SiteConfig | None = None,
) -> Any:
    async def go() -> Any:
        twin = ModbusTwin(twin_cfg or cfg, fake_values(twin_cfg or cfg))
        await twin.start()
        try:
            return await body(twin)
        finally:
            await twin.stop()

    return asyncio.run(go())


def test_reads_every_field_of_every_profile() -> None:
    cfg = site()
    values = fake_values(cfg)
    profiles = cfg.profiles()

    async def body(twin: ModbusTwin) -> None:
        seen: set[str] = set()
        for dev in cfg.devices:
            poller = make_poller(cfg, dev)
            t0 = time.time_ns()
            [reading] = await poller.poll()
            await poller.close()
            prof = profiles[dev.profile]
            assert reading.measurement == prof.measurement
            assert reading.tags == cfg.tags_of(dev)
            assert t0 <= reading.time_ns <= time.time_ns()
            assert set(reading.fields) == prof.field_names, dev.name
            for f in field_codecs(prof):
                want, got = values(dev.name)[f.name], reading.fields[f.name]
                assert abs(float(got) - want) <= tolerance(f, want), (dev.name, f.name, got, want)
                if f.as_int:
                    assert isinstance(got, int), (dev.name, f.name)
            seen.add(dev.profile)
        assert seen == {
            "energy_meter_3ph",
            "heat_meter_en1434",
            "plate_heat_exchanger",
            "heat_pump",
            "crah",
            "dry_cooler",
            "water_meter",
        }

    run(cfg, body)


def test_only_read_function_codes_and_one_connection_per_gateway() -> None:
    cfg = site()
    codes: list[int] = []

    async def body(twin: ModbusTwin) -> None:
        answer = twin._answer

        def spy(gw: Any, unit: int, pdu: bytes) -> bytes | None:
            codes.append(pdu[0])
            return answer(gw, unit, pdu)

        twin._answer = spy  # type: ignore[method-assign,assignment]
        pollers = [make_poller(cfg, d) for d in cfg.devices]
        await asyncio.gather(*(p.poll() for p in pollers))
        gateway = twin._gateways[("127.0.0.1", cfg.device("meter-incomer").port or 0)]
        assert len(gateway.units) == 6 and len(gateway.connections) == 1
        for p in pollers:
            await p.close()

    run(cfg, body)
    assert codes and set(codes) <= {1, 2, 3, 4}


def test_unreachable_unit_times_out_while_the_others_on_its_gateway_read() -> None:
    timeout, retries = 0.3, 1
    cfg = site(timeout_s=timeout, retries=retries)
    meters = [d for d in cfg.devices if d.profile == "energy_meter_3ph"]
    assert len({(d.host, d.port) for d in meters}) == 1 and len(meters) == 6

    async def body(twin: ModbusTwin) -> None:
        pollers = [make_poller(cfg, d) for d in meters]
        await asyncio.gather(*(p.poll() for p in pollers))  # connected and warm
        twin.set_unreachable("meter-ups-a-out")
        t0 = time.monotonic()
        results = await asyncio.gather(*(p.poll() for p in pollers), return_exceptions=True)
        elapsed = time.monotonic() - t0
        for dev, res in zip(meters, results, strict=True):
            if dev.name == "meter-ups-a-out":
                assert isinstance(res, PollError) and res.kind == "timeout", res
            else:
                assert isinstance(res, list) and res[0].fields["energy_wh_total"], (
                    dev.name,
                    res,
                )
        # The dead unit holds the shared connection for its own timeouts only, then gives up.
        assert elapsed < timeout * (retries + 1) + 0.5
        twin.set_unreachable("meter-ups-a-out", False)
        assert (await pollers[1].poll())[0].fields
        for p in pollers:
            await p.close()

    run(cfg, body)


def _override(tmp_path: Path, name: str, extra: list[dict[str, Any]], keep: bool = True) -> None:
    from dcim.profiles import BUILTIN_DIR

    doc = yaml.safe_load((BUILTIN_DIR / f"{name}.yaml").read_text())
    doc["fields"] = (doc["fields"] if keep else []) + extra
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    load_profile(tmp_path / f"{name}.yaml")


def test_exception_response_for_one_block_leaves_the_other_fields(tmp_path: Path) -> None:
    # The collector's profile has a field the device does not have: that request gets
    # exception 02 (illegal data address), the rest of the poll is kept.
    _override(
        tmp_path, "energy_meter_3ph", [{"name": "thd_pct", "address": 21299, "type": "float32"}]
    )
    cfg = site([str(tmp_path)])
    twin_cfg = SiteConfig.model_validate(cfg.model_dump() | {"profile_dirs": []})

    async def body(twin: ModbusTwin) -> None:
        poller = make_poller(cfg, cfg.device("meter-cooling"))
        [reading] = await poller.poll()
        await poller.close()
        assert "thd_pct" not in reading.fields
        assert set(reading.fields) == cfg.profiles()["energy_meter_3ph"].field_names - {"thd_pct"}

    run(cfg, body, twin_cfg)


def test_poll_fails_when_every_request_gets_an_exception(tmp_path: Path) -> None:
    _override(
        tmp_path,
        "water_meter",
        [{"name": "volume_m3_total", "kind": "counter", "address": 40000, "type": "float64"}],
        keep=False,
    )
    cfg = site([str(tmp_path)])
    twin_cfg = SiteConfig.model_validate(cfg.model_dump() | {"profile_dirs": []})

    async def body(twin: ModbusTwin) -> None:
        poller = make_poller(cfg, cfg.device("wm-1"))
        with pytest.raises(PollError) as err:
            await poller.poll()
        await poller.close()
        assert err.value.kind == "protocol" and "illegal data address" in str(err.value)

    run(cfg, body, twin_cfg)


def test_refused_then_reconnects_with_backoff() -> None:
    cfg = site(timeout_s=0.5, retries=0)
    dev = cfg.device("hm-cpcu")

    async def go() -> None:
        poller = make_poller(cfg, dev)
        ep = poller._ep()
        attempts = 0
        connect = ep.client.connect

        async def counted() -> bool:
            nonlocal attempts
            attempts += 1
            return await connect()

        ep.client.connect = counted  # type: ignore[method-assign]
        with pytest.raises(PollError) as err:
            await poller.poll()
        assert err.value.kind == "refused" and attempts == 1
        # Within the backoff: fails at once, same kind, no new connect attempt.
        for _ in range(3):
            with pytest.raises(PollError) as err:
                await poller.poll()
            assert err.value.kind == "refused" and "next connect attempt in" in str(err.value)
        assert attempts == 1
        twin = ModbusTwin(cfg, fake_values(cfg))
        await twin.start()
        await asyncio.sleep(BACKOFF_MIN_S * 1.1)
        assert "heat_energy_wh_total" in (await poller.poll())[0].fields
        assert attempts == 2 and ep.connect_failures == 0
        await twin.stop()  # drops the connection
        with pytest.raises(PollError) as err:
            await poller.poll()
        assert err.value.kind == "refused"
        # Each failed connect doubles the wait: 0.5, 1, 2 s (+-10 %).
        while ep.connect_failures < 3:
            await asyncio.sleep(max(0.0, ep._retry_at - time.monotonic()))
            before = ep.connect_failures
            with pytest.raises(PollError):
                await poller.poll()
            n = ep.connect_failures
            assert n == before + 1
            wait = ep._retry_at - time.monotonic()
            assert 0.85 * BACKOFF_MIN_S * 2 ** (n - 1) < wait <= 1.1 * BACKOFF_MIN_S * 2 ** (n - 1)
        twin = ModbusTwin(cfg, fake_values(cfg))
        await twin.start()
        try:
            await asyncio.sleep(max(0.0, ep._retry_at - time.monotonic()))
            assert "heat_energy_wh_total" in (await poller.poll())[0].fields
            assert ep.connect_failures == 0
        finally:
            await poller.close()
            await twin.stop()

    asyncio.run(go())


def test_a_dead_gateway_costs_its_units_one_connect_attempt() -> None:
    cfg = site(timeout_s=0.5, retries=0)
    meters = [d for d in cfg.devices if d.profile == "energy_meter_3ph"]

    async def go() -> None:
        pollers = [make_poller(cfg, d) for d in meters]
        ep = pollers[0]._ep()
        assert all(p._ep() is ep for p in pollers)  # one endpoint for the gateway
        attempts = 0
        connect = ep.client.connect

        async def counted() -> bool:
            nonlocal attempts
            attempts += 1
            return await connect()

        ep.client.connect = counted  # type: ignore[method-assign]
        t0 = time.monotonic()
        results = await asyncio.gather(*(p.poll() for p in pollers), return_exceptions=True)
        assert time.monotonic() - t0 < 0.5
        assert all(isinstance(r, PollError) and r.kind == "refused" for r in results), results
        assert attempts == 1
        for p in pollers:
            await p.close()

    asyncio.run(go())


def test_sample_config_is_a_valid_device_with_and_without_its_defaults() -> None:
    text = SAMPLE.read_text()
    dev = Device.model_validate(yaml.safe_load(text))
    assert dev.protocol == "modbus" and dev.options_as(ModbusOptions) == ModbusOptions()
    # Every commented-out default ('# key: value', not '## prose') must be valid when enabled.
    uncommented = re.sub(r"(?m)^# ", "", text)
    full = Device.model_validate(yaml.safe_load(uncommented))
    assert full.options_as(ModbusOptions).unit_id == 1 and full.timeout_s is not None and full.tags
    assert SiteConfig.model_validate({"site": {"name": "x"}, "devices": [yaml.safe_load(text)]})
