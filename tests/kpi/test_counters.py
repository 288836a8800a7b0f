import pytest

from dcim.kpi.counters import Sample, counter_increase

S = 1_000_000_000


def series(values: list[float], t0: int = 0, step: int = 10) -> list[Sample]:
    return [Sample((t0 + i * step) * S, v) for i, v in enumerate(values)]


def test_linear_counter_interpolates_boundaries() -> None:
    # 1 unit per second, samples every 10 s from t=0; period [15, 55) -> exactly 40.
    pts = series([float(10 * i) for i in range(10)])
    inc = counter_increase(pts, 15 * S, 55 * S)
    assert inc.value == pytest.approx(40.0)
    assert inc.interpolated and not inc.extrapolated and inc.resets == 0


def test_reset_counts_from_zero_not_negative() -> None:
    pts = series([100.0, 110.0, 120.0, 5.0, 15.0])
    inc = counter_increase(pts, 10 * S, 40 * S)
    # 110 -> 120 (+10), reset -> 5 (+5), 5 -> 15 (+10)
    assert inc.value == pytest.approx(25.0)
    assert inc.resets == 1


def test_wrap_at_modulus_is_not_a_spike() -> None:
    wrap = 2.0**32
    pts = series([wrap - 20, wrap - 10, 0.0, 10.0])
    inc = counter_increase(pts, 0, 30 * S, wrap_at=wrap)
    assert inc.value == pytest.approx(30.0)
    assert inc.resets == 1


def test_no_data_after_end_is_unknown_unless_extrapolation_allowed() -> None:
    pts = series([0.0, 10.0, 20.0])
    assert counter_increase(pts, 0, 25 * S).value is None
    inc = counter_increase(pts, 0, 25 * S, max_extrapolation_ns=10 * S)
    # the last 5 s at the rate seen inside the period (1/s), flagged as an estimate
    assert inc.value == pytest.approx(25.0) and inc.extrapolated


def test_start_extrapolated_at_the_rate_inside_when_data_begins_late() -> None:
    pts = series([100.0, 120.0, 140.0], t0=20)  # 2 units/s from t=20; the period starts at 0
    assert counter_increase(pts, 0, 40 * S).value is None
    inc = counter_increase(pts, 0, 40 * S, max_extrapolation_ns=30 * S)
    assert inc.value == pytest.approx(80.0) and inc.extrapolated and not inc.resets


def test_no_extrapolation_rate_across_a_reset() -> None:
    pts = series([100.0, 3.0], t0=10)  # reset between the only two samples
    inc = counter_increase(pts, 0, 30 * S, max_extrapolation_ns=30 * S)
    assert inc.value == pytest.approx(3.0) and inc.resets == 1


def test_empty_series() -> None:
    inc = counter_increase([], 0, 10 * S)
    assert inc.value is None and inc.samples == 0


def test_period_between_two_samples() -> None:
    pts = series([0.0, 100.0])
    assert counter_increase(pts, 2 * S, 7 * S).value == pytest.approx(50.0)


def test_a_step_down_of_one_wh_is_a_glitch_not_a_reset() -> None:
    # 1,000,000 Wh rising 10 Wh per poll; one read 1 Wh low. As a reset it would count the
    # whole index (999,999 Wh) again; as a glitch it is ignored and counted.
    vals = [1_000_000.0 + 10 * i for i in range(7)]
    vals[3] = vals[2] - 1.0
    inc = counter_increase(series(vals), 0, 60 * S)
    assert inc.value == pytest.approx(60.0)
    assert inc.resets == 0 and inc.glitches == 1


def test_the_index_is_held_until_the_register_passes_it_again() -> None:
    pts = series([1000.0, 1010.0, 1009.0, 1009.5, 1015.0, 1020.0])
    inc = counter_increase(pts, 0, 50 * S)
    assert inc.value == pytest.approx(20.0)  # 1000 -> 1010, held, 1010 -> 1015 -> 1020
    assert inc.glitches == 2 and inc.resets == 0


def test_a_drop_to_near_zero_is_still_a_reset() -> None:
    pts = series([1_000_000.0, 1_000_010.0, 4.0, 14.0])
    inc = counter_increase(pts, 0, 30 * S)
    assert inc.value == pytest.approx(24.0) and inc.resets == 1 and inc.glitches == 0


def test_a_glitch_near_the_top_of_a_wrapping_register_is_not_a_wrap() -> None:
    wrap = 2.0**32
    pts = series([wrap - 100, wrap - 90, wrap - 91, wrap - 80, 5.0])
    inc = counter_increase(pts, 0, 40 * S, wrap_at=wrap)
    assert inc.value == pytest.approx(105.0)  # not 2**32 more
    assert inc.resets == 1 and inc.glitches == 1


def test_a_glitch_across_a_boundary_interpolates_the_held_index() -> None:
    pts = series([1000.0, 999.0, 1010.0])  # the period starts between the glitch and its fix
    inc = counter_increase(pts, 5 * S, 20 * S)
    assert inc.value == pytest.approx(10.0) and inc.resets == 0
