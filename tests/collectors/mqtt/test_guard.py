"""What the MQTT collector does not take on a publisher's word, without a broker: topic filter
overlap, payload bounds, stored timestamps; and the plugin's config check (file:line)."""

from __future__ import annotations

import json

import pytest

from collectors.mqtt.codec import MalformedPayload, decode_payload
from collectors.mqtt.guard import Seen, common_topic, filters_overlap, json_depth
from collectors.mqtt.profile import MqttProfile
from dcim.config import ConfigError, parse_config
from dcim.profiles import load_profiles


@pytest.mark.parametrize(
    ("a", "b", "both"),
    [
        ("a/b", "a/b", "a/b"),
        ("a/+", "a/b", "a/b"),
        ("a/#", "a", "a"),  # '#' matches the parent level too
        ("a/#", "a/b/c", "a/b/c"),
        ("a/+/c", "a/b/+", "a/b/c"),
        ("#", "x/y", "x/y"),
        ("dcim/s/greenhouse/+/climate", "dcim/+/greenhouse/north/climate",
         "dcim/s/greenhouse/north/climate"),
        ("a/b", "a/c", None),
        ("a/+", "a/b/c", None),  # '+' is one level
        ("a/b/+", "a/b", None),
        ("+/x", "$SYS/x", None),  # wildcards at the first level do not match '$' topics
        ("dcim/s/greenhouse/north/climate", "dcim/s/greenhouse/south/climate", None),
    ],
)  # fmt: skip
def test_filters_overlap(a: str, b: str, both: str | None) -> None:
    assert common_topic(a, b) == both
    assert (common_topic(b, a) is None) == (both is None)
    assert filters_overlap(a, b) is filters_overlap(b, a) is (both is not None)


def test_json_depth_is_counted_outside_strings_without_recursion() -> None:
    assert json_depth(b"1") == 0
    assert json_depth(b'{"a": [1, {"b": "[[[{{{"}]}') == 3
    deep = b"[" * 200_000 + b"]" * 200_000
    assert json_depth(deep) == 200_000


def _profile() -> MqttProfile:
    prof = load_profiles()["greenhouse_climate"]
    assert isinstance(prof, MqttProfile)
    return prof


def test_payload_bounds_are_malformed_not_a_recursion_error() -> None:
    prof = _profile()
    deep = b'{"temperature": 20, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MalformedPayload, match="nested 100001 deep, over the 32 accepted"):
        decode_payload(prof, deep, max_bytes=10**6)
    big = json.dumps({"temperature": 20, "pad": "x" * 70_000}).encode()
    with pytest.raises(MalformedPayload, match=r"payload of \d+ bytes, over the 65536"):
        decode_payload(prof, big)
    ok = json.dumps({"temperature": 20, "a": {"b": {"c": 1}}}).encode()
    assert decode_payload(prof, ok, max_depth=3)[0] == {"air_temp_c": 20.0}
    with pytest.raises(MalformedPayload, match="nested 3 deep, over the 2"):
        decode_payload(prof, ok, max_depth=2)
    # A time that is no finite number is named, not an OverflowError.
    assert "time 'inf' is not a finite number" in decode_payload(prof, b'{"ts": "inf"}')[2]


def test_seen_refuses_a_stored_time_and_bounds_its_memory() -> None:
    seen = Seen(per_topic=3, max_topics=2)
    assert seen.admit("d", "t/1") and seen.admit("d", "t/2") and not seen.admit("d", "t/3")
    assert seen.admit("e", "t/3")  # per device
    assert seen.check("d", "t/1", 10, 111) == "new"
    assert seen.check("d", "t/1", 10, 111) == "duplicate"
    assert seen.check("d", "t/1", 10, 222) == "conflict"
    assert seen.check("d", "t/2", 10, 222) == "new"  # another topic: another series
    for t in (11, 12, 13):  # 10 forgotten: older times cannot be checked any more
        assert seen.check("d", "t/1", t, 1) == "new"
    assert seen.check("d", "t/1", 10, 111) == "out_of_order"
    assert seen.check("d", "t/1", 9, 5) == "out_of_order"
    seen.forget("d", "t/1", 13)  # a message not stored after all
    assert seen.check("d", "t/1", 13, 7) == "new"


# -- the plugin's config check -----------------------------------------------------------

SITE = """site: {{name: x}}
mqtt: {{host: 127.0.0.1}}
devices:
  - name: gh-north
    protocol: mqtt
    profile: greenhouse_climate
    mqtt: {{topic: "{t1}"}}
  - name: gh-all
    protocol: mqtt
    profile: greenhouse_climate
    mqtt: {{topic: "{t2}"{extra}}}
"""


def _issues(t1: str, t2: str, extra: str = "") -> list[str]:
    try:
        parse_config(SITE.format(t1=t1, t2=t2, extra=extra), filename="site.yaml")
    except ConfigError as exc:
        return [str(i) for i in exc.issues]
    return []


def test_check_config_refuses_overlapping_filters_with_file_and_line() -> None:
    assert _issues("dcim/x/greenhouse/north/climate", "dcim/x/greenhouse/+/climate") == [
        "site.yaml:11: devices[1](gh-all).mqtt.topic: 'dcim/x/greenhouse/+/climate' overlaps "
        "device 'gh-north''s topic 'dcim/x/greenhouse/north/climate' (both match "
        "'dcim/x/greenhouse/north/climate'): a topic must map to one device; make the filters "
        "disjoint"
    ]
    assert len(_issues("dcim/x/#", "dcim/x/greenhouse/south/climate")) == 1
    assert _issues("dcim/x/greenhouse/north/climate", "dcim/x/greenhouse/south/climate") == []


def test_check_config_refuses_filters_the_profile_cannot_read() -> None:
    got = _issues("dcim/x/greenhouse/north/climate", "dcim/x/#/climate")
    assert got == [
        "site.yaml:11: devices[1](gh-all).mqtt.topic: 'dcim/x/#/climate' is not a topic "
        "filter: '#' must be a whole level, the last one"
    ]
    got = _issues("dcim/x/greenhouse/north/climate", "sensors/+/temp")
    assert got == [
        "site.yaml:11: devices[1](gh-all).mqtt.topic: 'sensors/+/temp' matches no topic of "
        "profile 'greenhouse_climate''s template 'dcim/{site}/greenhouse/{zone}/climate': "
        "nothing it receives could be read"
    ]
    got = _issues(
        "dcim/x/greenhouse/north/climate",
        "dcim/y/greenhouse/+/climate",
        ", tag_values: {room: [a]}",
    )
    assert got == [
        "site.yaml:11: devices[1](gh-all).mqtt.tag_values: room: not a tag of the template "
        "'dcim/{site}/greenhouse/{zone}/climate' (its tags: zone)"
    ]
