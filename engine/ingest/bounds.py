"""The bounds every entry shares: when a thing may have happened, and what a string may hold.

One rule for all of them (sensor readings, gateway batches, frames, grid reports, operator actions,
silences), so that no way in is looser than another:

- a time is finite, not before 1970, at most ``ingest.max_future_s`` ahead of the engine clock and at most
  ``ingest.max_past_s`` behind the newest data time that entry has seen (a replay of a 2016 record is fine;
  a reading dated 30 days before the rest of the stream is not);
- a name (a reporter, an assignee, an actor) holds no control character and no line break; a free text (a
  comment, a report's words) may hold tabs and line breaks but no other control character. PostgreSQL
  refuses a NUL in any text column, so a NUL that got in would fail every later write of the store.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator

from engine.ingest.timestamps import TimestampError

# Control characters, and the bidirectional overrides that make a name read backwards on the page
_BIDI = "\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_CONTROL_IN_TEXT = re.compile(f"[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f{_BIDI}\\ud800-\\udfff]")
_CONTROL_IN_NAME = re.compile(f"[\\x00-\\x1f\\x7f{_BIDI}\\ud800-\\udfff]")


def plain_text(value: str) -> str:
    """A free text: line breaks and tabs are fine, other control characters (NUL above all) are not.

    >>> plain_text("smoke on the ridge\\nnear the road")
    'smoke on the ridge\\nnear the road'
    >>> plain_text("a\\x00b")
    Traceback (most recent call last):
    ...
    ValueError: control character U+0000 at position 1; send plain text
    """
    m = _CONTROL_IN_TEXT.search(value)
    if m is not None:
        raise ValueError(f"control character U+{ord(m.group()):04X} at position {m.start()}; send plain text")
    return value


def plain_name(value: str) -> str:
    """A name (a person, a team): no control character, no line break.

    >>> plain_name("duty officer 3")
    'duty officer 3'
    >>> plain_name("ops\\nadmin")
    Traceback (most recent call last):
    ...
    ValueError: control character U+000A at position 3; a name is one line of plain text
    """
    m = _CONTROL_IN_NAME.search(value)
    if m is not None:
        raise ValueError(f"control character U+{ord(m.group()):04X} at position {m.start()}; a name is one line of "
                         "plain text")  # fmt: skip
    return value


Text = Annotated[str, AfterValidator(plain_text)]
Name = Annotated[str, AfterValidator(plain_name)]


def has_nul(value: Any) -> bool:
    """Whether any string in ``value`` holds a NUL (one pass in C: orjson writes it as ``\\u0000``).

    >>> has_nul({"a": ["b", 1]}), has_nul({"a": ["b\\x00"]})
    (False, True)
    """
    return b"\\u0000" in orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS)


def without_nul(value: Any) -> Any:
    """``value`` with every NUL in its strings (keys too) replaced by U+FFFD: what the store writes, so that
    a NUL that came in by a path not yet checked costs one character, never the store.

    >>> without_nul({"a\\x00": ["x\\x00y", 1, None]})
    {'a\\ufffd': ['x\\ufffdy', 1, None]}
    """
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


class TimeWindow:
    """Whether a time is plausible for this entry: ``check`` raises ``TimestampError`` (reason ``bad_ts``,
    ``future_ts`` or ``stale_ts``) and otherwise moves the entry's newest data time on.

    >>> w = TimeWindow(max_future_s=300, max_past_s=86400)
    >>> w.check(1_700_000_000.0, now=1_700_000_000.0)
    >>> w.check(1_700_000_000.0 - 2 * 86400, now=1_700_000_000.0)
    Traceback (most recent call last):
    ...
    engine.ingest.timestamps.TimestampError: ts is 172800 s behind the newest data time (limit 86400 s, ...
    >>> w.check(-1e300, now=1_700_000_000.0)
    Traceback (most recent call last):
    ...
    engine.ingest.timestamps.TimestampError: ts -1e+300 is not a valid epoch time (before 1970)
    """

    def __init__(self, max_future_s: float, max_past_s: float) -> None:
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self.newest = float("-inf")
        self.oldest = 0.0  # the oldest time taken now: the newest less max_past_s (never before 1970)

    def reason(self, ts: float, now: float) -> TimestampError | None:
        """Why ``ts`` is refused, or None (nothing moves)."""
        if not math.isfinite(ts) or ts < 0:
            return TimestampError("bad_ts", f"ts {ts!r} is not a valid epoch time (before 1970)")
        if ts > now + self.max_future_s:
            return TimestampError(
                "future_ts", f"ts is {ts - now:.0f} s ahead of the engine clock (limit {self.max_future_s:.0f} s)"
            )
        if self.max_past_s > 0 and ts < self.newest - self.max_past_s:
            return TimestampError(
                "stale_ts",
                f"ts is {self.newest - ts:.0f} s behind the newest data time (limit {self.max_past_s:.0f} s, "
                "ingest.max_past_s)",
            )
        return None

    def observe(self, ts: float) -> None:
        """``ts`` was taken: the newest data time moves on (and with it the oldest time taken)."""
        if ts > self.newest:
            self.newest = ts
            if self.max_past_s > 0:
                self.oldest = max(0.0, ts - self.max_past_s)

    def check(self, ts: float, now: float) -> None:
        exc = self.reason(ts, now)
        if exc is not None:
            raise exc
        self.observe(ts)
