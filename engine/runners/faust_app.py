"""`gridwatch worker`: the scale-out runner, a Faust app on Kafka that calls the same core as the local runner.

Two stages, both partitioned by site (every gridwatch topic has ``kafka.partitions`` partitions, and Faust
gives partition N of every topic to the same worker):

- **detect** takes ``gridwatch.readings`` in batches (``stream.take_events``), runs the detectors and
  produces findings, and a watermark per partition, to ``gridwatch.findings``. Each site's detector state
  is kept in the Faust table ``site-state`` (changelogged; RocksDB or memory by config), written for the
  sites a batch touched before the batch's offsets are committed, and read back when a site first shows
  up in a worker (after a rebalance moved its partition here). Replayed readings (at-least-once) are
  dropped by reading time per device and metric (``SiteState.fresh``). Camera and thermal frames go
  through the camera detectors the same way (their short-lived background models are not in the table).
- **incidents** takes ``gridwatch.findings``, runs the incident tracker and dispatch against the shared
  store (PostgreSQL when there are several workers). Each partition's applied offset is written in the
  same transaction as the incidents and outbox rows it caused, and records at or below it are skipped:
  a replayed finding does not make a second incident or a second notification.

A record that cannot be decoded and a batch that makes a detector raise are dead-lettered to
``gridwatch.deadletter`` with the reason and counted; the agent goes on (Faust's default is to crash).

Operators act on a scale-out as on ``gridwatch run``: every worker serves the same HTTP API, operator page
and ``/metrics`` (``api``). An action (acknowledge, assign, resolve, dispatch) is queued in the shared
store for its incident's partition; the worker that owns the partition applies its partition's actions
in order each second, with the action's id as progress in the same transaction as its notifications, and
the API answers with the outcome. API silences are read from the store every ``SILENCE_REFRESH_S``. When
partitions are assigned, their open incidents are taken up at once, so escalations, reminders and the
outbox go on before the partition's sites send data again.

Cameras learn from operators' verdicts on a scale-out as on ``gridwatch run`` (engine.flow.camera_learning):
a verdict or a rollback through any worker's API is queued the same way for the partition of the camera's
site, whose owner holds the camera's alarm frames and head; it learns in a thread (a refit takes about a
second, and never holds up the incidents stage), keeps the camera's state in the store (``camera_heads``) and
answers through the action's result. The owner of a partition reads its sites' learned heads from the store
when the partition is assigned (a rebalance, a restart), so a camera keeps what it learned; any worker answers
a camera's learning status from the store. A verdict whose alarm frames are neither held nor kept under the
owner's ``data_dir/snapshots`` (the alarm was seen by the partition's previous owner) is refused with the
reason.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import ipaddress
import logging
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import numpy as np
import orjson
from faust.streams import _current_event
from faust.types import EventT

from engine import metrics
from engine.api.auth import TokenAuth
from engine.api.incidents import incidents_router
from engine.api.live import EventHub, StoreFeed
from engine.api.operator import Held, Readings, mount_static, operator_router
from engine.api.reports import reports_router
from engine.api.server import ApiServer, create_app, refresh_store_gauges
from engine.api.verdicts import verdicts_router
from engine.config.models import ApiConfig, EngineConfig, WebhookSinkConfig
from engine.config.notify import AppriseSinkConfig
from engine.core.batch import BatchBuilder
from engine.core.clock import EngineClock
from engine.core.devices import DeviceIndex
from engine.core.findings import Finding
from engine.core.history import ReadingHistory
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.dispatch.outbox import OutboxDelivery, RetryPolicy
from engine.flow.camera_learning import UNREADABLE, CameraModel, Verdict, VerdictError, camera_status
from engine.flow.cameras import CameraStage
from engine.flow.pipeline import Pipeline, apply_findings
from engine.flow.site_state import SiteState
from engine.flow.snapshot_retention import held_snapshots
from engine.incidents.reports import ReportQuota, stamped
from engine.incidents.tracker import IncidentError, IncidentTracker
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.decode import Rejection
from engine.ingest.embedded_broker import free_port
from engine.ingest.intake import deadletter_message
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.ingest.topics import TopicError, parse_topic
from engine.runners.assembly import build_pipeline, build_sinks
from engine.runners.records import (
    RecordError,
    decode_findings_record,
    decode_readings,
    findings_record,
    partition_of,
)
from engine.store.camera_heads import StoredCameraHeads
from engine.store.store import Notification, Store

logger = logging.getLogger(__name__)

Record = EventT[Any]


def by_partition_of(events: list[Record]) -> dict[int, list[Record]]:
    """A batch's records by source partition, each in arrival order."""
    out: dict[int, list[Record]] = {}
    for ev in events:
        out.setdefault(ev.message.partition, []).append(ev)
    return out


@dataclass
class PartitionDetect:
    """The detect stage of one partition: its pipeline, the state of its sites, the sites read so far."""

    pipeline: Pipeline
    site_state: SiteState
    loaded: set[str]
    history: ReadingHistory  # the operator page's charts of the partition's devices


