"""IAPWS-IF97 region 1 (liquid water): density and specific enthalpy from the basic equation
for the Gibbs free energy (IAPWS R7-97(2012), Eq. 7, Table 2), and the saturation pressure
(Eq. 30) that bounds the region from below. Pure Python.

Why by hand: the ``iapws`` package (the tests' reference) needs numpy and scipy, which the
production install does not carry; these two equations are 34 + 10 published coefficients.
Checked against the release's own verification values (Table 5, to 9 digits) and against
``iapws`` (tests/kpi/test_if97.py).
"""

from __future__ import annotations

import math

R_KJ = 0.461526  # specific gas constant of water, kJ/(kg K)
P_STAR, T_STAR = 16.53, 1386.0  # MPa, K (Eq. 7)
T_MIN_K, T_MAX_K, P_MAX = 273.15, 623.15, 100.0  # region 1 bounds (plus p >= p_sat(T))

# (I_i, J_i, n_i), IAPWS-IF97 Table 2
_TABLE2 = (
    (0, -2, 0.14632971213167), (0, -1, -0.84548187169114), (0, 0, -0.37563603672040e1),
    (0, 1, 0.33855169168385e1), (0, 2, -0.95791963387872), (0, 3, 0.15772038513228),
    (0, 4, -0.16616417199501e-1), (0, 5, 0.81214629983568e-3), (1, -9, 0.28319080123804e-3),
    (1, -7, -0.60706301565874e-3), (1, -1, -0.18990068218419e-1), (1, 0, -0.32529748770505e-1),
    (1, 1, -0.21841717175414e-1), (1, 3, -0.52838357969930e-4), (2, -3, -0.47184321073267e-3),
    (2, 0, -0.30001780793026e-3), (2, 1, 0.47661393906987e-4), (2, 3, -0.44141845330846e-5),
    (2, 17, -0.72694996297594e-15), (3, -4, -0.31679644845054e-4), (3, 0, -0.28270797985312e-5),
    (3, 6, -0.85205128120103e-9), (4, -5, -0.22425281908000e-5), (4, -2, -0.65171222895601e-6),
    (4, 10, -0.14341729937924e-12), (5, -8, -0.40516996860117e-6), (8, -11, -0.12734301741641e-8),
    (8, -6, -0.17424871230634e-9), (21, -29, -0.68762131295531e-18),
    (23, -31, 0.14478307828521e-19), (29, -38, 0.26335781662795e-22),
    (30, -39, -0.11947622640071e-22), (31, -40, 0.18228094581404e-23),
    (32, -41, -0.93537087292458e-25),
)  # fmt: skip
# n_1 .. n_10 of the saturation-pressure equation, IAPWS-IF97 Table 34
_TABLE34 = (
    0.11670521452767e4, -0.72421316703206e6, -0.17073846940092e2, 0.12020824702470e5,
    -0.32325550322333e7, 0.14915108613530e2, -0.48232657361591e4, 0.40511340542057e6,
    -0.23855557567849, 0.65017534844798e3,
)  # fmt: skip


def saturation_pressure(t_k: float) -> float:
    """Saturation pressure of water at t_k (273.15-647.096 K), MPa (IF97 Eq. 30)."""
    n = _TABLE34
    theta = t_k + n[8] / (t_k - n[9])
    a = theta**2 + n[0] * theta + n[1]
    b = n[2] * theta**2 + n[3] * theta + n[4]
    c = n[5] * theta**2 + n[6] * theta + n[7]
    return float((2 * c / (-b + math.sqrt(b**2 - 4 * a * c))) ** 4)


def region1(t_k: float, p_mpa: float) -> tuple[float, float]:
    """(density kg/m3, specific enthalpy J/kg) of liquid water at t_k, p_mpa (IF97 region 1).

    Raises ValueError outside region 1: 273.15-623.15 K, p_sat(T) <= p <= 100 MPa.
    """
    if not T_MIN_K <= t_k <= T_MAX_K:
        raise ValueError(f"{t_k - 273.15:g} degC is outside IAPWS-IF97 region 1 (0-350 degC)")
    if not 0.0 < p_mpa <= P_MAX:
        raise ValueError(f"pressure {p_mpa} MPa outside IAPWS-IF97 region 1 (up to 100 MPa)")
    if p_mpa < saturation_pressure(t_k):
        raise ValueError(
            f"{t_k - 273.15:g} degC at {p_mpa} MPa is not liquid water (IF97 region 1): "
            f"it boils below {saturation_pressure(t_k):.6g} MPa"
        )
    pi, tau = p_mpa / P_STAR, T_STAR / t_k
    a, b = 7.1 - pi, tau - 1.222
    g_pi = -math.fsum(n * i * a ** (i - 1) * b**j for i, j, n in _TABLE2)
    g_tau = math.fsum(n * a**i * j * b ** (j - 1) for i, j, n in _TABLE2)
    v = pi * g_pi * R_KJ * t_k / p_mpa / 1000.0  # m3/kg
    h = tau * g_tau * R_KJ * t_k  # kJ/kg
    return 1.0 / v, h * 1000.0
