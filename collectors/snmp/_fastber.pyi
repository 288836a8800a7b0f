# The compiled decoder (collectors/snmp/_fastber.c): wire.py's _py_decode_message and
# _py_neutral in C, set up by wire.py at import; codec.Walk._feed_py's loop (walk_feed).
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from collectors.snmp.wire import Message, Neutral, Oid, VarBind

def setup(
    wire_error: type[Exception],
    message: type[Message],
    oid_cache: dict[bytes, Oid],
    cached_oid: Callable[[bytes], Oid],
    oid_str: Callable[[bytes], str],
    py_neutral: Callable[[Iterable[VarBind]], list[Neutral]],
    names: dict[int, str],
    /,
) -> None: ...
def decode_message(data: bytes, /) -> Message: ...
def neutral(varbinds: Iterable[VarBind], /) -> list[Neutral]: ...
def walk_feed(
    batch: list[Oid],
    var_binds: Sequence[tuple[Oid, tuple[str, Any]]],
    ticks: int | None,
    cells: list[dict[Oid, Any]],
    cursors: list[Oid],
    ended: list[bool],
    looped: list[Oid],
    exceptions: frozenset[str],
    max_rows: int,
    /,
) -> bool: ...
