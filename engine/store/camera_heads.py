"""Cameras' learned heads in the store (engine.flow.camera_learning): on a scale-out, the worker that owns a
site's partition writes its cameras' state here at every change, and the worker that owns it next (after a
rebalance, or a restart) reads it back, so a camera keeps what it learned wherever it runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from engine.store.database import Database
from engine.store.tables import CameraHeadRow


class CameraHeads(Database):
    """The ``camera_heads`` table: per site and camera, the ``heads.json`` document and the examples (npz).

    >>> from engine.store.store import Store
    >>> st = Store("sqlite://"); st.migrate()
    >>> st.save_camera_head("S1", "cam-1", {"current": 1}, b"npz", 10.0)
    >>> st.save_camera_head("S1", "cam-1", {"current": 2}, None, 11.0)  # the examples as they were
    >>> st.camera_heads(["S1"]), st.camera_head_sites(), st.camera_heads(["S2"])
    ([('S1', 'cam-1', {'current': 2}, b'npz')], {'S1'}, [])
    """

    def save_camera_head(self, site: str, camera: str, heads: dict[str, Any], examples: bytes | None,
                         at: float) -> None:  # fmt: skip
        """Write a camera's state (one statement: a new camera or a later version, whichever worker writes);
        ``examples`` None keeps those stored."""
        row = {"site": site, "camera": camera, "heads": heads, "examples": examples, "updated_at": at}
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(CameraHeadRow)
        changed = ("heads", "updated_at") if examples is None else ("heads", "examples", "updated_at")
        with self.session() as s:
            s.execute(
                stmt.on_conflict_do_update(
                    index_elements=["site", "camera"], set_={c: stmt.excluded[c] for c in changed}
                ),
                [row],
            )

    def camera_heads(self, sites: Collection[str] | None = None) -> list[tuple[str, str, dict[str, Any], bytes | None]]:
        """(site, camera, heads document, examples) of every camera, or of those of ``sites``."""
        q = select(CameraHeadRow).order_by(CameraHeadRow.site, CameraHeadRow.camera)
        if sites is not None:
            q = q.where(CameraHeadRow.site.in_(list(sites)))
        with self.session() as s:
            return [(r.site, r.camera, r.heads, r.examples) for r in s.scalars(q)]

    def camera_head_sites(self) -> set[str]:
        """The sites with a camera that learned something."""
        with self.session() as s:
            return set(s.scalars(select(CameraHeadRow.site).distinct()))


class StoredCameraHeads:
    """A ``CameraLearning``'s keeping (``engine.flow.camera_learning.HeadKeeping``) in the store: what a
    scale-out worker learns is read by the site's next owner.

    >>> from engine.store.store import Store
    >>> st = Store("sqlite://"); st.migrate()
    >>> kept = StoredCameraHeads(st, lambda: 5.0)
    >>> kept.save("S1/cam-1", {"current": 0}, None)
    >>> list(kept.load()), list(kept.load(["S2"]))
    ([('S1/cam-1', {'current': 0}, None)], [])
    """

    def __init__(self, store: CameraHeads, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def __str__(self) -> str:
        return "the store's camera_heads"

    def save(self, key: str, doc: dict[str, Any], examples: bytes | None) -> None:
        site, _, camera = key.partition("/")
        self.store.save_camera_head(site, camera, doc, examples, self.clock())

    def load(self, sites: Collection[str] | None = None) -> Iterator[tuple[str, Any, bytes | None]]:
        for site, camera, doc, examples in self.store.camera_heads(sites):
            yield f"{site}/{camera}", doc, examples