@dataclass
class PartitionIncidents:
    """The incident stage of one partition, and the last findings offset (and operator action) whose effects
    are in the store."""

    tracker: IncidentTracker
    dispatcher: Dispatcher
    clock: EngineClock
    applied: int
    actions_applied: int = -1


SILENCE_REFRESH_S = 5.0
FEED_POLL_S = 1.0  # how often a worker's page stream reads the store's new incident events
ACTION_WAIT_S = 20.0
# Queued with the operator actions, applied apart from them (apply_camera_actions): a refit must not hold the
# incidents stage up, and a camera's actions do not touch its site's incidents.
CAMERA_ACTIONS = ("camera_verdict", "camera_rollback")


class GridwatchWorker:
    """Builds the Faust app (topics, table, agents, timers) around the core for one config.

    ``app`` is a plain ``faust.App``: run it with ``faust.Worker(worker.app).execute_from_commandline()``
    (what ``gridwatch worker`` does).
    """

    def __init__(self, cfg: EngineConfig, log_path: Path | None = None) -> None:
        self.cfg = cfg
        k = cfg.kafka
        self.partitions = k.partitions
        data_dir = Path(cfg.data_dir)
        (data_dir / "faust").mkdir(parents=True, exist_ok=True)
        if k.table_store.startswith("rocksdb://") and importlib.util.find_spec("rocksdict") is None:
            raise SystemExit(
                "kafka.table_store is rocksdb:// but the rocksdict package is not installed: "
                "pip install 'gridwatch[rocksdb]', or set kafka.table_store: memory://"
            )
        # The HTTP port is taken now: the URL other workers reach this one's API at goes to Kafka with the
        # group membership (Faust's canonical_url), so a worker finds which of them holds a site's partition.
        self.http_port = (cfg.api.port or free_port(cfg.api.host)) if cfg.api.enabled else 0
        self.advertised = advertised_url(cfg.api, self.http_port) if cfg.api.enabled else None
        self.app = faust.App(
            k.app_id,
            broker=k.url,
            store=k.table_store,
            datadir=str(data_dir / "faust"),
            topic_partitions=k.partitions,
            topic_replication_factor=k.replication,
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            canonical_url=self.advertised or "http://localhost:6066",  # Faust's default (its web is off)
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=False,
            broker_session_timeout=k.session_timeout_s,
            broker_rebalance_timeout=k.session_timeout_s,
            broker_heartbeat_interval=max(0.5, k.session_timeout_s / 10),
            # After a worker is SIGKILLed, a survivor's standby copy of a site-state changelog partition can
            # hold records past the highwater the broker then reports (seen here: 163 > 161, three workers;
            # faust-streaming/faust#158). Faust's check would crash the survivor's recovery, and with it the
            # alerting of every partition it holds. The site state tolerates a table ahead of its inputs:
            # each site's pack carries the reading times it applied, and redelivered readings at or before
            # them are dropped (engine/flow/site_state.py).
            recovery_consistency_check=False,
        )
        app = self.app
        self.readings_topic = app.topic(k.topic_readings, partitions=k.partitions)
        self.frames_topic = app.topic(k.topic_frames, k.topic_thermal, partitions=k.partitions)
        self.findings_topic = app.topic(k.topic_findings, partitions=k.partitions)
        self.deadletter_topic = app.topic(k.topic_deadletter, partitions=k.partitions)
        self.state_table = app.Table("site-state", partitions=k.partitions, key_type=bytes, value_type=bytes)

        # detect stage: a pipeline per partition, so that each keeps its own data time (partitions are
        # consumed at their own pace) and a revoked partition's state is simply dropped
        self.store = Store(cfg.store_url())
        self.store.migrate()
        self.detecting: dict[int, PartitionDetect] = {}
        # the cameras' learned heads are in the shared store, read per partition as partitions are assigned
        self.cameras = CameraStage(cfg, data_dir / "snapshots", StoredCameraHeads(self.store))
        self.camera_intake = CameraIntake(cfg, self._camera_reject) if self.cameras else None
        self._camera_dead: list[tuple[Rejection, str, bytes, float]] = []
        self._heads_taken: set[int] = set()  # partitions whose cameras' learned heads are read
        self._camera_lock = asyncio.Lock()  # camera actions and head reads, one at a time
        self._camera_store_failing = False

        # incidents stage: a tracker and dispatcher per partition, taken up from the store
        self.handling: dict[int, PartitionIncidents] = {}
        self._incidents_lock = asyncio.Lock()
        self._log_path = log_path
        self.delivery: OutboxDelivery | None = None
        self._sink_names: list[str] = [s.name or s.type for s in cfg.sinks]
        self._mqtt: MqttClient | None = None
        self.readings = 0
        self.events = 0

        app.agent(self.readings_topic, name="detect")(self._detect_agent)
        app.agent(self.frames_topic, name="cameras")(self._camera_agent)
        app.agent(self.findings_topic, name="incidents")(self._incidents_agent)
        app.timer(1.0)(self._tick)
        app.timer(1.0)(self._camera_tick)
        app.task(self._deliver)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self._silences_read = time.monotonic()
        self.api_url: str | None = None
        self.hub = EventHub()
        if cfg.api.enabled:
            app.task(self._serve_api)

    # ----- detect stage

    async def _detect_agent(self, stream: Any) -> None:
        k = self.cfg.kafka
        async for events in stream.take_events(k.take_max, within=k.take_within_s):
            t0 = time.perf_counter()
            try:
                await self.detect(events)
                logger.debug("detect: %d records in %.1f ms", len(events), 1000 * (time.perf_counter() - t0))
            except Exception as exc:  # never let one batch stop the agent
                logger.exception("a batch of %d records failed", len(events))
                for ev in events:
                    await self.dead_letter("detect_error", repr(exc), ev)

    def _detecting(self, partition: int) -> PartitionDetect:
        core = self.detecting.get(partition)
        if core is None:
            pipeline = build_pipeline(self.cfg)
            history = ReadingHistory(self.cfg.api.history_points if self.cfg.api.enabled else 0)
            core = self.detecting[partition] = PartitionDetect(pipeline, SiteState(pipeline), set(), history)
        return core

    async def detect(self, events: list[Record]) -> None:
        """A batch of readings records through the detectors, partition by partition."""
        by_partition = by_partition_of(events)
        sent: list[Any] = []
        states: list[tuple[SiteState, dict[str, Record]]] = []
        for partition, evs in sorted(by_partition.items()):
            done = await self._detect_partition(self._detecting(partition), partition, evs, sent)
            if done is not None:
                states.append(done)
        # The state goes to the changelog only once Kafka has the findings: a crash in between replays the
        # readings against the old state and makes the same findings again, never none.
        await asyncio.gather(*sent)
        for state, event_of_site in states:
            for site, ev in event_of_site.items():
                packed = state.pack(site)
                metrics.SITE_STATE_BYTES.observe(len(packed))
                # Faust writes a table key to the changelog partition of the event being processed (in a
                # batch, the last one taken): name the site's own record, whose partition is the site's.
                token = _current_event.set(weakref.ref(ev))
                try:
                    self.state_table[site.encode()] = packed
                finally:
                    _current_event.reset(token)

    async def _detect_partition(
        self, core: PartitionDetect, partition: int, events: list[Record], sent: list[Any]
    ) -> tuple[SiteState, dict[str, Record]] | None:
        """One partition's records through its pipeline; the sends' acknowledgements go to ``sent``.

        Returns the state and the sites (with one record of each) whose state is to be written.
        """
        pipeline, state = core.pipeline, core.site_state
        builder = BatchBuilder(pipeline.devices)
        good: list[Record] = []
        event_of_site: dict[str, Record] = {}
        for ev in events:
            try:
                site, _n = decode_readings(ev.value, builder)
            except RecordError as exc:
                await self.dead_letter(exc.reason, str(exc), ev)
                continue
            good.append(ev)
            event_of_site[site] = ev
        batch = builder.take()
        if not len(batch):
            return None
        sites = state.sites_of(batch)
        for site in sites:
            if site not in core.loaded:
                state.unpack(site, self.state_table.get(site.encode()))
                core.loaded.add(site)
        n_in = len(batch)
        batch = state.fresh(batch)
        if len(batch) < n_in:
            metrics.REPLAYED.labels("detect").inc(n_in - len(batch))
        if not len(batch):
            return None
        core.history.add(batch, time.time())
        failed_before = pipeline.failures_total
        try:
            # A detector that raises costs only its own findings of this batch (Pipeline.detect resets its
            # state for these devices): nothing is fed twice, the other detectors' state stays exact.
            found = pipeline.detect_batch(batch)
        except Exception as exc:  # outside the detectors (fusion): the batch's records are dead-lettered
            logger.exception("detection failed on a batch of %d readings", len(batch))
            for ev in good:
                await self.dead_letter("detect_error", repr(exc)[:500], ev)
            found = []
            pipeline.watermark = max(pipeline.watermark, float(batch.ts.max()))
        for failure in pipeline.failures_since(failed_before):
            detail = (f"detector {failure.detector} raised on the batch holding this record and did not apply it "
                      f"(the other detectors did): {failure.error}")  # fmt: skip
            for ev in good:
                await self.dead_letter("detector_error", detail, ev)
        self.readings += len(batch)
        metrics.READINGS.inc(len(batch))
        record = findings_record(found, pipeline.watermark)
        sent.append(await self.findings_topic.send(value=record, partition=partition))
        return state, {site: event_of_site[site] for site in sites}

    async def _camera_agent(self, stream: Any) -> None:
        async for events in stream.take_events(64, within=self.cfg.kafka.take_within_s):
            try:
                await self.camera_batch(events)
            except Exception as exc:
                logger.exception("a batch of %d frames failed", len(events))
                for ev in events:
                    await self.dead_letter("detect_error", repr(exc), ev)

    async def camera_batch(self, events: list[Record]) -> None:
        """Frames through the camera detectors (as the local runner's camera stage does)."""
        cams = self.camera_intake
        if cams is None:
            return
        for ev in events:
            headers = dict(ev.message.headers or [])
            topic = bytes(headers.get("topic", b"")).decode("utf-8", "replace")
            try:
                t = parse_topic(topic, self.cfg.mqtt.topic_prefix)
            except TopicError as exc:
                await self.dead_letter("bad_record", str(exc), ev)
                continue
            ts = bytes(headers.get("ts", b"")).decode() or repr(time.time())
            cams.handle(t, topic, ev.value, {"ts": ts}, time.time())
        if self.cameras.learning is not None and self.owned_shards() - self._heads_taken:
            async with self._camera_lock:  # not read when the partition came (the store was out): now
                await asyncio.to_thread(self.take_up_camera_heads, self.owned_shards())
        frames = await asyncio.to_thread(cams.take)  # decoded here, off the event loop
        findings = await asyncio.to_thread(self.cameras.step, frames, set(cams.thermal))
        if frames and self.cameras.retention is not None:  # what this worker's open incidents show is kept
            async with self._incidents_lock:  # the trackers change on threads under this lock
                held = held_snapshots(inc for p in self.handling.values() for inc in p.tracker.open.values())
            await asyncio.to_thread(self.cameras.prune, max(f.ts for f in frames), held)
        for rej, topic, payload, at in self._camera_dead:  # refused on arrival or when decoded
            await self.deadletter_topic.send(value=deadletter_message(rej, topic, payload, at))
        self._camera_dead.clear()
        by_partition: dict[int, list[tuple[Finding, float]]] = {}
        for f in findings:
            by_partition.setdefault(self.shard_of(f.site), []).append((f, f.ts))
        for partition, found in by_partition.items():
            wm = max(at for _f, at in found)
            await self.findings_topic.send(value=findings_record(found, wm), partition=partition)

    def _camera_reject(self, rejected: list[Rejection], topic: str, payload: bytes, now: float) -> None:
        for rej in rejected:
            metrics.DEADLETTERS.labels(rej.reason).inc()
            self._camera_dead.append((rej, topic, payload, now))

    async def dead_letter(self, reason: str, detail: str, ev: Record) -> None:
        """Send a record the worker could not use to the dead-letter topic, with the reason; count it."""
        metrics.DEADLETTERS.labels(reason).inc()
        logger.warning("dead-letter %s from %s[%s]@%s: %s", reason, ev.message.topic, ev.message.partition,
                       ev.message.offset, detail)  # fmt: skip
        doc = {
            "reason": reason, "detail": detail, "topic": ev.message.topic, "partition": ev.message.partition,
            "offset": ev.message.offset, "received_at": time.time(),
            "value_b64": base64.b64encode(ev.value or b"").decode(),
        }  # fmt: skip
        await self.deadletter_topic.send(key=ev.message.key, value=orjson.dumps(doc))

    # ----- incidents stage

    def shard_of(self, site: str) -> int:
        return partition_of(site, self.partitions)

    def _stream(self, partition: int) -> str:
        return f"{self.cfg.kafka.topic_findings}/{partition}"

    def _recent_since(self, reopen_s: float) -> float | None:
        """From when resolved incidents may still re-open (None: no window, or no data time yet)."""
        at = self._data_time()
        return at - reopen_s if reopen_s > 0 and np.isfinite(at) else None

    def _data_time(self) -> float:
        """The latest data time this worker has seen in any partition (-inf: none yet)."""
        times = [st.clock.now() for st in self.handling.values() if st.clock.started]
        times += [core.pipeline.watermark for core in self.detecting.values()]
        return max(times, default=-np.inf)

    def _handling(self, partition: int) -> PartitionIncidents:
        """A partition's incident stage; the first time, its open incidents and applied offset from the store."""
        stage = self.handling.get(partition)
        if stage is not None:
            return stage
        tracker = build_pipeline(self.cfg).tracker
        dispatcher = Dispatcher(self.cfg, tracker, self.store)
        dispatcher.shard_of = self.shard_of
        dispatcher.sinks = self._sink_names
        reopen = self.cfg.incidents.reopen_within_s
        stored = [
            s
            for s in self.store.open_incidents(resolved_since=self._recent_since(reopen))
            if self.shard_of(s["site"]) == partition
        ]
        if tracker.restore(stored):
            dispatcher.restore(stored)
        applied = self.store.progress(self._stream(partition)).get(self._stream(partition), -1)
        actions_applied = self.store.progress(self._actions_stream(partition)).get(self._actions_stream(partition), -1)
        clock = EngineClock()
        for s in stored:  # data time where the previous owner left off, not the wall clock
            if s["state"] != "resolved":
                clock.observe(max(s["updated_at"], s.get("last_finding_at") or 0.0))
        stage = self.handling[partition] = PartitionIncidents(tracker, dispatcher, clock, applied, actions_applied)
        logger.info("partition %d: took up %d open incidents; findings applied up to offset %d", partition,
                    len(stored), applied)  # fmt: skip
        return stage

    async def _incidents_agent(self, stream: Any) -> None:
        k = self.cfg.kafka
        async for events in stream.take_events(k.take_max, within=k.take_within_s):
            try:
                async with self._incidents_lock:
                    bad = await asyncio.to_thread(self.incidents, events)
                for ev, detail in bad:
                    await self.dead_letter("bad_record", detail, ev)
            except Exception:
                logger.exception("a batch of %d findings failed", len(events))
            if self.delivery is not None:
                self.delivery.kick()

    def incidents(self, events: list[Record]) -> list[tuple[Record, str]]:
        """Findings and watermarks into each partition's tracker and dispatch, skipping what the store has.

        Returns the records that are not findings records, with the reason, for the dead-letter topic.
        """
        by_partition = by_partition_of(events)
        bad: list[tuple[Record, str]] = []
        for partition, evs in sorted(by_partition.items()):
            bad.extend(self._incidents_partition(self._handling(partition), partition, evs))
        return bad

    def _incidents_partition(
        self, stage: PartitionIncidents, partition: int, events: list[Record]
    ) -> list[tuple[Record, str]]:
        out: list[dict[str, Any]] = []
        bad: list[tuple[Record, str]] = []
        replayed = 0
        last = stage.applied
        for ev in events:
            if ev.message.offset <= stage.applied:
                replayed += 1
                continue
            last = max(last, ev.message.offset)
            try:
                wm, found = decode_findings_record(ev.value)
            except RecordError as exc:
                bad.append((ev, str(exc)))
                continue
            # a grid report from the bridge comes without a time: it happens now, by this partition's clock
            found = [(stamped(f, stage.clock.now()), at) for f, at in found]
            out.extend(apply_findings(stage.tracker, found, wm))
            stage.clock.observe(wm)
        if replayed:
            metrics.REPLAYED.labels("incidents").inc(replayed)
        stage.applied = last
        now = stage.clock.now()
        stage.dispatcher.progress[self._stream(partition)] = last
        stage.dispatcher.handle(out, now)
        stage.dispatcher.tick(now)
        self.events += len(out)
        return bad

    async def _tick(self) -> None:
        """Escalations and reminders fall due on the engine clock even when no data arrives; operators'
        actions for this worker's partitions are applied; API silences are re-read now and then."""
        notes = 0
        refresh = time.monotonic() - self._silences_read >= SILENCE_REFRESH_S
        async with self._incidents_lock:
            for stage in list(self.handling.values()):
                if refresh:
                    await asyncio.to_thread(stage.dispatcher.refresh_silences)
                if stage.clock.started:  # no data time yet: nothing can fall due
                    notes += len(await asyncio.to_thread(stage.dispatcher.tick, stage.clock.now()))
            notes += await asyncio.to_thread(self.apply_actions)
        if refresh:
            self._silences_read = time.monotonic()
        if notes and self.delivery is not None:
            self.delivery.kick()

    def _actions_stream(self, partition: int) -> str:
        return f"operator-actions/{partition}"

    def apply_actions(self) -> int:
        """The queued operator actions of this worker's partitions, in order; returns the notifications made."""
        made = 0
        for action_id, shard, spec in self.store.pending_actions(self.owned_shards()):
            stage = self.handling.get(shard)
            if stage is None or spec.get("kind") in CAMERA_ACTIONS:  # cameras': apply_camera_actions
                continue
            stream = self._actions_stream(shard)
            if action_id <= stage.actions_applied:  # its notifications were stored before a restart
                self.store.finish_action(action_id, "applied", {"events": [], "note": "applied before a restart"},
                                         time.time(), stream)  # fmt: skip
                continue
            action = OperatorAction.model_validate(spec)
            stage.dispatcher.progress[stream] = action_id
            try:
                notes = apply_action(stage.dispatcher, action, stage.clock.now())
            except IncidentError as exc:
                self.store.finish_action(action_id, "refused", {"error": str(exc)}, time.time(), stream)
            else:
                made += len(notes)
                events = [n.outgoing() for n in notes]
                self.store.finish_action(action_id, "applied", {"events": events}, time.time(), stream)
            stage.actions_applied = action_id
        return made

    async def act(self, action: OperatorAction) -> list[Notification]:
        """An operator action from the API: queued for the owner of its incident's partition (maybe this
        worker), answered when applied. ``IncidentError`` when refused, ``TimeoutError`` when no owner
        applied it within ``ACTION_WAIT_S`` (it stays queued for the partition's next owner)."""
        if action.kind == "refresh_silences":
            async with self._incidents_lock:
                for stage in list(self.handling.values()):
                    await asyncio.to_thread(stage.dispatcher.refresh_silences)
            return []
        if action.kind == "report" and action.report is not None:  # a grid report: on its site
            site = str(action.report["site"])
        else:
            incident = await asyncio.to_thread(self.store.incident, action.incident_id)
            if incident is None:
                raise IncidentError(f"no incident {action.incident_id}")
            site = incident["site"]
        state, result = await self._queued(site, action.model_dump(), self._apply_actions_now)
        if state == "refused":
            raise IncidentError(result.get("error", "refused"))
        events = result.get("events", [])
        return [Notification(e, e.get("updated_at", 0.0), bool(e.get("notified", True)), {}) for e in events]

    async def _apply_actions_now(self) -> None:
        async with self._incidents_lock:
            await asyncio.to_thread(self.apply_actions)
        if self.delivery is not None:
            self.delivery.kick()

    async def _queued(
        self, site: str, spec: dict[str, Any], apply: Callable[[], Awaitable[None]]
    ) -> tuple[str, dict[str, Any]]:
        """Queue an action for the owner of ``site``'s partition and wait for its outcome (state and result);
        when the partition is this worker's, ``apply`` applies it now rather than at the next tick.
        ``TimeoutError`` when no owner applied it within ``ACTION_WAIT_S`` (it stays queued)."""
        shard = self.shard_of(site)
        action_id = await asyncio.to_thread(self.store.enqueue_action, shard, site, spec, time.time())
        deadline = time.monotonic() + ACTION_WAIT_S
        while time.monotonic() < deadline:
            if shard in self.handling:
                await apply()
            state, result = await asyncio.to_thread(self.store.action, action_id)
            if state in ("applied", "refused", "failed"):
                return state, result or {}
            await asyncio.sleep(0.1)
        raise TimeoutError(f"no worker applied action {action_id} on partition {shard} within {ACTION_WAIT_S:g} s")

    # ----- cameras that learn

    async def learn(self, site: str, spec: dict[str, Any]) -> dict[str, Any]:
        """A camera verdict or rollback from the API (``CAMERA_ACTIONS``): queued for the owner of the camera's
        site (maybe this worker), answered with what the camera learned. ``VerdictError`` when refused,
        ``TimeoutError`` when no owner applied it within ``ACTION_WAIT_S``."""
        state, result = await self._queued(site, spec, self._apply_camera_actions)
        if state == "refused":
            raise VerdictError(result.get("error", "refused"))
        if state == "failed":
            raise RuntimeError(f"the camera's owner could not learn: {result.get('error')}")
        return result

    async def _apply_camera_actions(self) -> None:
        async with self._camera_lock:
            await asyncio.to_thread(self.apply_camera_actions)

    async def _camera_tick(self) -> None:
        """The verdicts and rollbacks queued for this worker's cameras by other workers, each second."""
        try:
            await self._apply_camera_actions()
        except Exception:  # the store is out: they wait in the queue, and the timer goes on
            if not self._camera_store_failing:
                logger.warning("the queued camera verdicts cannot be read from the store", exc_info=True)
            self._camera_store_failing = True
        else:
            self._camera_store_failing = False

    def apply_camera_actions(self) -> int:
        """The queued verdicts and rollbacks of this worker's cameras, in order, each answered in its action's
        result (the camera's learning runs here, on this thread); returns how many were applied or refused."""
        done = 0
        for action_id, shard, spec in self.store.pending_actions(self.owned_shards()):
            if spec.get("kind") not in CAMERA_ACTIONS:
                continue
            self.take_up_camera_heads([shard])  # taken up when assigned; a partition assigned meanwhile, now
            if self.cameras.learning is not None and shard not in self._heads_taken:
                continue  # what its cameras learned could not be read: learning now would write over it
            try:
                state, result = "applied", self._camera_action(spec)
            except VerdictError as exc:
                state, result = "refused", {"error": str(exc)}
            except Exception as exc:  # a bug: said to the operator (500) and in the log, the queue goes on
                logger.exception("camera action %d (%s) failed", action_id, spec.get("kind"))
                state, result = "failed", {"error": f"{type(exc).__name__}: {exc}"[:500]}
            self.store.finish_action(action_id, state, result, time.time(), f"camera-actions/{shard}")
            done += 1
        return done

    def _camera_action(self, spec: dict[str, Any]) -> dict[str, Any]:
        learning = self.cameras.learning
        if learning is None:
            raise VerdictError("no camera detector here learns (cameras.learning.enabled, smoke_fire_onnx)")
        if spec["kind"] == "camera_verdict":
            v = Verdict.from_json(spec["verdict"])
            incident = self.store.incident(v.incident_id)
            return self.cameras.verdict(v, (incident or {}).get("findings", []))
        return learning.rollback(str(spec["camera"]), int(spec["version"]), str(spec["actor"]), float(spec["at"]))

    def take_up_camera_heads(self, partitions: Collection[int]) -> None:
        """The learned heads of the cameras of these partitions' sites, from the store (where their previous
        owner, or this worker before a restart, kept them), into this worker's camera detectors."""
        learning = self.cameras.learning
        todo = sorted(set(partitions) - self._heads_taken)
        if learning is None or not todo:
            return
        try:
            sites = {site for site in self.store.camera_head_sites() if self.shard_of(site) in todo}
            read = learning.load(sites) if sites else []
        except Exception:  # the store is out: the shipped heads until it answers (tried again with the next frames)
            logger.warning("partitions %s: cannot read the cameras' learned heads from the store", todo, exc_info=True)
            return
        self._heads_taken.update(todo)
        if read:
            logger.info("partitions %s: took up %d cameras' learned heads", todo, len(read))

    def let_go_of_camera_heads(self, partitions: Collection[int]) -> None:
        """The cameras of partitions that left: their next owner learns from now on (read again if they return)."""
        learning = self.cameras.learning
        self._heads_taken.difference_update(partitions)
        if learning is not None:
            learning.forget({key.partition("/")[0] for key in list(learning.cameras)
                             if self.shard_of(key.partition("/")[0]) in partitions})  # fmt: skip

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions arrive: take up their open incidents now, so that escalations, reminders and the outbox
        go on before their sites send data again."""
        assigned = args[0] if args else kwargs.get("assigned") or set()
        # Only the findings topic's partitions are this worker's to handle (a table's standby changelog
        # partitions are assigned too, and belong to another worker's active partitions).
        partitions = sorted({tp.partition for tp in assigned if tp.topic == self.cfg.kafka.topic_findings})
        async with self._camera_lock:  # before their frames come: a camera keeps the head it learned
            await asyncio.to_thread(self.take_up_camera_heads, partitions)
        async with self._incidents_lock:
            for partition in partitions:
                await asyncio.to_thread(self._handling, partition)
        if partitions and self.delivery is not None:
            self.delivery.kick()

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions leave: what this worker holds of them may change elsewhere; drop it (read afresh later)."""
        revoked = args[0] if args else kwargs.get("revoked") or set()
        async with self._incidents_lock:
            k = self.cfg.kafka
            for tp in revoked:  # a table's standby changelog partitions come and go too: not ours to drop for
                if tp.topic == k.topic_readings:
                    self.detecting.pop(tp.partition, None)
                elif tp.topic == k.topic_findings:
                    self.handling.pop(tp.partition, None)
        gone = {tp.partition for tp in revoked if tp.topic == self.cfg.kafka.topic_findings}
        if gone:
            async with self._camera_lock:
                await asyncio.to_thread(self.let_go_of_camera_heads, gone)

    def owned_shards(self) -> set[int]:
        """The partitions whose incidents this worker handles now: a revoked one leaves at once, so two
        workers do not deliver the same outbox rows during a rebalance."""
        return set(self.handling)

    def health(self) -> dict[str, Any]:
        """What ``/readyz`` says of this worker: the store answers, and its background tasks run."""
        try:
            self.store.progress("operator-actions/")
            store_ok = True
        except Exception:
            store_ok = False
        delivery_ok = self.delivery is not None
        return {
            "ok": store_ok and delivery_ok,
            "runner": "faust-worker",
            "store_ok": store_ok,
            "outbox_delivery_running": delivery_ok,
            "partitions": sorted(self.handling),
            "readings": self.readings,
            "events": self.events,
            "open_incidents": sum(len(st.tracker.open) for st in self.handling.values()),
        }

    def site_readings(self, site: str) -> Held | str | None:
        """The history this worker keeps of a site's devices, the API URL of the worker whose partition
        holds the site, or None while none does (a rebalance)."""
        partition = self.shard_of(site)
        core = self.detecting.get(partition)
        if core is not None:
            return core.pipeline.devices, core.history
        topic = self.cfg.kafka.topic_readings
        owners = self.app.assignor.external_topics_metadata()  # type: ignore[attr-defined]
        owner = next((str(url).rstrip("/") for url, tps in owners.items() if partition in tps.get(topic, ())), None)
        if owner == self.advertised:
            return DeviceIndex(), ReadingHistory(0)  # ours, and no readings yet
        return owner

    def readings_clock(self) -> tuple[float | None, float | None]:
        """The newest reading's time and arrival over this worker's partitions."""
        kept = [core.history for core in self.detecting.values() if core.history.last_reading_ts is not None]
        if not kept:
            return None, None
        return max(h.last_reading_ts or 0.0 for h in kept), max(h.last_received_at or 0.0 for h in kept)

    async def _serve_api(self) -> None:
        """The same HTTP API, operator page and /metrics as ``gridwatch run``. A chart of a site another
        worker holds is fetched from it; the page's live stream carries every partition's events, read from
        the shared store (``StoreFeed``)."""
        cfg = self.cfg
        auth = TokenAuth(cfg.api.tokens, peer_secret=cfg.api.peer_secret)
        self.hub.attach(asyncio.get_running_loop())
        incidents = incidents_router(self.store, self.act, auth, time.time, lambda: list(cfg.silences))
        intake = self.camera_intake
        readings = Readings(self.site_readings, self.readings_clock)
        page = operator_router(self.store, lambda: cfg, readings, self.hub, auth, Path(cfg.data_dir) / "snapshots",
                               lambda site, cam: intake.latest_image(site, cam) if intake else None)  # fmt: skip
        photos = Path(cfg.data_dir) / "reports"
        reports = reports_router(
            self.store, self.act, auth, lambda: cfg, time.time, photos, ReportQuota(cfg.reports, photos)
        )
        learner = WorkerLearner(self) if self.cameras.learning is not None else None
        verdicts = verdicts_router(self.store, lambda: learner, auth, time.time)
        app = create_app(self.health, None, (incidents, reports, page, verdicts), auth, cfg.api.metrics_public,
                         lambda: refresh_store_gauges(self.store), cfg.api.max_body_bytes)  # fmt: skip
        mount_static(app)
        server = ApiServer(app, cfg.api.host, self.http_port, cfg.api.max_connections)
        await server.start()
        self.api_url = server.url
        logger.info("worker HTTP API at %s (to the other workers: %s)", server.url, self.advertised)
        feed = StoreFeed(self.store, self.hub.publish)
        failing = False
        try:
            while True:
                try:
                    await asyncio.to_thread(feed.poll, time.time())
                except Exception:  # the store is out (readiness says so): the stream goes on when it is back
                    if not failing:
                        logger.warning("the page's event feed cannot read the store", exc_info=True)
                    failing = True
                else:
                    if failing:
                        logger.info("the page's event feed reads the store again")
                    failing = False
                await asyncio.sleep(FEED_POLL_S)
        finally:
            self.hub.close()
            await server.stop()

    async def _deliver(self) -> None:
        """The outbox rows of this worker's partitions, to the sinks (until the app stops)."""
        cfg = self.cfg
        publish = None
        if any(s.type == "mqtt" for s in cfg.sinks):
            host, port = broker_address(cfg.mqtt.url) if cfg.mqtt.url != "embedded" else ("127.0.0.1", 1883)
            self._mqtt = MqttClient(cfg.mqtt, client_id=f"{cfg.kafka.app_id}-worker-{id(self)}", clean=True)
            await asyncio.to_thread(self._mqtt.start, host, port)
            publish = self._mqtt.publish
        sinks = build_sinks(cfg, publish, self._log_path, store=self.store)
        policies = {
            s.name or s.type: RetryPolicy(s.backoff_s, s.backoff_max_s, s.max_attempts)
            for s in cfg.sinks
            if isinstance(s, WebhookSinkConfig | AppriseSinkConfig)
        }
        self._sink_names = [s.name for s in sinks.sinks]
        for stage in self.handling.values():
            stage.dispatcher.sinks = self._sink_names
        self.delivery = OutboxDelivery(self.store, sinks.sinks, policies, shards=self.owned_shards)
        stop = asyncio.Event()
        try:
            await self.delivery.run(stop)
        finally:
            sinks.close()
            if self._mqtt is not None:
                self._mqtt.stop()


