"""IAPWS-IF97 region 1 and the saturation line, coded in dcim.kpi.if97, against the release's
verification values and against the ``iapws`` package."""

from __future__ import annotations

import random

import pytest
from iapws import IAPWS97
from iapws.iapws97 import _PSat_T

from dcim.kpi import if97

# IAPWS-IF97 (2007 revision), Table 5: T K, p MPa, v m3/kg, h kJ/kg (9 significant digits)
TABLE5 = [
    (300.0, 3.0, 0.100215168e-2, 0.115331273e3),
    (300.0, 80.0, 0.971180894e-3, 0.184142828e3),
    (500.0, 3.0, 0.120241800e-2, 0.975542239e3),
]
# Table 35: T K, p_s MPa
TABLE35 = [(300.0, 0.353658941e-2), (500.0, 0.263889776e1), (600.0, 0.123443146e2)]


@pytest.mark.parametrize(("t_k", "p", "v", "h"), TABLE5)
def test_region1_verification_values(t_k: float, p: float, v: float, h: float) -> None:
    rho, h_j = if97.region1(t_k, p)
    assert 1 / rho == pytest.approx(v, rel=5e-9) and h_j / 1000 == pytest.approx(h, rel=5e-9)


@pytest.mark.parametrize(("t_k", "p_s"), TABLE35)
def test_saturation_pressure_verification_values(t_k: float, p_s: float) -> None:
    assert if97.saturation_pressure(t_k) == pytest.approx(p_s, rel=5e-9)


def test_same_as_iapws_over_the_plant_range() -> None:
    rng = random.Random(5)
    for _ in range(500):
        t_k, p = rng.uniform(273.65, 413.15), rng.uniform(0.05, 2.5)
        if p < _PSat_T(t_k):
            with pytest.raises(ValueError, match="not liquid water"):
                if97.region1(t_k, p)
            continue
        ref = IAPWS97(T=t_k, P=p)
        rho, h = if97.region1(t_k, p)
        assert rho == pytest.approx(ref.rho, rel=1e-12)
        assert h == pytest.approx(ref.h * 1000, rel=1e-12)


def test_outside_region1_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="boils below 0.101418 MPa"):
        if97.region1(373.15, 0.1)
    with pytest.raises(ValueError, match="outside IAPWS-IF97 region 1 .0-350 degC"):
        if97.region1(700.0, 20.0)
    with pytest.raises(ValueError, match="up to 100 MPa"):
        if97.region1(300.0, 120.0)
