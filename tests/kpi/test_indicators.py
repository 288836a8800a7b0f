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
