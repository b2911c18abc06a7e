"""The local runner: one asyncio process; an MQTT client feeds the core directly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine import metrics
from engine.api.auth import TokenAuth
from engine.api.datalogger import datalogger_router
from engine.api.incidents import incidents_router
from engine.api.live import EventHub
from engine.api.operator import Readings, mount_static, operator_router
from engine.api.reports import reports_router
from engine.api.server import ApiServer, create_app, refresh_store_gauges
from engine.api.verdicts import StageLearner, verdicts_router
from engine.config.models import CameraConfig, EngineConfig, WebhookSinkConfig
from engine.config.notify import AppriseSinkConfig
from engine.core.clock import EngineClock
from engine.core.history import ReadingHistory
from engine.dispatch.actions import OperatorAction, apply_action
from engine.dispatch.dispatcher import Dispatcher
from engine.dispatch.outbox import OutboxDelivery, RetryPolicy
from engine.dispatch.sinks import Sink
from engine.flow.cameras import CameraStage
from engine.flow.checkpoint import (
    checkpoint_arrays,
    checkpoint_buffers,
    checkpoint_meta,
    load_checkpoint,
    write_checkpoint,
)
from engine.flow.pipeline import DetectorFailure
from engine.flow.snapshot_retention import held_snapshots
from engine.incidents.reports import ReportError, ReportQuota, ReportWorker, mqtt_report
from engine.ingest.camera_intake import CameraIntake
from engine.ingest.camera_sources import CameraSources
from engine.ingest.decode import Rejection
from engine.ingest.embedded_broker import EmbeddedBroker
from engine.ingest.intake import Intake
from engine.ingest.mqtt_client import MqttClient, broker_address
from engine.ingest.network_servers import NetworkServerSource
from engine.ingest.topics import Topic, engine_status_topic, subscriptions
from engine.runners.assembly import build_pipeline, build_sinks
from engine.runners.reload import ReloadResult, reload_from
from engine.runners.supervision import Supervisor
from engine.store.store import Notification, Store

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    readings: int = 0
    rejected: int = 0
    events: int = 0
    by_hazard_level: dict[tuple[str, str], int] = field(default_factory=dict)
    open_incidents: int = 0


class LocalRunner:
    """Connects to the broker (starting the embedded one if configured), ingests, detects, dispatches.

    ``ready`` is set once everything listens; ``broker_port`` and ``api_url`` then say where.
    """

    def __init__(
        self,
        cfg: EngineConfig,
        log_path: Path | None = None,
        extra_sinks: list[Sink] | None = None,
        on_events: Callable[[list[dict[str, Any]]], None] | None = None,
        measure_latency: bool = True,
        config_path: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self._step_lock = asyncio.Lock()
        self._step_since: float | None = None  # when the step under the lock began (the watchdog's clock)
        self._camera_since: float | None = None  # when the camera stage began its current frames
        self._checkpoint_lock = asyncio.Lock()
        self.pipeline = build_pipeline(cfg)
        self.clock = EngineClock()
        self._photo_dir = Path(cfg.data_dir) / "reports"
        self.report_quota = ReportQuota(cfg.reports, self._photo_dir)  # the API's and MQTT's reports together
        self.report_worker = ReportWorker()
        self._intake: Intake | None = None
        self.store = Store(cfg.store_url())
        self.dispatcher: Dispatcher | None = None
        self.checkpoint_path = Path(cfg.data_dir) / "checkpoint.npz"
        self.held_path = Path(cfg.data_dir) / "held-notifications.json"
        self.history = ReadingHistory(cfg.api.history_points)
        self.snapshot_dir = Path(cfg.data_dir) / "snapshots"
        self._camera_intake: CameraIntake | None = None
        self.cameras = CameraStage(cfg, self.snapshot_dir, Path(cfg.data_dir) / "camera_heads")
        self.camera_sources: CameraSources | None = None  # the cameras the engine pulls (RTSP, HTTP, devices)
        self.hub = EventHub()
        self.delivery: OutboxDelivery | None = None
        self.summary = RunSummary()
        self.ready = asyncio.Event()
        self.broker_port: int | None = None
        self.api_url: str | None = None
        self._log_path = log_path
        self._extra_sinks = extra_sinks
        self._on_events = on_events
        self._measure_latency = measure_latency
        self._full = asyncio.Event()
        self._checkpointed = time.monotonic()
        self.client: MqttClient | None = None
        self.network_sources: list[NetworkServerSource] = []  # LoRaWAN network servers (lorawan.networks)
        self._acks_for_checkpoint: list[Callable[[], None]] = []  # ack_after: checkpoint
        self.supervisor = Supervisor()
        self.checkpoint_error: str | None = None  # the last checkpoint write's error, until one succeeds
        self._failures_reported = 0  # of pipeline.failures, those already dead-lettered
        self._failure_times: list[tuple[DetectorFailure, float]] = []  # (failure, wall time) of the last 100
        self._deadletter: Callable[[str, bytes], None] | None = None
        self._acks_for_store: list[Callable[[], None]] = []  # processed while the store was out
        self._last_reading_at = time.time()  # wall time of the last batch with readings (or of the start)
        self._purged = time.monotonic() - 3600.0 + 60.0  # the first purge a minute after the start

    @contextlib.asynccontextmanager
    async def _stepping(self) -> AsyncIterator[None]:
        """The step lock (batches, operator actions, the clock's tick, a checkpoint's copy), timed: a step
        that never ends (a detector or a store call that hangs) makes ``health`` not ready."""
        async with self._step_lock:
            self._step_since = time.monotonic()
            try:
                yield
            finally:
                self._step_since = None

    def health(self) -> dict[str, Any]:
        """Readiness: broker, store, background tasks, checkpoints and detectors all working."""
        connected = bool(self.client and self.client.connected.is_set())
        store_ok = self.dispatcher.store_ok if self.dispatcher is not None else True
        tasks_failing = self.supervisor.failing()
        quiet_s = time.time() - self._last_reading_at
        silent = self.cfg.ingest.fleet_silent_s
        fleet_silent = bool(silent and quiet_s > silent)
        horizon = time.time() - 300.0
        detectors_failing = sorted({f.detector for f, at in self._failure_times if at >= horizon})
        networks = {s.network.name: s.connected for s in self.network_sources}
        intake = self._camera_intake
        since, camera_since = self._step_since, self._camera_since
        step_s = time.monotonic() - since if since is not None else 0.0
        camera_s = time.monotonic() - camera_since if camera_since is not None else 0.0
        wedged = step_s > self.cfg.ingest.wedged_after_s or camera_s > self.cfg.ingest.wedged_after_s
        return {
            "ok": bool(
                connected
                and not wedged
                and store_ok
                and not tasks_failing
                and self.checkpoint_error is None
                and not detectors_failing
                and not fleet_silent
                and all(networks.values())
            ),
            "seconds_since_last_reading": round(quiet_s, 1),
            "wedged": wedged,  # one step has run longer than ingest.wedged_after_s: nothing else is processed
            "step_running_s": round(step_s, 1),
            "camera_stage_running_s": round(camera_s, 1),  # decoding and detecting the frames taken last
            "fleet_silent": fleet_silent,
            "mqtt_connected": connected,
            "lorawan_connected": networks,  # per network server: its broker connected
            "store_ok": store_ok,
            "tasks_failing": tasks_failing,
            "checkpoint_error": self.checkpoint_error,
            "detectors_failing": detectors_failing,
            "store_pending": len(self.dispatcher.unstored) if self.dispatcher is not None else 0,
            "unacknowledged_until_stored": len(self._acks_for_store),
            "readings": self.pipeline.readings,
            "open_incidents": len(self.pipeline.tracker.open),
            # A warning, not a failure: cameras whose frames were refused lately (wrong units or calibration)
            "cameras_refusing_frames": intake.refused.recent(time.time()) if intake is not None else {},
            # A warning too: pulled cameras (cameras.devices[].source) with no frame lately, and why
            "cameras_without_frames": self.camera_sources.without_frames(time.time()) if self.camera_sources else {},
        }

    def _mqtt_report(
        self, loop: asyncio.AbstractEventLoop
    ) -> Callable[[Topic, bytes, float, Callable[[], None]], list[Rejection] | None]:
        """A grid report from MQTT: on paho's thread only queued (``ReportWorker``: its photo may take a second
        to check), then checked on the reports' thread, applied on the loop like the API's, and acknowledged
        to the broker once applied (a report that fails to apply is redelivered at restart)."""
        seen: dict[str, None] = {}  # report ids applied lately: a redelivered report is not a second one
        prefix = self.cfg.mqtt.topic_prefix

        def check(t: Topic, payload: bytes, ack: Callable[[], None]) -> None:
            now = self.clock.now()  # the engine clock, as the API's reports: checked against the data's time
            try:
                spec = mqtt_report(t, payload, self.cfg, now, self._photo_dir, self.report_quota)
            except ReportError as exc:
                self._reject_report(Rejection(exc.reason, str(exc)[:500], t.device), t, payload, prefix)
                ack()
                return
            rid = spec["content_key"]
            if rid in seen:
                ack()
                return
            seen[rid] = None
            if len(seen) > 10_000:
                del seen[next(iter(seen))]
            action = OperatorAction(kind="report", actor=t.device, report=spec)
            done = asyncio.run_coroutine_threadsafe(self.act(action), loop)

            def applied(fut: concurrent.futures.Future[Any]) -> None:
                _log_failure(fut)
                if not fut.cancelled() and fut.exception() is None:
                    ack()
                else:
                    seen.pop(rid, None)  # its redelivery is applied, not skipped

            done.add_done_callback(applied)

        def take(t: Topic, payload: bytes, now: float, ack: Callable[[], None]) -> list[Rejection] | None:
            if not self.report_worker.submit(lambda: check(t, payload, ack)):
                waiting = self.report_worker.max_pending
                return [Rejection("rate_limited", f"{waiting} reports are waiting to be checked; send it again later",
                                  t.device)]  # fmt: skip
            return None

        return take

    def _reject_report(self, rej: Rejection, t: Topic, payload: bytes, prefix: str) -> None:
        intake = self._intake
        if intake is not None:
            intake.reject([rej], f"{prefix}/reports/{t.site}/{t.device}", payload[:65536], time.time())

    def _latest_frame(self, site: str, camera: str) -> tuple[float, bytes, str] | None:
        intake = self._camera_intake
        return intake.latest_image(site, camera) if intake is not None else None

    def _refresh_gauges(self) -> None:
        """Gauges the store holds the truth of, read at each scrape of /metrics."""
        if self.store is not None:
            refresh_store_gauges(self.store)

    async def act(self, action: OperatorAction) -> list[Notification]:
        """Apply an operator action with the dispatcher between batches, at the engine clock's time."""
        if self.dispatcher is None:
            raise RuntimeError("the engine is not running")
        dispatcher = self.dispatcher
        async with self._stepping():
            notes = await asyncio.to_thread(apply_action, dispatcher, action, self.clock.now())
        if self.delivery is not None:
            self.delivery.kick()
        return notes

    async def _tick(self, stop: asyncio.Event, every_s: float = 1.0) -> None:
        """Escalations and reminders fall due on the engine clock even when no data arrives."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            if self.dispatcher is not None:
                dispatcher = self.dispatcher
                async with self._stepping():
                    notes = await asyncio.to_thread(dispatcher.tick, self.clock.now())
                    dispatcher.gauge_open()
                    if self._acks_for_store:
                        self._release_acks([])  # the store is back: what it now holds may be acknowledged
                if notes and self.delivery is not None:
                    self.delivery.kick()
            if time.monotonic() - self._purged >= 3600.0:  # hourly: delivered rows and old history go
                self._purged = time.monotonic()
                st = self.cfg.store
                gone = await asyncio.to_thread(
                    self.store.purge, time.time(), st.outbox_retention_days * 86400, st.history_retention_days * 86400
                )
                if any(gone.values()):
                    logger.info("store retention: deleted %s", gone)
            every = self.cfg.checkpoint_interval_s
            if every > 0 and time.monotonic() - self._checkpointed >= every:
                try:
                    await self.checkpoint()
                except Exception:
                    self._checkpointed = time.monotonic()  # try again at the next interval, timers go on
                    logger.exception("writing the checkpoint to %s failed; retrying in %.0f s",
                                     self.checkpoint_path, every)  # fmt: skip

    async def checkpoint(self) -> None:
        """Copy the detectors' state between batches, then write it while the next batches run."""
        async with self._checkpoint_lock:  # one writer at a time (the periodic one and the one on stop)
            buffers = await asyncio.to_thread(checkpoint_buffers, self.pipeline)  # while batches go on
            async with self._stepping():
                arrays = await asyncio.to_thread(checkpoint_arrays, self.pipeline, buffers)
                acks, self._acks_for_checkpoint = self._acks_for_checkpoint, []
            try:
                # What the store has not taken yet goes to disk first: the checkpoint marks its readings applied,
                # so after a restart they would be dropped as replays, and the incident they made never stored.
                await asyncio.to_thread(self._spill_held)
                await asyncio.to_thread(write_checkpoint, arrays, self.checkpoint_path)
            except Exception as exc:
                self._acks_for_checkpoint[:0] = acks  # not on disk: their messages stay unacknowledged
                self.checkpoint_error = repr(exc)[:500]
                metrics.CHECKPOINT_FAILURES.inc()
                raise
            self.checkpoint_error = None
            self._checkpointed = time.monotonic()
            for ack in acks:  # ack_after: checkpoint: these messages' effects are all on disk now
                ack()

    def _spill_held(self) -> None:
        """The dispatcher's notifications held while the store is out, to ``held_path`` (gone when none)."""
        held = self.dispatcher.held() if self.dispatcher is not None else None
        if held is None:
            self.held_path.unlink(missing_ok=True)
            return
        tmp = self.held_path.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(orjson.dumps(held))
        tmp.replace(self.held_path)
        logger.warning("%d notifications the store has not taken are kept in %s until it does",
                       len(held["notes"]), self.held_path)  # fmt: skip

    def _take_up_held(self) -> None:
        """Write what the previous engine held (``_spill_held``) before taking up the store's incidents."""
        if self.dispatcher is None or not self.held_path.is_file():
            return
        held = orjson.loads(self.held_path.read_bytes())
        if self.dispatcher.take_up_held(held):
            logger.info("wrote %d notifications the previous run held while its store was out", len(held["notes"]))
            self.held_path.unlink(missing_ok=True)
        else:
            logger.error("the store still refuses the %d notifications held in %s; keeping them",
                         len(held["notes"]), self.held_path)  # fmt: skip

    async def run(self, stop: asyncio.Event) -> RunSummary:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        broker: EmbeddedBroker | None = None
        protocol = cfg.mqtt.protocol
        if cfg.mqtt.url == "embedded":
            broker = EmbeddedBroker(cfg.mqtt.embedded_host, cfg.mqtt.embedded_port)
            host, port = cfg.mqtt.embedded_host, await broker.start()
            protocol = "3.1.1"
        else:
            host, port = broker_address(cfg.mqtt.url)
        self.broker_port = port
        await asyncio.to_thread(self.store.migrate)
        self.dispatcher = Dispatcher(cfg, self.pipeline.tracker, self.store)
        self.hub.attach(loop)
        self.dispatcher.on_notes = self.hub.publish
        await asyncio.to_thread(self._take_up_held)
        restored = load_checkpoint(self.pipeline, self.checkpoint_path)
        if restored:
            meta = checkpoint_meta(self.checkpoint_path) or {}
            if meta.get("wall_time") is not None and math.isfinite(self.pipeline.watermark):
                self.clock.resume(self.pipeline.watermark, float(meta["wall_time"]))
            else:
                self.clock.observe(self.pipeline.watermark)
            logger.info("detector state taken up from %s: %s", self.checkpoint_path, ", ".join(restored))
        reopen, wm = cfg.incidents.reopen_within_s, self.pipeline.watermark
        since = wm - reopen if reopen > 0 and math.isfinite(wm) else None  # resolved ones that may re-open
        stored = await asyncio.to_thread(self.store.open_incidents, since)
        if self.pipeline.tracker.restore(stored):
            self.dispatcher.restore(stored)
            logger.info("took up %d open incidents from the store", len(self.pipeline.tracker.open))
        api: ApiServer | None = None
        if cfg.api.enabled:
            auth = TokenAuth(cfg.api.tokens, peer_secret=cfg.api.peer_secret)
            incidents = incidents_router(self.store, self.act, auth, self.clock.now, lambda: list(self.cfg.silences))
            page = operator_router(
                self.store,
                lambda: self.cfg,
                Readings.kept(self.pipeline.devices, self.history),
                self.hub,
                auth,
                self.snapshot_dir,
                self._latest_frame,
            )
            reports = reports_router(
                self.store, self.act, auth, lambda: self.cfg, self.clock.now, self._photo_dir, self.report_quota
            )
            loggers = (datalogger_router(cfg.datalogger, lambda: self._intake),) if cfg.datalogger.groups else ()
            learner = StageLearner(self.cameras) if self.cameras.learning is not None else None
            verdicts = verdicts_router(self.store, lambda: learner, auth, self.clock.now)
            app = create_app(self.health, self.reload, (incidents, reports, page, verdicts, *loggers), auth,
                             cfg.api.metrics_public, self._refresh_gauges, cfg.api.max_body_bytes)  # fmt: skip
            mount_static(app)
            api = ApiServer(app, cfg.api.host, cfg.api.port, cfg.api.max_connections)
            await api.start()
            self.api_url = api.url
        prefix = cfg.mqtt.topic_prefix
        status_topic = engine_status_topic(prefix)

        def batch_full() -> None:  # called on paho's thread
            loop.call_soon_threadsafe(self._full.set)

        intake = self._intake = Intake(cfg, self.pipeline.devices, on_full=batch_full, reports=self._mqtt_report(loop))
        if self.cameras:
            intake.cameras = self._camera_intake = CameraIntake(cfg, intake.reject)
        manual_ack = cfg.mqtt.ack_after != "receipt" and protocol == "5"

        def handle_acking(
            topic: str, payload: bytes, props: dict[str, str], ack: Callable[[], None], redelivered: bool
        ) -> None:
            intake.handle(topic, payload, props, ack=ack, redelivered=redelivered)

        client = MqttClient(
            cfg.mqtt,
            on_message=None if manual_ack else intake.handle,
            on_message_ack=handle_acking if manual_ack else None,
            receive_maximum=cfg.mqtt.receive_maximum if manual_ack else 0,
            subscriptions=subscriptions(prefix),
            protocol=protocol,
            will=(status_topic, b"offline"),
        )
        self.client = client
        intake.publish = client.publish

        def publish(topic: str, payload: bytes, retain: bool = False) -> Any:
            return client.publish(topic, payload, retain=retain)

        sinks = build_sinks(cfg, publish, self._log_path, self._extra_sinks, store=self.store)
        policies = {
            s.name or s.type: RetryPolicy(s.backoff_s, s.backoff_max_s, s.max_attempts)
            for s in cfg.sinks
            if isinstance(s, WebhookSinkConfig | AppriseSinkConfig)
        }
        self.dispatcher.sinks = [s.name for s in sinks.sinks]
        self.delivery = OutboxDelivery(self.store, sinks.sinks, policies)
        delivery_stop = asyncio.Event()
        delivery = self.delivery
        background = [
            self.supervisor.start("delivery", lambda: delivery.run(delivery_stop), delivery_stop),
            self.supervisor.start("timers", lambda: self._tick(delivery_stop), delivery_stop),
        ]
        cams = intake.cameras
        if cams is not None:
            background.append(self.supervisor.start("cameras", lambda: self._camera_loop(cams, delivery_stop),
                                                    delivery_stop))  # fmt: skip
        self._deadletter = intake.publish_deadletter
        if cams is not None:
            self.camera_sources = self._pull_cameras(cams, intake)
        elif any(c.source for c in cfg.cameras.devices):
            logger.warning("cameras with a source are not pulled: the config has no camera detectors")
        await asyncio.to_thread(client.start, host, port)
        for net in cfg.lorawan.networks:
            source = NetworkServerSource(cfg, net, intake)
            self.network_sources.append(source)
            await asyncio.to_thread(source.start, (host, port), protocol)
        client.publish(status_topic, b"online", qos=1, retain=True)
        logger.info("engine running: broker %s:%s, %d detectors", host, port, len(self.pipeline.detectors))
        if self.camera_sources:
            self.camera_sources.start()
        self.ready.set()
        batch_s = cfg.ingest.batch_ms / 1000.0
        try:
            while not stop.is_set():
                first = intake.first_at
                wait = batch_s if first is None else max(0.0, first + batch_s - time.monotonic())
                if wait > 0 and not self._full.is_set():
                    stopper = asyncio.ensure_future(stop.wait())
                    filler = asyncio.ensure_future(self._full.wait())
                    await asyncio.wait({stopper, filler}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    stopper.cancel()
                    filler.cancel()
                self._full.clear()
                if intake.first_at is not None or intake.pending():
                    await self._process(intake, sinks)
            await asyncio.sleep(batch_s)  # messages already in paho's buffers get decoded into the last batch
            await self._process(intake, sinks)
            try:
                await self.checkpoint()
            except Exception:  # the messages it would acknowledge stay with the broker, redelivered at restart
                logger.exception("the last checkpoint could not be written to %s", self.checkpoint_path)
        finally:
            if self.camera_sources:
                await asyncio.to_thread(self.camera_sources.stop)
            delivery_stop.set()  # the last events go out (the MQTT sink still has its client) before we leave
            await asyncio.gather(*background, return_exceptions=True)
            for source in self.network_sources:
                await asyncio.to_thread(source.stop)
            client.publish(status_topic, b"offline", qos=1, retain=True)
            await asyncio.to_thread(client.stop)
            await asyncio.to_thread(self.report_worker.close)  # reports already taken are applied, then stored
            sinks.close()
            self.store.close()
            self.hub.close()
            if api is not None:
                await api.stop()
            if broker is not None:
                await broker.stop()
        self.summary.rejected = intake.rejected
        self.summary.open_incidents = len(self.pipeline.tracker.open)
        return self.summary

    async def reload(self) -> ReloadResult:
        """Re-read the config file and apply it between batches (SIGHUP, ``POST /-/reload``)."""
        if self.config_path is None:
            return ReloadResult(ok=False, error="this engine was not started from a config file")
        async with self._stepping():
            self.cfg, result = reload_from(self.pipeline, self.cfg, self.config_path)
            if result.ok and self.dispatcher is not None:
                self.dispatcher.set_config(self.cfg)
                self.dispatcher.sinks = [s.name for s in self.delivery.sinks] if self.delivery else []
        metrics.CONFIG_RELOADS.labels("ok" if result.ok else "refused").inc()
        return result

    def _pull_cameras(self, cams: CameraIntake, intake: Intake) -> CameraSources:
        """The cameras the engine pulls itself: their frames enter the camera intake as an MQTT frame would."""
        prefix = self.cfg.mqtt.topic_prefix

        def address(cam: CameraConfig) -> tuple[Topic, str]:
            kind = "thermal" if cam.kind == "thermal" else "cameras"
            return Topic(kind, cam.site, cam.id), f"{prefix}/{kind}/{cam.site}/{cam.id}"

        def pulled(cam: CameraConfig, payload: bytes, ts: float) -> None:
            t, topic = address(cam)
            cams.handle(t, topic, payload, {"ts": repr(ts)}, time.time())

        def refused(cam: CameraConfig, reason: str, detail: str) -> None:
            intake.reject([Rejection(reason, detail, cam.id)], address(cam)[1], b"", time.time())

        return CameraSources(self.cfg, pulled, refused)

    async def _camera_loop(self, cams: CameraIntake, stop: asyncio.Event) -> None:
        """Frames through the camera detectors outside the step lock; their findings join the incidents."""
        while not stop.is_set():
            if not await asyncio.to_thread(cams.arrived.wait, 0.25):
                continue
            self._camera_since = time.monotonic()  # the watchdog's clock: decoding and detecting a take
            try:
                frames = await asyncio.to_thread(cams.take)  # decoding happens here, off the network thread
                if frames:
                    self._last_reading_at = time.time()  # a camera-only site is not a silent fleet
                findings = await asyncio.to_thread(self.cameras.step, frames, set(cams.thermal))
            finally:
                self._camera_since = None
            if not findings and not frames:
                continue
            latest = max(f.ts for f in frames) if frames else None
            async with self._stepping():
                events = await asyncio.to_thread(self._observe, findings, latest)
                held = held_snapshots(self.pipeline.tracker.open.values())
            self._after(events)
            if latest is not None and self.cameras.retention is not None:
                await asyncio.to_thread(self.cameras.prune, latest, held)

    def _observe(self, findings: list[Any], latest: float | None = None) -> list[dict[str, Any]]:
        """Camera findings into the incidents; frames that showed nothing still move data time to ``latest``,
        so a camera-only site's static-scene alarm resolves once its findings stop (as a replay does)."""
        events = self.pipeline.observe(findings)
        if latest is not None:
            events.extend(self.pipeline.advance_to(latest))
        self.clock.observe(self.pipeline.watermark)
        if self.dispatcher is not None:
            now = self.clock.now()
            self.dispatcher.handle(events, now)
            self.dispatcher.tick(now)
        return events

    def _step(self, batch: Any) -> list[dict[str, Any]]:
        """One batch through the core, then dispatch of the events it caused (one thread, under the lock)."""
        # Readings of redelivered messages that the restored state already holds (killed between a
        # checkpoint and the broker getting its acks): dropped, not taken for a device's out-of-order data.
        batch, replayed = self.pipeline.applied.fresh(batch, redelivered_only=True)
        if replayed:
            metrics.REPLAYED.labels("readings").inc(replayed)
            logger.info("dropped %d redelivered readings that the restored state already holds", replayed)
        self.history.add(batch, time.time())
        events = self.pipeline.step(batch)
        self.clock.observe(self.pipeline.watermark)
        if self.dispatcher is not None:
            now = self.clock.now()
            self.dispatcher.handle(events, now)
            self.dispatcher.tick(now)  # deadlines that the data's time has passed
        return events

    async def _process(self, intake: Intake, sinks: Any) -> None:
        batch = intake.take()
        if not len(batch):
            intake.ack_taken()
            return
        self._last_reading_at = time.time()
        async with self._stepping():
            events = await asyncio.to_thread(self._step, batch)
        self._report_detector_failures()
        self._release_acks(intake.take_acks())
        self.summary.readings += len(batch)
        self._after(events)

    def _release_acks(self, acks: list[Callable[[], None]]) -> None:
        """Acknowledge messages whose effects are safe: their incidents stored (held while the store is out,
        so that the broker keeps them), and, with ``ack_after: checkpoint``, in a checkpoint too."""
        self._acks_for_store.extend(acks)
        if self.dispatcher is not None and self.dispatcher.unstored:
            return
        ready, self._acks_for_store = self._acks_for_store, []
        if self.cfg.mqtt.ack_after == "checkpoint" and self.cfg.checkpoint_interval_s > 0:
            self._acks_for_checkpoint.extend(ready)
        else:
            for ack in ready:  # processed, incidents stored: the broker may forget these messages
                ack()

    def _report_detector_failures(self) -> None:
        """Dead-letter the detector failures of the last step (``detector_error``) and keep them for health."""
        fresh = self.pipeline.failures_since(self._failures_reported)
        self._failures_reported = self.pipeline.failures_total
        now = time.time()
        for f in fresh:
            self._failure_times.append((f, now))
            if self._deadletter is not None:
                detail = f"detector {f.detector} raised on a batch of {f.readings} readings: {f.error}"
                doc = {"reason": "detector_error", "detail": detail, "detector": f.detector,
                       "readings": f.readings, "data_ts": f.ts, "received_at": now}  # fmt: skip
                self._deadletter("detector_error", orjson.dumps(doc))
        del self._failure_times[:-100]

    def _after(self, events: list[dict[str, Any]]) -> None:
        """Summary, latency, delivery and the demo board for the events a step or the camera stage caused."""
        if not events:
            return
        now = time.time()
        for e in events:
            key = (e["hazard"], e["level"])
            self.summary.by_hazard_level[key] = self.summary.by_hazard_level.get(key, 0) + 1
            if self._measure_latency and e["state"] != "resolved":
                metrics.E2E_LATENCY.observe(max(0.0, now - e["updated_at"]))
        self.summary.events += len(events)
        if self.delivery is not None:
            self.delivery.kick()
        if self._on_events is not None:
            self._on_events(events)


def _log_failure(done: concurrent.futures.Future[Any]) -> None:
    exc = done.exception()
    if exc is not None:
        logger.error("a grid report from MQTT could not be applied: %r", exc)
