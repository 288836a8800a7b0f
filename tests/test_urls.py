from __future__ import annotations

import pytest

from dcim.urls import has_credentials, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@db.example:8086/", "http://***@db.example:8086/"),
        ("https://admin@db.example", "https://***@db.example"),
        ("http://db:8086/write?db=x&u=me&p=s3cret", "http://db:8086/write?db=x&u=***&p=***"),
        ("http://db:8086/write?db=x&token=abc", "http://db:8086/write?db=x&token=***"),
        ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
        ("http://db:8086/query?db=a+b&epoch=ns", "http://db:8086/query?db=a+b&epoch=ns"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "s3cret" not in redact_url(url) and "abc" not in redact_url(url)


def test_has_credentials() -> None:
    assert has_credentials("http://u:p@h") and has_credentials("http://u@h")
    assert not has_credentials("http://h:8086/x?u=a")


def test_the_influxdb_store_shows_its_url_redacted() -> None:
    """A URL with credentials (refused by the config, but built by hand) is never shown."""
    from dcim.config import InfluxSink
    from dcim.reading import Reading
    from dcim.storage.base import SinkError
    from dcim.storage.influx import InfluxStore
    from dcim.testing.servers import free_port

    url = f"http://dcim:S3cret@127.0.0.1:{free_port()}"
    st = InfluxStore(InfluxSink.model_construct(type="influxdb", url=url, timeout_s=1.0))
    with pytest.raises(SinkError) as err:
        st.write([Reading("pdu", {"device": "p1"}, {"power_w": 1.0}, 1)])
    assert "S3cret" not in err.value.reason and "***@127.0.0.1" in err.value.reason
