"""The store's database: the engine for a URL (SQLite with WAL, or PostgreSQL), schema migrations, one
session factory every part of the store writes through, and the streams' applied offsets."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from engine.store.tables import (
    StreamProgressRow,
)

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, json_serializer=json_text)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers (the API) do not block the engine's writes
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, json_serializer=json_text)


def json_text(value: Any) -> str:
    """JSON for the store's JSON columns, by orjson: a NaN or infinity (a detector's evidence from a frame
    holding one) is written as null. The standard library writes ``Infinity``, which PostgreSQL refuses, and
    the refused notification was a RED fire that never reached anyone.

    >>> json_text({"peak_c": float("inf"), "mean_c": float("nan"), "ok": 1.5})
    '{"peak_c":null,"mean_c":null,"ok":1.5}'
    """
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


class Database:
    """One database by URL: its engine, its session factory and its schema (``migrate``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, attempts: int = 5) -> None:
        """Bring the schema to the latest revision. Several processes starting at once (Faust workers)
        race for it: PostgreSQL serialises them on an advisory lock; elsewhere the loser retries, and
        finds the schema current."""
        for attempt in range(1, attempts + 1):
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(7160042)"))
                    cfg = alembic_config(self.url)
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                return
            except DBAPIError as exc:
                if attempt == attempts:
                    raise
                logger.info("schema migration raced another process (%s); retrying", exc.orig)
                time.sleep(0.5 * attempt)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._session.begin() as s:
            yield s

    # Stream progress: the offset applied per stream, written in the transaction of what it applied

    def _save_progress(self, s: Session, progress: dict[str, int]) -> None:
        query = select(StreamProgressRow).where(StreamProgressRow.stream.in_(progress))
        known = {r.stream: r for r in s.scalars(query)}
        for stream, offset in progress.items():
            row = known.get(stream)
            if row is None:
                s.add(StreamProgressRow(stream=stream, applied=offset))
            elif offset > row.applied:
                row.applied = offset

    def progress(self, prefix: str = "") -> dict[str, int]:
        """Applied offsets by stream (``topic/partition``) whose name starts with ``prefix``."""
        with self.session() as s:
            rows = s.scalars(select(StreamProgressRow).where(StreamProgressRow.stream.startswith(prefix))).all()
            return {r.stream: r.applied for r in rows}
