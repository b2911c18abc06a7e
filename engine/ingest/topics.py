"""Topic names of the MQTT contract (docs/contracts.md: "MQTT topics"), parsed and built."""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("sensors", "cameras", "thermal", "status", "reports")
LOCATE = "_nearest"  # a report's site in its topic when its position (lat, lon) is to find the site
MAX_ID = 128  # the store's column width for site, device and assignee ids
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}")


def valid_id(value: str) -> bool:
    """A site or device id: 1 to 128 letters, digits and ``_ . : @ -``, not starting with ``.`` or ``-``.

    Ids become path segments (snapshots), store keys (VARCHAR 128) and log text, so ``..``, slashes,
    brackets, spaces and control characters are refused at the door.

    >>> [valid_id(v) for v in ("S-12", "gnss-3", "_batch", "..", "S1[/]", "a b", "x" * 129)]
    [True, True, True, False, False, False, False]
    """
    return _ID.fullmatch(value) is not None


class TopicError(ValueError):
    """A topic that is not one of the contract's."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed inbound topic: ``<prefix>/<kind>/<site>/<device>``.

    >>> parse_topic("gw/sensors/S-12/gnss-3", "gw")
    Topic(kind='sensors', site='S-12', device='gnss-3')
    """

    kind: str
    site: str
    device: str

    @property
    def is_gateway_batch(self) -> bool:
        return self.kind == "sensors" and self.device == "_batch"


def parse_topic(topic: str, prefix: str) -> Topic:
    head = prefix + "/"
    if not topic.startswith(head):
        raise TopicError(f"topic {topic!r} is not under prefix {prefix!r}")
    parts = topic[len(head) :].split("/")
    if len(parts) != 3 or parts[0] not in KINDS or not parts[1] or not parts[2]:
        raise TopicError(f"topic {topic!r} is not {prefix}/<{'|'.join(KINDS)}>/<site>/<device>")
    for part in parts[1:]:
        if not valid_id(part):
            raise TopicError(
                f"topic {topic[:200]!r}: {part[:200]!r} is not a valid id (1-{MAX_ID} letters, digits, _ . : @ -)"
            )
    return Topic(parts[0], parts[1], parts[2])


def subscriptions(prefix: str) -> list[str]:
    """Topic filters the engine subscribes to."""
    return [f"{prefix}/{kind}/+/+" for kind in ("sensors", "status", "cameras", "thermal", "reports")]


def sensor_topic(prefix: str, site: str, device: str) -> str:
    return f"{prefix}/sensors/{site}/{device}"


def alert_topic(prefix: str, site: str, hazard: str) -> str:
    return f"{prefix}/alerts/{site}/{hazard}"


def deadletter_topic(prefix: str, reason: str) -> str:
    return f"{prefix}/deadletter/{reason}"


def engine_status_topic(prefix: str) -> str:
    return f"{prefix}/engine/status"
