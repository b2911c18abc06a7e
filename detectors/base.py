"""The detector plugin API: config base class, state arrays, the ``Detector`` base and the registry.

A detector is a pair of classes in one module: a pydantic config (``type: Literal["name"]``) and a runtime
class that turns a ``ReadingBatch`` into findings. Built-ins are found by walking this package; third
parties register under the entry-point group ``gridwatch.detectors``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from engine.core.batch import ReadingBatch
from engine.core.findings import Finding
from engine.core.levels import Level

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "gridwatch.detectors"
ROW_OF_SLOT = "_row_of_slot"
SLOT_OF_ROW = "_slot_of_row"


class DetectorConfig(BaseModel):
    """Fields every detector config has. Subclasses add ``type: Literal[...]`` and their own knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN never compares true

    type: str = Field(description="Which detector this is (its registered type name).")
    id: str = Field("", description="Unique name of this detector instance; defaults to its type.")
    enabled: bool = Field(True, description="Set false to keep the config but not run the detector.")
    hazard: str = Field("generic", description="Hazard name findings are filed under (incident grouping).")

    @property
    def name(self) -> str:
        return self.id or self.type


@dataclass(frozen=True)
class StateArray:
    """Declares one state array: its dtype, initial value and trailing shape.

    ``per_device=False`` declares a detector-wide array of exactly ``shape`` (a fleet watermark, say).
    ``on_takeover`` says how such an array is taken up from the packed state of sites that a scale-out
    worker takes over: ``max`` keeps the later of its own and the pack's (a watermark), ``min`` the lower (a
    lower bound), ``stream`` keeps its own and lets the redelivered stream rebuild it (a clock that the
    packs may hold ahead of the readings that are redelivered). A per-device array is taken from the pack
    as it is, unless ``on_takeover`` is ``fill``: the taken-over devices start with the fill value (a flag
    that tells restored state from state this worker made).
    """

    dtype: Any
    fill: Any
    shape: tuple[int, ...] = ()
    per_device: bool = True
    on_takeover: Literal["max", "min", "stream", "fill"] = "max"


GROW_MAX = 8192  # rows added to a detector's state at a time, at most


