"""URLs as they may be shown: in logs, errors and printed output, every URL goes through
:func:`redact_url`, so that a credential that found its way into one is never printed."""

from __future__ import annotations

import urllib.parse

# Query parameters that carry credentials (InfluxDB 1.x takes ``u``/``p`` in the query).
SECRET_PARAMS = frozenset({"u", "p", "password", "pass", "pwd", "token", "secret", "key"})
HIDDEN = "***"


def redact_url(url: str) -> str:
    """``url`` with its user information and credential query parameters replaced by
    ``***`` (``http://user:pw@host/x?db=a&p=pw`` -> ``http://***@host/x?db=a&p=***``).
    Text that is not a URL comes back unchanged."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return HIDDEN  # not even parseable: show nothing of it
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SECRET_PARAMS for k, _ in pairs):
            query = "&".join(
                f"{k}={HIDDEN}" if k.lower() in SECRET_PARAMS else urllib.parse.urlencode({k: v})
                for k, v in pairs
            )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a user name or password (``scheme://user:pass@host``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return "@" in parts.netloc
