"""Every Prometheus metric of the engine, in one place (prometheus_client naming; no device ids as labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

READINGS = Counter("gridwatch_readings", "Sensor readings accepted into batches.", registry=REGISTRY)
MESSAGES = Counter("gridwatch_messages", "MQTT messages received, by kind.", ["kind"], registry=REGISTRY)
DEADLETTERS = Counter(
    "gridwatch_deadletter_messages",
    "Rejected input sent to the dead-letter topic, by reason.",
    ["reason"],
    registry=REGISTRY,
)
LORAWAN_UPLINKS = Counter(
    "gridwatch_lorawan_uplinks",
    "LoRaWAN uplinks and status events from network servers, by network and result: taken (their reading went "
    "into a batch, or they had none to give) or refused (dead-lettered with the reason).",
    ["network", "result"],
    registry=REGISTRY,
)
DATALOGGER_READINGS = Counter(
    "gridwatch_datalogger_readings",
    "Readings dataloggers posted over HTTP, by group and result: taken or refused (dead-lettered).",
    ["group", "result"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "gridwatch_batch_readings",
    "Readings per processed batch.",
    buckets=(1, 10, 100, 500, 1000, 5000, 10000, 50000),
    registry=REGISTRY,
)
OUTBOX_DEAD = Counter(
    "gridwatch_outbox_dead_letters",
    "Events set aside by a sink because they can never be delivered (refused by the receiver, or unformattable); "
    "kept in the store's outbox with their error.",
    ["sink"],
    registry=REGISTRY,
)
TASK_FAILURES = Counter(
    "gridwatch_task_failures",
    "Background tasks (delivery, timers, camera loop) that raised and were restarted, by task.",
    ["task"],
    registry=REGISTRY,
)
CHECKPOINT_FAILURES = Counter(
    "gridwatch_checkpoint_failures",
    "Checkpoint writes that failed (disk full, permissions); the messages they would have acknowledged wait.",
    registry=REGISTRY,
)
DETECTOR_ERRORS = Counter(
    "gridwatch_detector_errors",
    "Batches on which a detector raised: the batch went on through the other detectors, the devices it "
    "held were reset in that detector's state, and the failure went to the dead-letter topic.",
    ["detector"],
    registry=REGISTRY,
)
DETECT_SECONDS = Histogram(
    "gridwatch_detect_seconds",
    "Time one detector spent on one batch.",
    ["detector"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
FINDINGS = Counter("gridwatch_findings", "Findings reported by detectors.", ["hazard", "level"], registry=REGISTRY)
INCIDENT_EVENTS = Counter(
    "gridwatch_incident_events",
    "Incident events handed to the sinks (their outbox rows), by hazard, level and state.",
    ["hazard", "level", "state"],
    registry=REGISTRY,
)
OPEN_INCIDENTS = Gauge(
    "gridwatch_open_incidents", "Incidents open now, by hazard and level.", ["hazard", "level"], registry=REGISTRY
)
E2E_LATENCY = Histogram(
    "gridwatch_end_to_end_latency_seconds",
    "From a reading's timestamp to the incident event it caused (live runs).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
SINK_ERRORS = Counter(
    "gridwatch_sink_delivery_failures", "Failed attempts to deliver an event to a sink.", ["sink"], registry=REGISTRY
)
SINK_DELIVERED = Counter(
    "gridwatch_sink_deliveries", "Events delivered to a sink from the outbox.", ["sink"], registry=REGISTRY
)
NOTIFY_MESSAGES = Counter(
    "gridwatch_notify_messages",
    "Messages to people by a people-facing sink (Apprise), by outcome: sent, held (a receiver's rate limit), "
    "summary (held events sent as one message), failed (an attempt; retried).",
    ["sink", "outcome"],
    registry=REGISTRY,
)
OUTBOX_BACKLOG = Gauge(
    "gridwatch_outbox_backlog", "Events in the outbox not yet delivered, by sink.", ["sink"], registry=REGISTRY
)
TIME_TO_ACK = Histogram(
    "gridwatch_time_to_acknowledge_seconds",
    "From an incident firing to its acknowledgement (engine clock), by hazard.",
    ["hazard"],
    buckets=(60, 300, 600, 1800, 3600, 7200, 21600, 86400),
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "gridwatch_escalations",
    "Incidents escalated one tier up for want of acknowledgement.",
    ["hazard"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "gridwatch_notifications",
    "Incident notifications by action (fired, raised, escalated, reminder, …) and whether they were sent or muted.",
    ["action", "outcome"],
    registry=REGISTRY,
)
REPORTS = Counter(
    "gridwatch_grid_reports",
    "Grid reports (a grid worker's or a resident's) taken into the incidents, by hazard and channel.",
    ["hazard", "channel"],
    registry=REGISTRY,
)
REPORT_COMPLETION = Gauge(
    "gridwatch_report_completion_ratio",
    "Of the reported cases held by a tier (the tier an incident that a person reported is at, or was at when "
    "it was resolved), the share resolved.",
    ["tier"],
    registry=REGISTRY,
)
DEADLINES = Counter(
    "gridwatch_deadlines",
    "Incidents acknowledged (stage=ack) or resolved (stage=resolve) within their level's deadline (met) or not.",
    ["stage", "outcome"],
    registry=REGISTRY,
)
DEADLINE_COMPLETION = Gauge(
    "gridwatch_deadline_completion_ratio",
    "Share of incidents acknowledged (stage=ack) or resolved (stage=resolve) within their level's deadline.",
    ["stage"],
    registry=REGISTRY,
)
MQTT_CONNECTED = Gauge("gridwatch_mqtt_connected", "1 while the engine's MQTT client is connected.", registry=REGISTRY)

CONFIG_RELOADS = Counter(
    "gridwatch_config_reloads_total",
    "Config reloads (SIGHUP or POST /-/reload), by outcome: ok or refused (the running config stayed).",
    ["outcome"],
    registry=REGISTRY,
)

FRAMES = Counter(
    "gridwatch_frames",
    "Camera frames by outcome: analysed, skipped_interval (closer than the camera's min_interval_s), dropped "
    "(the camera's queue was full: the oldest frame goes).",
    ["outcome"],
    registry=REGISTRY,
)
FRAME_AGE = Histogram(
    "gridwatch_frame_age_seconds",
    "How old camera frames are (wall time minus their capture time) when the camera stage takes them to score.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
CAMERA_SOURCE_FRAMES = Counter(
    "gridwatch_camera_source_frames",
    "Frames the engine pulled from cameras' streams, snapshot URLs and video devices (cameras.devices[].source), "
    "by outcome: taken (handed on), refused (no camera's frame: too large, too many pixels, wrong aspect).",
    ["outcome"],
    registry=REGISTRY,
)
CAMERA_SOURCE_RECONNECTS = Counter(
    "gridwatch_camera_source_reconnects",
    "Times a pulled camera could not be reached or its stream ended, and it was tried again after a backoff, "
    "by kind of source (rtsp, http, onvif, device).",
    ["scheme"],
    registry=REGISTRY,
)
CAMERA_SOURCES_WITHOUT_FRAMES = Gauge(
    "gridwatch_camera_sources_without_frames",
    "Pulled cameras that gave no frame for longer than their no_frames_after_s (/readyz names them).",
    registry=REGISTRY,
)
FRAME_SECONDS = Histogram(
    "gridwatch_frame_detect_seconds",
    "Time one camera detector spent on one batch of frames.",
    ["detector"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
CAMERA_VERDICTS = Counter(
    "gridwatch_camera_verdicts",
    "Operators' verdicts on camera alarms, by verdict (false_alarm, fire, smoke) and outcome (learned: the camera's "
    "new head or hot-spot memory is in use; kept: no head passed, the camera keeps its own; refused: a region over "
    "the bound, no frame, learning off).",
    ["verdict", "outcome"],
    registry=REGISTRY,
)
CAMERA_SNAPSHOT_BYTES = Gauge(
    "gridwatch_camera_snapshot_bytes",
    "Bytes of camera snapshots and frames kept for verdicts on disk (data_dir/snapshots), within "
    "cameras.snapshot_quota_mb.",
    registry=REGISTRY,
)
CAMERA_SNAPSHOTS_PRUNED = Counter(
    "gridwatch_camera_snapshots_pruned",
    "Camera snapshots and kept frames deleted, oldest first, by reason: quota (over cameras.snapshot_quota_mb) or "
    "age (older than cameras.snapshot_retention_days); never one an open incident still shows.",
    ["reason"],
    registry=REGISTRY,
)
CAMERA_REFIT_SECONDS = Histogram(
    "gridwatch_camera_refit_seconds",
    "Time one refit of a camera's learned head took (the examples' features extracted, the head fitted).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
AUTH_FAILURES = Counter(
    "gridwatch_api_auth_failures", "API requests with a wrong token (guessing is slowed down).", registry=REGISTRY
)
STORE_ERRORS = Counter(
    "gridwatch_store_errors", "Failed writes to the incident store (the engine keeps detecting).", registry=REGISTRY
)
STORE_PENDING = Gauge(
    "gridwatch_store_pending_notifications", "Notifications kept in memory while the store is out.", registry=REGISTRY
)
STORE_POISON = Counter(
    "gridwatch_store_refused_notifications",
    "Notifications the store refused as data (a value it cannot hold, not an outage): logged and dropped so that "
    "the ones after them are written.",
    registry=REGISTRY,
)
STORE_DROPPED = Counter(
    "gridwatch_store_dropped_notifications",
    "Notifications dropped from memory because the store stayed out too long (oldest first).",
    registry=REGISTRY,
)

# The scale-out runner: `gridwatch bridge` and `gridwatch worker`
BRIDGE_FORWARDED = Counter(
    "gridwatch_bridge_forwarded", "MQTT messages a bridge produced to Kafka, by kind.", ["kind"], registry=REGISTRY
)
BRIDGE_IN_FLIGHT = Gauge(
    "gridwatch_bridge_in_flight",
    "MQTT messages a bridge holds unacknowledged, waiting for Kafka to acknowledge them.",
    registry=REGISTRY,
)
BRIDGE_SEND_ERRORS = Counter("gridwatch_bridge_send_errors", "Kafka sends a bridge had to retry.", registry=REGISTRY)
REPLAYED = Counter(
    "gridwatch_replayed_records",
    "Stream records a worker skipped as already applied (replays after a crash or rebalance), by stage.",
    ["stage"],
    registry=REGISTRY,
)
SITE_STATE_BYTES = Histogram(
    "gridwatch_site_state_bytes",
    "Size of one site's packed detector state written to the worker's table.",
    buckets=(1e3, 1e4, 3e4, 1e5, 3e5, 1e6),
    registry=REGISTRY,
)
