from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dcim.reading import Reading
from dcim.storage.influx import quote_ident
from dcim.storage.lineprotocol import decode_lines, encode, encode_lines, encode_many
from dcim.testing.servers import InfluxServer
from tests.storage.helpers import influx_store

T = 1_700_000_000_000_000_000


def r(fields: dict, tags: dict | None = None, m: str = "pdu") -> Reading:  # type: ignore[type-arg]
    return Reading(m, tags if tags is not None else {"device": "pdu1"}, fields, T)


def test_types_and_timestamp() -> None:
    line = encode(r({"power_w": 1.0, "n": 3, "up": True, "on": False, "s": "ok", "e": 1e20}))
    assert line == f'pdu,device=pdu1 power_w=1.0,n=3i,up=true,on=false,s="ok",e=1e+20 {T}'


def test_float_that_looks_like_an_int_stays_a_float() -> None:
    assert " power_w=230.0 " in encode(r({"power_w": 230.0}))


def test_escaping() -> None:
    rd = Reading(
        "my meas,x",
        {"tag key": "a,b=c d", "device": "été"},
        {"f=1 x,y": 'say "hi" \\o/'},
        T,
    )
    line = encode(rd)
    assert line == (
        r"my\ meas\,x,device=été,tag\ key=a\,b\=c\ d f\=1\ x\,y="
        + '"say \\"hi\\" \\\\o/" '
        + str(T)
    )


def test_tags_sorted_and_empty_tag_left_out() -> None:
    line = encode(Reading("m", {"z": "1", "a": "2", "room": ""}, {"v": 1.0}, T))
    assert line.startswith("m,a=2,z=1 ")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_rejected_with_names(bad: float) -> None:
    with pytest.raises(ValueError, match="measurement 'pdu'.*device 'pdu1'.*field 'power_w'"):
        encode(r({"power_w": bad}))


@pytest.mark.parametrize(
    ("reading", "match"),
    [
        (r({"s": "a\nb"}), "newline"),
        (r({"v": 1.0}, {"device": "a\nb"}), "control character"),
        (r({"v": 1.0}, {"device": "ends\\"}), "backslash"),
        (r({}), "at least one field"),
        (r({"v": 2**64}), "int64"),
        (r({"v": [1]}), "unsupported value type"),
        (r({"v": 1.0}, m="#comment"), "may not start with '#'"),
    ],
)
def test_refused(reading: Reading, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode(reading)


def test_encode_many_is_utf8_lines() -> None:
    body = encode_many([r({"v": 1.0}, {"device": "é"}), r({"v": 2.0})])
    assert body.decode("utf-8").count("\n") == 2


# -- round trip through a real influxd ------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(meas=_text, tag_key=_text, tag_value=_text, field_key=_text, sval=st.text(max_size=20))
def test_strange_strings_round_trip_through_influxd(
    influxdb: InfluxServer, meas: str, tag_key: str, tag_value: str, field_key: str, sval: str
) -> None:
    assume(len({tag_key, field_key, "time", "device", "n"}) == 5 and "\n" not in sval)
    assume("\r" not in sval)
    rd = Reading(meas, {tag_key: tag_value}, {field_key: sval, "n": 1.5}, T)
    try:
        encode(rd)
    except ValueError:
        assume(False)  # refused clearly: not something 1.x can carry
    # A database per example: a key that was a field of the measurement in an earlier
    # example would come back renamed (``key_1``) as a tag.
    store = influx_store(influxdb, "lp")
    store.write([rd])
    series = store.query(f"SELECT * FROM {quote_ident(meas)} WHERE time = {rd.time_ns}")
    assert len(series) == 1
    s = series[0]
    assert s["name"] == meas
    row = dict(zip(s["columns"], s["values"][0], strict=True))
    assert row[tag_key] == tag_value
    assert row[field_key] == sval
    assert row["n"] == 1.5


_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=10).filter(lambda s: "\n" not in s and "\r" not in s),
)


