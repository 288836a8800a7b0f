"""A meter replaced during the period: declared indexes, nothing lost or counted twice."""

import pytest

from dcim.kpi.counters import Replacement, Sample, continuous, counter_increase

S = 1_000_000_000


def test_replacement_counts_the_old_meter_to_its_last_index_and_the_new_from_its_first() -> None:
    # Old meter at 1 unit/s: 1000, 1010, 1020 at t=0,10,20; removed at t=25 reading 1025.
    # New meter installed at t=25 reading 7 (factory test energy), then 1 unit/s.
    pts = [
        Sample(0, 1000.0),
        Sample(10 * S, 1010.0),
        Sample(20 * S, 1020.0),
        Sample(30 * S, 12.0),
        Sample(40 * S, 22.0),
    ]
    swap = [Replacement(25 * S, old_last=1025.0, new_first=7.0)]
    inc = counter_increase(pts, 0, 40 * S, replacements=swap)
    assert inc.value == pytest.approx(25.0 + 15.0) and inc.resets == 0
    # Undeclared, the same data looks like a reset: the old meter's last 5 units and the new
    # meter's first 7 are mis-counted, and the reset is reported.
    plain = counter_increase(pts, 0, 40 * S)
    assert plain.resets == 1 and plain.value != pytest.approx(40.0)


def test_boundary_inside_the_replacement_gap_is_interpolated_on_the_continuous_index() -> None:
    pts = [Sample(0, 50.0), Sample(20 * S, 70.0), Sample(40 * S, 3.0 + 20.0)]
    swap = [Replacement(20 * S + 1, old_last=70.0, new_first=3.0)]
    assert continuous(pts, swap)[-1].value == pytest.approx(90.0)
    assert counter_increase(pts, 10 * S, 30 * S, replacements=swap).value == pytest.approx(20.0)


def test_two_replacements_accumulate() -> None:
    pts = [Sample(0, 100.0), Sample(10 * S, 5.0), Sample(20 * S, 2.0)]
    swaps = [Replacement(5 * S, 105.0, 0.0), Replacement(15 * S, 10.0, 0.0)]
    assert counter_increase(pts, 0, 20 * S, replacements=swaps).value == pytest.approx(17.0)
