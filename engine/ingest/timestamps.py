"""Reading timestamps: epoch seconds or ISO-8601 with an offset (docs/contracts.md: payloads)."""

from __future__ import annotations

import math
from datetime import datetime


class TimestampError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_ts(value: object) -> float:
    """Epoch seconds from a payload's ``ts``.

    >>> parse_ts(1732345678.5), parse_ts("2024-11-23T07:07:58.5+00:00")
    (1732345678.5, 1732345678.5)
    """
    if value is None:
        raise TimestampError("missing_ts", "the reading has no ts")
    if isinstance(value, bool):
        raise TimestampError("bad_ts", "ts must be epoch seconds or ISO-8601, not a boolean")
    if isinstance(value, int | float):
        ts = float(value)
        if not math.isfinite(ts) or ts < 0:
            raise TimestampError("bad_ts", f"ts {value!r} is not a valid epoch time")
        return ts
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise TimestampError("bad_ts", f"ts {value[:64]!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            raise TimestampError("bad_ts", f"ts {value[:64]!r} has no UTC offset; add Z or +08:00")
        return dt.timestamp()
    raise TimestampError("bad_ts", f"ts of type {type(value).__name__} is neither a number nor a string")


def parse_ts_text(text: str) -> float:
    """Epoch seconds from text that holds a number or an ISO-8601 time with an offset (an MQTT user
    property, a CSV cell, a command-line option).

    >>> parse_ts_text("1465065360"), parse_ts_text("2016-06-04T18:36:00+00:00")
    (1465065360.0, 1465065360.0)
    """
    try:
        number = float(text)
    except ValueError:
        return parse_ts(text.strip())
    return parse_ts(number)
