import math

import pytest

from dcim.kpi import indicators

# Worked example from DESIGN.md (kWh; the functions are unit-agnostic ratios).
E_IT, E_DC, E_REUSE = 8_760_000.0, 11_826_000.0, 2_500_000.0


def test_worked_example() -> None:
    assert indicators.pue(E_DC, E_IT) == pytest.approx(1.35, abs=5e-5)
    assert indicators.erf(E_REUSE, E_DC) == pytest.approx(0.211399, abs=5e-7)
    assert indicators.ere(E_DC, E_REUSE, E_IT) == pytest.approx(1.064612, abs=5e-7)


def test_ere_is_one_minus_erf_times_pue() -> None:
    pue = indicators.pue(E_DC, E_IT)
    erf = indicators.erf(E_REUSE, E_DC)
    assert pue is not None and erf is not None
    assert indicators.ere(E_DC, E_REUSE, E_IT) == pytest.approx((1 - erf) * pue)


@pytest.mark.parametrize("e_it", [0.0, None, math.nan, -1.0])
def test_pue_undefined_without_it_energy(e_it: float | None) -> None:
    assert indicators.pue(100.0, e_it) is None


def test_missing_numerator_is_none_not_zero() -> None:
    assert indicators.pue(None, 10.0) is None
    assert indicators.erf(None, 10.0) is None
    assert indicators.erf(1.0, 0.0) is None


def test_partial_pue() -> None:
    assert indicators.partial_pue(300.0, 1000.0) == pytest.approx(1.3)


def test_ref_worked_values() -> None:
    assert indicators.ref(2_956_500.0, E_DC) == pytest.approx(0.25)
    assert indicators.ref(0.0, E_DC) == 0.0
    assert indicators.ref(2 * E_DC, E_DC) == 1.0  # surplus does not count beyond E_DC
    assert indicators.ref(1.0, 0.0) is None
    assert indicators.ref(None, E_DC) is None


def test_cue_worked_values() -> None:
    # French grid 0.052 kgCO2eq/kWh, no renewable: 11,826,000 kWh -> 614,952 kgCO2eq
    assert indicators.carbon_kg(E_DC * 1000, 0.0, 0.052) == pytest.approx(614_952.0)
    assert indicators.cue(E_DC * 1000, 0.0, E_IT * 1000, 0.052) == pytest.approx(0.0702)
    # a quarter of E_DC renewable: (11,826,000 - 2,956,500) * 0.052 / 8,760,000
    assert indicators.cue(E_DC, E_DC / 4, E_IT, 0.052) == pytest.approx(0.05265)
    assert indicators.carbon_kg(E_DC, 2 * E_DC, 0.052) == 0.0  # never negative
    assert indicators.cue(E_DC, 0.0, 0.0, 0.052) is None
    assert indicators.cue(E_DC, None, E_IT, 0.052) is None


def test_wue_worked_values() -> None:
    # 17,520 m3 of water for 8,760,000 kWh of IT energy -> 2 L/kWh
    assert indicators.wue(17_520_000.0, E_IT * 1000) == pytest.approx(2.0)
    assert indicators.wue(0.0, E_IT * 1000) == 0.0
    assert indicators.wue(1.0, 0.0) is None
    assert indicators.wue(-1.0, E_IT) is None


def test_heat_recovery_ratio_and_energy_balance() -> None:
    assert indicators.heat_recovery_ratio(8_322_000.0, E_IT) == pytest.approx(0.95)
    assert indicators.heat_recovery_ratio(1.0, None) is None
    ok_ratio, ok_off = indicators.energy_balance(8_322_000.0, E_IT, 0.15)
    assert ok_ratio == pytest.approx(0.95) and not ok_off
    ratio, off = indicators.energy_balance(4_380_000.0, E_IT, 0.15)
    assert ratio == pytest.approx(0.5) and off
    assert indicators.energy_balance(None, E_IT, 0.15) == (None, False)


def test_seasonal_cop() -> None:
    assert indicators.seasonal_cop(3_600_000.0, 1_000_000.0) == pytest.approx(3.6)
    assert indicators.seasonal_cop(100.0, 0.0) is None  # heat pump did not run
    assert indicators.seasonal_cop(None, 10.0) is None


def test_heat_pump_electricity_inside_e_dc_is_flagged_and_corrected() -> None:
    # The worked-example site with 1,000,000 kWh of heat-pump electricity wrongly inside E_DC.
    chk = indicators.check_boundary(12_826_000.0, 1_000_000.0, hp_inside=True)
    assert chk.flagged and "boundary error" in chk.note
    assert chk.e_dc_wh == pytest.approx(E_DC)
    assert indicators.pue(chk.e_dc_wh, E_IT) == pytest.approx(1.35, abs=5e-5)
    # uncorrected, the PUE would look 0.11 worse
    assert indicators.pue(12_826_000.0, E_IT) == pytest.approx(1.4642, abs=5e-5)


def test_boundary_unknown_or_outside() -> None:
    outside = indicators.check_boundary(E_DC, 1_000_000.0, hp_inside=False)
    assert not outside.flagged and outside.e_dc_wh == E_DC
    unknown = indicators.check_boundary(E_DC, 1_000_000.0, hp_inside=None)
    assert unknown.flagged and "may be inside" in unknown.note and unknown.e_dc_wh == E_DC
    unmetered = indicators.check_boundary(E_DC, None, hp_inside=True)
    assert unmetered.flagged and unmetered.e_dc_wh is None