class DeviceState:
    """Named numpy arrays with a row per device, grown on demand; snapshot/restore copies them.

    Rows are the detector's own: ``rows_for`` gives each device (engine-wide slot) a row the first time
    the detector sees it, so a rain detector holds rows for rain gauges only, not for all 65,000 devices.

    >>> st = DeviceState({"last": StateArray(np.float64, np.nan)})
    >>> st.rows_for(np.array([40, 7, 40])).tolist(), st.slot_of_row(np.array([1])).tolist()
    ([1, 0, 1], [40])
    """

    def __init__(self, spec: dict[str, StateArray]) -> None:
        self.spec = spec
        self.capacity = 0
        self.arrays: dict[str, npt.NDArray[Any]] = {
            name: np.full((0, *s.shape) if s.per_device else s.shape, s.fill, dtype=s.dtype) for name, s in spec.items()
        }
        self.arrays[ROW_OF_SLOT] = np.full(0, -1, dtype=np.int64)
        self.arrays[SLOT_OF_ROW] = np.empty(0, dtype=np.int64)

    def rows_for(self, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The state row of each device slot, giving new devices the next free rows (in slot order)."""
        if slots.size == 0:
            return slots
        index = self.arrays[ROW_OF_SLOT]
        top = int(slots.max()) + 1
        if top > index.shape[0]:
            grown = np.full(max(top, 2 * index.shape[0], 64), -1, dtype=np.int64)
            grown[: index.shape[0]] = index
            self.arrays[ROW_OF_SLOT] = index = grown
        rows = index[slots]
        if (rows < 0).any():
            fresh = np.unique(slots[rows < 0])
            used = self.arrays[SLOT_OF_ROW]
            index[fresh] = np.arange(used.shape[0], used.shape[0] + fresh.shape[0])
            self.arrays[SLOT_OF_ROW] = np.concatenate([used, fresh])
            self.ensure(self.arrays[SLOT_OF_ROW].shape[0])
            rows = index[slots]
        return rows

    def slot_of_row(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return self.arrays[SLOT_OF_ROW][rows]

    @property
    def rows_used(self) -> int:
        return int(self.arrays[SLOT_OF_ROW].shape[0])

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.arrays[name]

    def ensure(self, n_slots: int) -> None:
        if n_slots <= self.capacity:
            return
        # Doubling, but by at most GROW_MAX rows a time: growth is in place (below), so small steps cost no
        # copying, and a fleet coming online pays for its new rows in small pieces, not one long pause.
        new_cap = max(n_slots, self.capacity + min(max(self.capacity, 64), GROW_MAX))
        for name, s in self.spec.items():
            if not s.per_device:
                continue
            try:
                # In place where nothing else refers to the array: glibc grows a large block by remapping
                # its pages, so a fleet coming online does not copy every detector's state at each doubling.
                self.arrays[name].resize((new_cap, *s.shape))
                if s.fill != 0:
                    self.arrays[name][self.capacity :] = s.fill
            except ValueError:  # a view or another reference holds it: copy
                grown = np.full((new_cap, *s.shape), s.fill, dtype=s.dtype)
                grown[: self.capacity] = self.arrays[name]
                self.arrays[name] = grown
        self.capacity = new_cap

    def snapshot(self) -> dict[str, npt.NDArray[Any]]:
        return {name: arr.copy() for name, arr in self.arrays.items()}

    def forget(self, slots: npt.NDArray[np.int64]) -> int:
        """Put the rows of these device slots back to their initial values (what a detector that raised
        half-way through a batch left there cannot be trusted); returns how many rows were reset."""
        index = self.arrays[ROW_OF_SLOT]
        slots = slots[(slots >= 0) & (slots < index.shape[0])]
        rows = np.unique(index[slots])
        rows = rows[rows >= 0]
        for name, s in self.spec.items():
            if s.per_device and rows.size:
                self.arrays[name][rows] = s.fill
        return int(rows.size)

    def restore(self, snap: dict[str, npt.NDArray[Any]]) -> None:
        """Take up a snapshot; an array it lacks (added by a later version) starts at its initial value."""
        per_device = [snap[n] for n, s in self.spec.items() if s.per_device and n in snap]
        self.capacity = int(per_device[0].shape[0]) if per_device else 0
        self.arrays = {
            name: snap[name].copy()
            if name in snap
            else np.full((self.capacity, *s.shape) if s.per_device else s.shape, s.fill, dtype=s.dtype)
            for name, s in self.spec.items()
        }
        self.arrays[ROW_OF_SLOT] = snap.get(ROW_OF_SLOT, np.full(0, -1, dtype=np.int64)).copy()
        self.arrays[SLOT_OF_ROW] = snap.get(SLOT_OF_ROW, np.empty(0, dtype=np.int64)).copy()

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())


C = TypeVar("C", bound=DetectorConfig)


class DetectorPlugin(Generic[C]):
    """What sensor and camera detectors share: a config class, the config, its name, an example config."""

    config_class: ClassVar[type[DetectorConfig]]

    def __init__(self, config: C) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @classmethod
    def example_config(cls) -> DetectorConfig:
        """A working config, used by the contract tests that every detector must pass."""
        raise NotImplementedError(f"{cls.__name__} must provide example_config() for the contract tests")


class Detector(DetectorPlugin[C]):
    """Base class of every sensor detector.

    Subclasses set ``config_class`` and ``metrics``, declare their state in ``state_spec`` and implement
    ``process``: a pure function of the batch and the state (no I/O, no clock), vectorized over rows.
    """

    metrics: ClassVar[tuple[str, ...]] = ()
    screens: ClassVar[bool] = False
    """A quality screen runs before the other detectors and may flag rows as suspect for them."""

    def state_spec(self) -> dict[str, StateArray]:
        return {}

    def cadence_problem(self, interval_s: float) -> str | None:
        """Why this detector cannot judge a sensor that reports every ``interval_s`` (None: it can).
        ``gridwatch check-config`` asks it for every configured device whose interval is known."""
        return None

    def new_state(self) -> DeviceState:
        return DeviceState(self.state_spec())

    def process(self, batch: ReadingBatch, state: DeviceState) -> list[Finding]:
        raise NotImplementedError

    def finding(
        self,
        batch: ReadingBatch,
        row: int,
        level: int,
        score: float,
        evidence: dict[str, Any],
        ts: float | None = None,
        slot: int | None = None,
    ) -> Finding:
        """A finding at batch row ``row``, about that row's device unless ``slot`` names another."""
        slot = int(batch.slot[row]) if slot is None else slot
        return Finding(
            detector=self.name,
            hazard=self.config.hazard,
            site=batch.devices.site_of_slot(slot),
            device=batch.devices.device_of_slot(slot),
            ts=float(batch.ts[row]) if ts is None else ts,
            level=Level(int(level)),
            score=float(score),
            evidence=evidence,
            row=int(row),
        )


def type_name_of(config_class: type[DetectorConfig]) -> str:
    """The ``type`` literal a config class declares."""
    default = config_class.model_fields["type"].default
    if isinstance(default, str) and default:
        return default
    args: tuple[object, ...] = getattr(config_class.model_fields["type"].annotation, "__args__", ())
    if len(args) != 1:
        raise TypeError(f"{config_class.__name__}.type must be Literal['name']")
    return str(args[0])


class UnknownDetectorError(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown detector type {name!r}; known types: {', '.join(known)}{hint}")
        self.message = str(self.args[0])

    def __str__(self) -> str:
        return self.message


class Plugin(Protocol):
    """What a registry holds: a class with a pydantic config class, built from its config."""

    config_class: ClassVar[type[DetectorConfig]]

    def __init__(self, config: Any) -> None: ...


P = TypeVar("P", bound=Plugin)


class DetectorRegistry(Generic[P]):
    """Detector classes by type name: built-ins (modules of this package) and entry-point plugins.

    ``registry`` holds the sensor detectors (``gridwatch.detectors`` entry points); the camera detectors
    have their own (``detectors.vision.base.frame_registry``).
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._classes: dict[str, type[P]] = {}
        self._loaded = False
        self.group = group

    def register(self, cls: type[P]) -> type[P]:
        name = type_name_of(cls.config_class)
        existing = self._classes.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"detector type {name!r} registered twice: {existing} and {cls}")
        self._classes[name] = cls
        return cls

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        import detectors

        for mod in pkgutil.walk_packages(detectors.__path__, "detectors."):
            if mod.name != __name__:
                importlib.import_module(mod.name)
        for ep in entry_points(group=self.group):
            try:
                self.register(ep.load())
            except Exception:
                logger.exception("could not load detector plugin %s (%s)", ep.name, ep.value)

    def known(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> type[P]:
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownDetectorError(name, self.known()) from None

    def config_classes(self) -> list[type[DetectorConfig]]:
        self._load()
        return [self._classes[n].config_class for n in sorted(self._classes)]

    def build(self, config: DetectorConfig) -> P:
        return self.get(config.type)(config)


registry: DetectorRegistry[Detector[Any]] = DetectorRegistry()
register = registry.register
