"""Water properties and the EN 1434 heat coefficient."""

from __future__ import annotations

import numpy as np
import pytest
from iapws import IAPWS95, IAPWS97

from dcim.kpi import water

# IAPWS-IF97 (2007 revision), Table 5: region 1 verification values, printed to 9 digits.
# (T K, p MPa, v m3/kg, h kJ/kg, u kJ/kg, s kJ/(kg K), cp kJ/(kg K), w m/s)
IF97_TABLE_5 = [
    (
        300,
        3,
        0.100215168e-2,
        0.115331273e3,
        0.112324818e3,
        0.392294792,
        0.417301218e1,
        0.150773921e4,
    ),
    (
        300,
        80,
        0.971180894e-3,
        0.184142828e3,
        0.106448356e3,
        0.368563852,
        0.401008987e1,
        0.163469054e4,
    ),
    (
        500,
        3,
        0.120241800e-2,
        0.975542239e3,
        0.971934985e3,
        0.258041912e1,
        0.465580682e1,
        0.124071337e4,
    ),
]


@pytest.mark.parametrize("row", IF97_TABLE_5, ids=lambda r: f"{r[0]}K-{r[1]}MPa")
def test_if97_verification_values(row: tuple[float, ...]) -> None:
    t, p, v, h, u, s, cp, w = row
    st = IAPWS97(T=t, P=p)
    got = (st.v, st.h, st.u, st.s, st.cp, st.w)
    for value, expected in zip(got, (v, h, u, s, cp, w), strict=True):
        assert value == pytest.approx(expected, rel=5e-9)  # 9 significant digits
    if t - water.KELVIN <= water.T_MAX_C:  # the same through our direct function
        rho, h_j = water.properties(t - water.KELVIN, p)
        assert 1 / rho == pytest.approx(v, rel=5e-9) and h_j / 1000 == pytest.approx(h, rel=5e-9)


def test_interpolated_tables_match_the_direct_computation() -> None:
    rng = np.random.default_rng(3)
    temps = rng.uniform(1.0, 129.0, 200)
    for p in (0.3, water.DEFAULT_PRESSURE_MPA):
        direct = np.array([water.properties(float(t), p) for t in temps])
        assert np.allclose(water.density(temps, p), direct[:, 0], rtol=1e-7, atol=0)
        assert np.allclose(water.enthalpy(temps, p), direct[:, 1], rtol=0, atol=0.01)  # J/kg
    tf = rng.uniform(45.0, 110.0, 200)
    tr = tf - rng.uniform(3.0, 40.0, 200)
    k = [water.heat_coefficient(a, b, sensor="return") for a, b in zip(tf, tr, strict=True)]
    exact = []
    for a, b in zip(tf, tr, strict=True):
        rho_r, h_r = water.properties(float(b))
        exact.append(rho_r * (water.properties(float(a))[1] - h_r) / (a - b))
    assert np.allclose(k, exact, rtol=1e-6, atol=0)


def test_hvac_shortcut_is_off_by_about_0_65_percent_at_40_30() -> None:
    k = water.heat_coefficient(40.0, 30.0, sensor="return") / 3.6e6  # kWh/(m3 K)
    assert 1.163 / k - 1 == pytest.approx(0.0065, abs=0.0015)
    assert k == pytest.approx(1.1557, abs=0.0005)


def test_sensor_position_changes_k_by_the_density_ratio() -> None:
    k_ret = water.heat_coefficient(65.0, 35.0, sensor="return")
    k_sup = water.heat_coefficient(65.0, 35.0, sensor="supply")
    ratio = water.density(65.0) / water.density(35.0)
    assert k_sup / k_ret == pytest.approx(ratio, rel=1e-12)
    assert 0.98 < ratio < 0.99  # the supply pipe's water is ~1.5 % lighter


def test_pressure_moves_k_very_little() -> None:
    for tf, tr in ((30.0, 25.0), (45.0, 35.0), (65.0, 40.0), (90.0, 60.0)):
        lo = water.heat_coefficient(tf, tr, sensor="return", p_mpa=0.3)
        hi = water.heat_coefficient(tf, tr, sensor="return", p_mpa=1.6)
        assert abs(hi / lo - 1) < 3e-4