@settings(max_examples=200, deadline=None)
@given(
    readings=st.lists(
        st.builds(
            Reading,
            st.sampled_from(["pdu", "m x", "a,b"]),
            st.dictionaries(_text, _text, max_size=3),
            st.dictionaries(_text, _value, min_size=1, max_size=4),
            st.integers(min_value=0, max_value=2**62),
        ),
        max_size=5,
    )
)
def test_encode_lines_is_encode_line_by_line(readings: list[Reading]) -> None:
    """The inline fast path (and its caches) says exactly what ``encode`` says."""
    try:
        want = "".join(encode(r) + "\n" for r in readings)
    except ValueError:
        with pytest.raises(ValueError):  # refused by both
            encode_lines(readings)
        return
    assert encode_lines(readings) == want
    assert encode_lines(readings) == want  # again, from the caches


# -- decoding: what the spool keeps is the line protocol, read back for the embedded store --


def _typed(r: Reading) -> tuple[object, ...]:
    """A reading with its values' types (1 == 1.0 == True in Python)."""
    fields = [(k, type(v).__name__, v) for k, v in r.fields.items()]
    return r.measurement, sorted((k, v) for k, v in r.tags.items() if v != ""), fields, r.time_ns


def test_decode_reads_back_what_encode_wrote() -> None:
    rs = [
        Reading(
            "my meas,x",
            {"tag key": "a,b=c d", "device": "été", "empty": ""},
            {"f=1 x,y": 'say "hi" \\o/', "n": 3, "q": 'a\\b"'},
            T,
        ),
        Reading(
            "dcim_poll",
            {"site": "s", "device": 'a"b'},
            {"up": 1, "d": 0.012, "error": "", "late": 0.0, "ok": True, "s": "a b,c=d"},
            T + 1,
        ),
        Reading("pdu", {}, {"a": 1.5e-300, "b": False, "c": -0.0, "d": 1e22}, T + 2),
        Reading("pdu", {"device": "x\\y"}, {'k"1': 1.0, "s": "x"}, T + 3),
        Reading("pdu", {"device": "p"}, {'k"1': 2.0}, T + 4),
    ]
    got = decode_lines(encode_lines(rs))
    assert [_typed(x) for x in got] == [_typed(x) for x in rs]
    assert got[0].tags == {"device": "été", "tag key": "a,b=c d"}  # sorted, empty left out
    assert decode_lines(encode_many(rs)) == got and decode_lines("") == []


@pytest.mark.parametrize(
    "bad",
    [
        "pdu v=1.0 1",  # no final newline
        "pdu v=1.0\n",
        "pdu 1\n",
        "pdu v=x 1\n",
        "pdu v=1.0 x\n",
        'pdu v="a 1\n',
        "pdu,device v=1.0 1\n",
        "pdu v=tru 1\n",
        "pdu =1.0 1\n",
        'pdu s="a"b 1\n',
        "pdu v=1.0,\\w=2.0, 1\n",
    ],
)
def test_decode_refuses_what_encode_does_not_write(bad: str) -> None:
    with pytest.raises(ValueError, match="not line protocol as written"):
        decode_lines(bad)


@settings(max_examples=300, deadline=None)
@given(
    readings=st.lists(
        st.builds(
            Reading,
            st.one_of(st.sampled_from(["pdu", "m x", "a,b", "q=1", 'a"b']), _text),
            st.dictionaries(_text, st.one_of(_text, st.just("")), max_size=3),
            st.dictionaries(_text, _value, min_size=1, max_size=4),
            st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
        ),
        max_size=5,
    )
)
def test_decode_is_the_inverse_of_encode(readings: list[Reading]) -> None:
    """Every reading ``encode`` writes comes back with its values and their types."""
    try:
        lp = encode_lines(readings)
    except ValueError:
        assume(False)
    got = decode_lines(lp)
    assert [_typed(x) for x in got] == [_typed(x) for x in readings]
    assert decode_lines(lp) == got  # again, from the cache of series
