"""The holder's bookkeeping (pure logic: a spool with or without room, acks recorded); the
same on a real broker and spool is in test_source.py."""

from __future__ import annotations

from collectors.mqtt.hold import Held, Holder
from dcim.reading import Reading


class Spool:
    def __init__(self) -> None:
        self.room = True
        self.taken: list[float] = []

    def offer(self, readings: list[Reading]) -> bool:
        if not self.room:
            return False
        self.taken += [float(r.fields["v"]) for r in readings]
        return True


def msg(mid: int, qos: int = 1, forgotten: list[int] | None = None) -> Held:
    r = Reading("m", {"device": "d"}, {"v": float(mid)}, mid)
    out = Held(mid, qos, "t", [r])
    if forgotten is not None:
        out.forget = lambda: forgotten.append(mid)
    return out


def test_held_in_order_acknowledged_once_committed() -> None:
    spool = Spool()
    acks: list[int] = []
    h = Holder(spool.offer, lambda mid, qos: acks.append(mid))
    h.submit(msg(1))
    spool.room = False
    for mid in (2, 3, 4):
        h.submit(msg(mid))
    assert h.holding.is_set() and h.held == 3 and acks == [1] and h.queued() == 3
    h.drain()  # still no room
    assert acks == [1] and spool.taken == [1.0]
    spool.room = True
    h.submit(msg(5))  # behind the held ones, not before them
    assert spool.taken == [1.0]
    h.drain()
    assert spool.taken == [1.0, 2.0, 3.0, 4.0, 5.0] and acks == [1, 2, 3, 4, 5]
    assert not h.holding.is_set() and h.queued() == 0


def test_a_reconnection_leaves_the_held_messages_to_the_broker_or_keeps_them() -> None:
    spool = Spool()
    acks: list[int] = []
    forgotten: list[int] = []
    released: list[bool] = []
    h = Holder(
        spool.offer, lambda mid, qos: acks.append(mid), on_release=lambda: released.append(True)
    )
    spool.room = False
    h.submit(msg(1, forgotten=forgotten))
    h.submit(msg(2, qos=0, forgotten=forgotten))
    # Same session: the broker delivers the QoS 1 one again; the QoS 0 one only lives here.
    h.reconnected(session_present=True)
    assert forgotten == [1] and h.queued() == 1
    # A new session (the broker lost its state): kept and committed, not acknowledged (its
    # message id belonged to the old session).
    h.submit(msg(3))
    h.reconnected(session_present=False)
    spool.room = True
    h.drain()
    assert spool.taken == [2.0, 3.0] and acks == [] and released == [True]


def test_an_error_leaves_the_message_unacknowledged_and_the_others_go_on() -> None:
    acks: list[int] = []

    def offer(readings: list[Reading]) -> bool:
        if readings[0].fields["v"] == 2.0:
            raise OSError("disk I/O error")
        return True

    h = Holder(offer, lambda mid, qos: acks.append(mid))
    for mid in (1, 2, 3):
        h.submit(msg(mid))
    assert acks == [1, 3] and h.queued() == 0