def test_equal_temperatures_give_rho_cp() -> None:
    k = water.heat_coefficient(50.0, 50.0, sensor="return")
    st = IAPWS97(T=50.0 + water.KELVIN, P=water.DEFAULT_PRESSURE_MPA)
    assert k == pytest.approx(st.rho * st.cp * 1000, rel=1e-4)


def test_heat_energy_of_a_steady_flow() -> None:
    t = [10.0 * i for i in range(361)]
    n = len(t)
    q = water.heat_energy_wh(t, [10.0] * n, [65.0] * n, [40.0] * n, sensor="return")
    k = water.heat_coefficient(65.0, 40.0, sensor="return")
    assert q == pytest.approx(k * 25.0 * 10.0 / 3600.0, rel=1e-12)  # Wh over one hour
    assert water.heat_energy_wh([0.0], [1.0], [50.0], [40.0], sensor="return") == 0.0


def test_out_of_range_temperature_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="180.00 degC outside 0.5-130 degC"):
        water.density([20.0, 180.0])
    with pytest.raises(ValueError, match="-327.68 degC outside 0.5-130 degC"):
        water.enthalpy(-327.68)
    with pytest.raises(ValueError, match="not liquid water"):
        water.properties(120.0, 0.1)


ATM = 0.101325  # MPa


@pytest.mark.parametrize("t_c", [4.0, 40.0, 63.25, 90.0, 99.9])
def test_properties_at_atmospheric_pressure(t_c: float) -> None:
    # iapws's IAPWS-IF97 directly, and the scientific formulation IAPWS-95 it approximates
    st, ref = IAPWS97(T=t_c + water.KELVIN, P=ATM), IAPWS95(T=t_c + water.KELVIN, P=ATM)
    assert water.density(t_c, ATM) == pytest.approx(st.rho, rel=1e-7)
    assert water.enthalpy(t_c, ATM) == pytest.approx(st.h * 1000, abs=0.01)
    assert water.density(t_c, ATM) == pytest.approx(ref.rho, rel=5e-5)  # IF97 vs IAPWS-95
    assert water.enthalpy(t_c, ATM) == pytest.approx(ref.h * 1000, rel=2e-4)
    assert water.heat_coefficient(t_c, t_c - 3.5, sensor="return", p_mpa=ATM) > 4.0e6


def test_liquid_range_follows_the_pressure() -> None:
    # boiling at 99.97 degC at 1 atm, 201.4 degC at 1.6 MPa (only up to 130 tabulated)
    assert water.liquid_range(ATM) == pytest.approx((0.5, 99.9))
    assert water.liquid_range(1.6) == pytest.approx((0.5, 130.0))
    with pytest.raises(ValueError, match=r"100.00 degC outside 0.5-99.9 degC.*0.101325 MPa"):
        water.density(100.0, ATM)  # steam at 1 atm
    with pytest.raises(ValueError, match="no liquid water at 0.0005 MPa"):
        water.density(20.0, 0.0005)  # below the vapour pressure of 0.5 degC water
    with pytest.raises(ValueError, match="outside IAPWS-IF97 region 1"):
        water.density(20.0, 150.0)


def test_scalar_lookup_is_numpy_interp_to_the_last_bit() -> None:
    # The pure-Python interpolation replaced np.interp on the same table: same floats.
    rng = np.random.default_rng(7)
    temps, rho, h = (np.asarray(c) for c in water.table(water.DEFAULT_PRESSURE_MPA))
    x = np.concatenate([rng.uniform(0.5, 130.0, 5000), temps[:50], [0.5, 130.0]])
    assert [water.density(float(t)) for t in x] == np.interp(x, temps, rho).tolist()
    assert [water.enthalpy(float(t)) for t in x] == np.interp(x, temps, h).tolist()
    assert water.density(x).tolist() == np.interp(x, temps, rho).tolist()  # arrays: numpy
