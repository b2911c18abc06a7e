"""The four-colour warning scale (blue < yellow < orange < red)."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

LevelName = Literal["blue", "yellow", "orange", "red"]
LEVEL_NAMES: tuple[LevelName, ...] = ("blue", "yellow", "orange", "red")


class Level(IntEnum):
    """A warning level; ``NONE`` (0) means below every threshold.

    >>> Level.from_name("orange") > Level.YELLOW
    True
    """

    NONE = 0
    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @classmethod
    def from_name(cls, name: str) -> Level:
        return cls[name.upper()]

    @property
    def label(self) -> str:
        return self.name.lower()