class WorkerLearner:
    """``Learner`` on a scale-out worker: verdicts and rollbacks go to the worker that owns the camera's site
    (``GridwatchWorker.learn``); a camera's status is read from the store, by whichever worker is asked."""

    def __init__(self, worker: GridwatchWorker) -> None:
        self.worker = worker

    async def verdict(self, v: Verdict, findings: list[dict[str, Any]]) -> dict[str, Any]:
        # the owner reads the incident's findings from the store itself: they are not queued twice
        return await self.worker.learn(v.site, {"kind": "camera_verdict", "verdict": v.to_json()})

    async def rollback(self, key: str, version: int, actor: str) -> dict[str, Any]:
        spec = {"kind": "camera_rollback", "camera": key, "version": version, "actor": actor, "at": time.time()}
        return await self.worker.learn(key.partition("/")[0], spec)

    def status(self, key: str) -> dict[str, Any]:
        site, _, camera = key.partition("/")
        kept = next(((doc, ex) for s, c, doc, ex in self.worker.store.camera_heads([site]) if c == camera), None)
        try:
            return camera_status(key, CameraModel.from_record(*kept) if kept else None)
        except UNREADABLE as exc:  # as its owner does: the shipped head
            logger.error("the store's camera_heads: cannot read the camera's learned head of %s (%s)", key, exc)
            return camera_status(key, None)


def advertised_url(api: ApiConfig, port: int) -> str:
    """The URL the other workers reach this one's API at (``api.advertise_url``, or host and port).

    >>> advertised_url(ApiConfig(host="127.0.0.1"), 8081)
    'http://127.0.0.1:8081'
    >>> advertised_url(ApiConfig(advertise_url="http://worker-2:8080/"), 8081)
    'http://worker-2:8080'
    """
    if api.advertise_url:
        return api.advertise_url.rstrip("/")
    host = socket.gethostname() if listens_everywhere(api.host) else api.host
    return f"http://{host}:{port}"


def listens_everywhere(host: str) -> bool:
    """Whether ``host`` is the unspecified address (every interface), which no other machine can dial.

    >>> listens_everywhere("::"), listens_everywhere("127.0.0.1"), listens_everywhere("worker-2")
    (True, False, False)
    """
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        return False
