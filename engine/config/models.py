"""The engine's configuration as pydantic models: ``extra="forbid"``, every field described."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from detectors.base import DetectorConfig, registry
from detectors.fusion import FusionRule
from detectors.vision.base import CameraDetectorConfig, frame_registry
from engine.config.notify import AppriseSinkConfig
from engine.core.levels import Level, LevelName
from engine.core.quantities import METRIC_NAMES
from engine.incidents.inhibition import InhibitRule
from engine.incidents.silences import Silence
from engine.incidents.tracker import IncidentPolicy

Tier = Literal["grid", "town", "district", "city"]
TIERS: tuple[Tier, ...] = ("grid", "town", "district", "city")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # a NaN threshold never compares true


class MqttConfig(Strict):
    """Where the engine's MQTT client connects, and how."""

    url: str = Field(
        "embedded",
        description="`embedded` (an in-process amqtt broker, MQTT 3.1.1) or `mqtt://host:port` of Mosquitto/EMQX.",
    )
    embedded_host: str = Field("127.0.0.1", description="Address the embedded broker listens on.")
    embedded_port: int = Field(1883, ge=0, le=65535, description="Port of the embedded broker; 0 takes a free one.")
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT protocol version; the embedded broker only speaks 3.1.1 and forces it."
    )
    topic_prefix: str = Field("gw", description="Prefix of every gridwatch topic (docs/contracts.md: MQTT topics).")
    client_id: str = Field("gridwatch-engine", description="Client id; keep it stable for the persistent session.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of the engine's subscriptions and publications.")
    session_expiry_s: int = Field(
        86400,
        ge=0,
        description="How long the broker keeps the engine's session (and queued QoS 1 messages) while it is away.",
    )
    keepalive_s: int = Field(30, ge=5, description="MQTT keep-alive interval.")
    ack_after: Literal["receipt", "processed", "checkpoint"] = Field(
        "processed",
        description="MQTT v5, when a sensor message is acknowledged to the broker: on `receipt` (paho's "
        "default); once its batch is `processed` and its incidents stored (an engine killed mid-stream gets "
        "the messages it held again); or once the detector state holding it is in a `checkpoint` (nothing "
        "is lost even from detector state, but up to `checkpoint_interval_s` of messages are held).",
    )
    receive_maximum: int = Field(
        65535,
        ge=1,
        le=65535,
        description="MQTT v5: the most unacknowledged QoS 1 messages the broker may send the engine at once.",
    )
    username: str | None = Field(None, description="Broker user name; use ${ENV_VAR} rather than a literal secret.")
    password: str | None = Field(None, description="Broker password; use ${ENV_VAR}, never a literal.", repr=False)
    password_file: str | None = Field(
        None, description="Read the broker password from this file (a Docker or systemd secret) instead."
    )
    tls_ca_file: str | None = Field(
        None, description="CA certificate(s) to verify the broker with (mqtts://); unset: the system's CAs."
    )
    tls_cert_file: str | None = Field(None, description="Client certificate, when the broker asks for one.")
    tls_key_file: str | None = Field(None, description="The client certificate's key.", repr=False)
    tls_insecure: bool = Field(
        False, description="Skip the check that the broker's certificate names its host (never in production)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v != "embedded" and not v.startswith(("mqtt://", "tcp://", "mqtts://")):
            raise ValueError("use `embedded`, mqtt://host:port, or mqtts://host:port for TLS")
        return v

    @model_validator(mode="after")
    def _secrets(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give `password` or `password_file`, not both")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("a client certificate needs both `tls_cert_file` and `tls_key_file`")
        for name in ("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no file {path}")
        return self

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    def secret(self) -> str | None:
        """The broker password, from the config (its environment) or from ``password_file``."""
        if self.password_file is not None:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return self.password


class IngestConfig(Strict):
    """Decoding, validation and batching of sensor messages."""

    batch_max: int = Field(10000, ge=1, description="A batch closes when it holds this many readings.")
    batch_ms: float = Field(50.0, gt=0, description="…or when its first reading has waited this long (ms).")
    max_payload_bytes: int = Field(262144, ge=64, description="Larger payloads are dead-lettered as `too_large`.")
    max_future_s: float = Field(
        300.0, ge=0, description="Readings stamped further ahead of the engine clock are rejected."
    )
    max_past_s: float = Field(
        604800.0,
        ge=0,
        description="Readings, frames and reports stamped further behind the newest data time seen are rejected "
        "(`stale_ts`): a device's store-and-forward backlog of up to this long is taken, a time from another era "
        "is not. 0: no limit.",
    )
    seq_window: int = Field(64, ge=1, le=4096, description="How many recent `seq` numbers per device are remembered.")
    metric_aliases: dict[str, str] = Field(
        default_factory=dict, description="Map device-specific value names onto contract metrics, e.g. {rain: rain_mm}."
    )
    reject_unknown_sites: bool = Field(
        False, description="Dead-letter readings of sites not in the config (`unknown_site`) instead of accepting them."
    )
    fleet_silent_s: float = Field(
        900.0,
        ge=0,
        description="/readyz fails when no sensor reading and no camera frame at all has arrived for this long (a "
        "broker, bridge or network fault that silences the whole fleet); 0: off.",
    )
    wedged_after_s: float = Field(
        60.0,
        gt=0,
        description="/readyz fails when one processing step (a batch through the detectors, incidents and store, an "
        "operator action, the escalation clock's tick) has run this long: the engine is wedged, nothing else moves.",
    )
    max_devices: int = Field(
        200_000,
        ge=1,
        description="At most this many devices are tracked; readings of further new devices are dead-lettered "
        "(`device_limit`) so that a stream of invented ids cannot exhaust memory (each device costs ~12 KB).",
    )
    max_deadletters_per_message: int = Field(
        10,
        ge=1,
        description="Dead letters sent for one message; a gateway batch with more bad readings sends these and "
        "one summary (`…_more`) with the count per reason. Every rejection is still counted in the metrics.",
    )
    device_max_msgs_per_s: float = Field(
        0.0,
        ge=0,
        description="Refuse a device's messages beyond this rate (wall clock) before decoding them, as "
        "`rate_limited` (counted; one dead letter a minute per device). 0: no limit (replays of recorded "
        "feeds publish far faster than real time). Devices report every 1-10 min; a few per second is ample.",
    )
    device_burst: int = Field(20, ge=1, description="Messages a device may send at once above its rate limit.")

    @field_validator("metric_aliases")
    @classmethod
    def _aliases(cls, v: dict[str, str]) -> dict[str, str]:
        bad = {k: m for k, m in v.items() if m not in METRIC_NAMES}
        if bad:
            raise ValueError(f"aliases must map to contract metrics ({', '.join(METRIC_NAMES)}); bad: {bad}")
        return v


class DeviceConfig(Strict):
    """One monitoring device at a site."""

    id: str = Field(description="Device id as it appears in the MQTT topic.")
    kind: str = Field("sensor", description="Instrument kind, e.g. rain_gauge, gnss, crack_meter, camera.")
    metrics: list[str] = Field(default_factory=list, description="Contract metrics it reports.")
    expected_interval_s: float | None = Field(None, gt=0, description="How often it should report.")


class SiteConfig(Strict):
    """A hazard site and its place in the administrative hierarchy (grid → town → district → city)."""

    id: str = Field(description="Site id as it appears in MQTT topics.")
    name: str = Field("", description="Human name of the site.")
    lat: float = Field(ge=-90, le=90, description="Latitude, WGS84 degrees.")
    lon: float = Field(ge=-180, le=180, description="Longitude, WGS84 degrees.")
    grid: str = Field(description="The grid cell whose worker answers first.")
    town: str = Field(description="Town (township/street office) the grid belongs to.")
    district: str = Field(description="District the town belongs to.")
    devices: list[DeviceConfig] = Field(default_factory=list, description="Devices installed at the site.")


class PlanConfig(Strict):
    """A response plan: what to do for one hazard from one level up."""

    hazard: str = Field(description="Hazard this plan answers.")
    level: LevelName = Field(description="Lowest level this plan applies to; the highest matching plan wins.")
    title: str = Field(description="Short name of the plan.")
    role: str = Field(description="Who is responsible (e.g. grid worker, town duty officer).")
    steps: list[str] = Field(default_factory=list, description="What to do, in order.")
    contacts: list[str] = Field(default_factory=list, description="Whom to call.")
    checklist: list[str] = Field(default_factory=list, description="What the responder confirms when done.")
    receivers: list[Tier] = Field(
        default_factory=lambda: list(TIERS),
        description="Tiers of the site's hierarchy that one-key dispatch sends the incident and plan to.",
    )


class RouteRule(Strict):
    """Who hears of an incident first, how long they have to acknowledge, and how often they are reminded.

    The rule for an incident is the one with its hazard (else `*`) and the highest `min_level` not above
    the incident's level.
    """

    hazard: str = Field("*", description="Hazard this rule routes; `*` for any.")
    min_level: LevelName = Field("blue", description="Applies from this level up (the highest matching wins).")
    first: Tier = Field("grid", description="The tier of the site's hierarchy notified first.")
    ack_within_s: float = Field(
        1800.0, gt=0, description="Not acknowledged within this long (engine clock): escalate one tier up."
    )
    repeat_s: float = Field(3600.0, gt=0, description="Remind the current receiver this often until acknowledged.")
    resolve_within_s: float = Field(
        86400.0, gt=0, description="Deadline to resolve, for the completion-rate metric a centre reports upward."
    )


class LogSinkConfig(Strict):
    """Incident events appended to a JSON Lines file."""

    type: Literal["log"] = Field("log", description="Sink kind.")
    name: str | None = Field(None, description="Name in the outbox and metrics; defaults to the type.")
    path: str = Field("var/gridwatch/incidents.jsonl", description="File the events are appended to.")


class MqttSinkConfig(Strict):
    """Incident events published to `<prefix>/alerts/<site>/<hazard>`."""

    type: Literal["mqtt"] = Field("mqtt", description="Sink kind.")
    name: str | None = Field(None, description="Name in the outbox and metrics; defaults to the type.")
    retain: bool = Field(False, description="Publish with the retain flag (the latest event per site and hazard).")


class ConsoleSinkConfig(Strict):
    """Incident events printed as one line each."""

    type: Literal["console"] = Field("console", description="Sink kind.")
    name: str | None = Field(None, description="Name in the outbox and metrics; defaults to the type.")


class WebhookSinkConfig(Strict):
    """Incident events POSTed as JSON, signed with HMAC-SHA256 (header `X-Gridwatch-Signature-256`)."""

    type: Literal["webhook"] = Field("webhook", description="Sink kind.")
    name: str | None = Field(None, description="Name in the outbox and metrics; defaults to the type.")
    url: str = Field(description="Receiver URL, http:// or https://.")
    secret: str | None = Field(None, description="HMAC key; use ${ENV_VAR}. Unset: no signature.", repr=False)
    timeout_s: float = Field(5.0, gt=0, description="Give up on one attempt after this long.")
    backoff_s: float = Field(1.0, gt=0, description="First retry delay; it doubles on each failure.")
    backoff_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    max_attempts: int = Field(
        0, ge=0, description="Give up on an event after this many attempts (0: never; the backlog waits)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("use an http:// or https:// URL")
        return v


SinkConfig = Annotated[
    Union[LogSinkConfig, MqttSinkConfig, ConsoleSinkConfig, WebhookSinkConfig, AppriseSinkConfig],  # noqa: UP007
    Field(discriminator="type"),
]


def sink_name(s: SinkConfig) -> str:
    """The outbox name of a sink: its `name`, else its type."""
    return s.name or s.type


class StoreConfig(Strict):
    """Where incidents, the audit trail, silences and the outbox are kept."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; unset: SQLite `gridwatch.db` "
        "in the data dir.",
    )
    outbox_retention_days: float = Field(
        7.0, gt=0, description="Delivered (or set aside) outbox rows are deleted this long after their creation."
    )
    history_retention_days: float = Field(
        365.0,
        gt=0,
        description="Incidents resolved longer ago than this are deleted with their findings and audit trail.",
    )


class KafkaConfig(Strict):
    """The scale-out runner: `gridwatch bridge` (MQTT → Kafka) and `gridwatch worker` (Faust on Kafka)."""

    url: str = Field(
        "kafka://127.0.0.1:9092",
        description="Kafka bootstrap servers, `kafka://host:port` (several: `kafka://h1:9092;h2:9092`).",
    )
    app_id: str = Field("gridwatch", description="Faust application id: the consumer group and the tables' prefix.")
    partitions: int = Field(
        8, ge=1, description="Partitions of every gridwatch topic; the most workers that can share the load."
    )
    replication: int = Field(1, ge=1, description="Replication factor of the topics gridwatch creates.")
    topic_readings: str = Field("gridwatch.readings", description="Sensor messages, keyed by site.")
    topic_frames: str = Field("gridwatch.frames", description="Visible camera frames, keyed by site.")
    topic_thermal: str = Field("gridwatch.thermal", description="Thermal camera frames, keyed by site.")
    topic_findings: str = Field("gridwatch.findings", description="Findings and watermarks, keyed by site.")
    topic_deadletter: str = Field("gridwatch.deadletter", description="Records a worker could not decode.")
    table_store: str = Field(
        "memory://",
        description="Where Faust keeps table state: `memory://` (tests) or `rocksdb://` (production, "
        "needs the `rocksdict` package; restarts recover from local files instead of the whole changelog).",
    )
    take_max: int = Field(10000, ge=1, description="A worker's batch: at most this many messages ...")
    take_within_s: float = Field(0.2, gt=0, description="... or what arrived within this many seconds.")
    session_timeout_s: float = Field(
        10.0,
        ge=1,
        description="A worker that misses heartbeats this long is taken for dead and its partitions move on "
        "(also the rebalance timeout): the time to recover a killed worker.",
    )
    bridge_group: str = Field(
        "gridwatch-bridge",
        description="MQTT shared-subscription group (`$share/<group>/...`): bridges in one group split the load.",
    )
    bridge_client_id: str = Field(
        "gridwatch-bridge", description="MQTT client id of a bridge; give each bridge of a group its own."
    )
    bridge_max_in_flight: int = Field(
        1000, ge=1, description="Messages a bridge holds unacknowledged (sent to Kafka, not yet acknowledged)."
    )
    bridge_http_port: int | None = Field(
        9108,
        ge=0,
        le=65535,
        description="A bridge serves /metrics, /livez and /readyz here (on `api.host`; 0: a free port, null: "
        "none). Workers serve the whole HTTP API on `api.port`.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith("kafka://"):
            raise ValueError("use kafka://host:port (several brokers: kafka://h1:9092;h2:9092)")
        return v

    @field_validator("table_store")
    @classmethod
    def _table_store(cls, v: str) -> str:
        if not v.startswith(("memory://", "rocksdb://")):
            raise ValueError("use memory:// (tests) or rocksdb:// (production)")
        return v

    def bootstrap_servers(self) -> list[str]:
        """``host:port`` of each broker in ``url``.

        >>> KafkaConfig(url="kafka://k1:9092;k2:9093").bootstrap_servers()
        ['k1:9092', 'k2:9093']
        """
        return [h for h in self.url.removeprefix("kafka://").split(";") if h]


class ApiToken(Strict):
    """A bearer token for the HTTP API and the role it grants."""

    name: str = Field(description="Who holds it; recorded as the actor of what they do.")
    token: str = Field(min_length=16, description="The secret; use ${ENV_VAR}.", repr=False)
    role: Literal["reporter", "viewer", "operator"] = Field(
        "viewer",
        description="`reporter` files grid reports only; `viewer` also reads; `operator` also acknowledges, "
        "assigns, resolves, dispatches, silences.",
    )


class ApiConfig(Strict):
    """The HTTP server: /metrics, /healthz, the incidents API."""

    enabled: bool = Field(True, description="Serve HTTP at all.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port; 0 takes a free one.")
    tokens: list[ApiToken] = Field(
        default_factory=list, description="Bearer tokens; without any, the incidents API answers 401 to everyone."
    )
    metrics_public: bool = Field(
        True, description="Serve /metrics without a token (for Prometheus on a trusted network); false: a viewer's."
    )
    max_connections: int = Field(
        1000,
        ge=10,
        description="HTTP connections and requests at once; beyond it a request gets 503 (a flood of half-sent "
        "requests cannot use up the engine's open files).",
    )
    max_body_bytes: int = Field(
        8_000_000,
        ge=65536,
        description="Largest request body (a grid report with its photo, base64); larger ones get 413 before a byte "
        "is parsed, and a write without a token gets 401 from its headers alone.",
    )
    history_points: int = Field(
        432,
        ge=0,
        le=10_000,
        description="Readings kept per device and metric for the operator page's charts (432: 72 h at 10 min; "
        "8 bytes each, times to the second; 0 keeps none).",
    )
    advertise_url: str | None = Field(
        None,
        pattern=r"^https?://[^/\s]+/?$",
        description="A scale-out worker's API as the other workers reach it (they fetch a site's charts and frames "
        "from the worker holding it); default http://<host>:<port>, with this machine's name when host is "
        "0.0.0.0 or ::.",
    )
    peer_secret: str | None = Field(
        None,
        min_length=16,
        repr=False,
        description="Scale-out: a secret all workers share (use ${ENV_VAR}); a worker asks the worker holding a "
        "site for its charts and frames with a signature made with it, never with the operator's token. Unset: "
        "a worker shows only the sites of its own partitions.",
    )
    peer_hosts: list[str] = Field(
        default_factory=list,
        description="Scale-out: the host names or addresses the workers advertise; a worker forwards only to these "
        "(empty: to any member of the group that signs with peer_secret).",
    )

    @field_validator("peer_secret", mode="before")
    @classmethod
    def _unset_when_empty(cls, v: object) -> object:
        return None if v == "" else v  # ${GRIDWATCH_PEER_SECRET:-} with the variable unset

    basemap: str | None = Field(
        None,
        description="The operator map's background: a GeoJSON FeatureCollection (district and town boundaries, "
        "rivers, roads; WGS84), a path relative to the config file, served to the page from the engine.",
    )


class LorawanProfile(Strict):
    """How the decoded fields of one device profile's uplinks become gridwatch values.

    A decoded field listed in ``fields`` is taken as the value name it maps to; one whose own name is a
    gridwatch value name (``rain_mm``, ``water_level_ft``) is taken as it is; any other is left out.
    """

    name: str = Field(
        description="The device profile: ChirpStack's `deviceProfileName`, The Things Stack's "
        "`version_ids.model_id`, or the `profile` that `lorawan.devices` entries name."
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Decoded field (a dotted path for a nested one: `sensor.level`) → gridwatch value name: a "
        "contract metric, or one with another unit's suffix that ingest converts (`water_level_cm`, `temp_f`, "
        "`pore_pressure_hpa`), or a device-health metric (`battery_pct`).",
    )

    @field_validator("fields")
    @classmethod
    def _value_names(cls, v: dict[str, str]) -> dict[str, str]:
        from engine.core.quantities import value_name

        bad = sorted(name for name in v.values() if value_name(name) is None)
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: not a contract metric ({', '.join(METRIC_NAMES)}) nor one with a unit suffix "
                "ingest converts (rain_in, water_level_cm, temp_f, …)"
            )
        targets = list(v.values())
        twice = sorted({t for t in targets if targets.count(t) > 1})
        if twice:
            raise ValueError(f"two decoded fields map to {', '.join(twice)}: keep one")
        return v


class LorawanDevice(Strict):
    """One LoRaWAN device placed at a gridwatch site."""

    dev_eui: str = Field(pattern=r"^[0-9A-Fa-f]{16}$", description="The device's DevEUI (16 hex digits).")
    site: str = Field(description="The gridwatch site it is installed at.")
    id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,127}$",
        description="Its gridwatch device id; default: The Things Stack's device_id, else `eui-<deveui>`.",
    )
    profile: str | None = Field(None, description="The `lorawan.profiles` entry of its fields; default: its "
                                "device profile as the network server names it.")  # fmt: skip


class LorawanNetwork(Strict):
    """A LoRaWAN network server whose MQTT integration publishes the uplinks."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", description="Name in metrics and logs.")
    kind: Literal["chirpstack", "tts"] = Field(
        description="`chirpstack` (ChirpStack v4: `application/<id>/device/<deveui>/event/up` and `…/status`) or "
        "`tts` (The Things Stack v3: `v3/<app>@<tenant>/devices/<device>/up`)."
    )
    mqtt: MqttConfig | None = Field(
        None,
        description="The network server's broker (url, user, password or password_file, TLS); unset: the engine's "
        "own broker. Its client id gets `-lorawan-<name>` appended.",
    )
    topics: list[str] | None = Field(
        None,
        min_length=1,
        description="Topic filters to subscribe to; default: every application's uplinks (and ChirpStack's "
        "battery status events).",
    )

    @field_validator("mqtt")
    @classmethod
    def _broker(cls, v: MqttConfig | None) -> MqttConfig | None:
        if v is not None and v.url == "embedded":
            raise ValueError("a network server's broker is mqtt://host:port or mqtts://host:port (unset: the engine's)")
        return v

    def subscriptions(self) -> list[str]:
        if self.topics:
            return self.topics
        if self.kind == "chirpstack":
            return ["application/+/device/+/event/up", "application/+/device/+/event/status"]
        return ["v3/+/devices/+/up"]


class LorawanConfig(Strict):
    """LoRaWAN sensors: uplinks from network servers' MQTT integrations, taken as readings (`run`, `bridge`)."""

    networks: list[LorawanNetwork] = Field(default_factory=list, description="Network servers to take uplinks from.")
    profiles: list[LorawanProfile] = Field(
        default_factory=list, description="Decoded field → gridwatch value name, per device profile."
    )
    devices: list[LorawanDevice] = Field(
        default_factory=list, description="Devices by DevEUI: their site, id and profile."
    )
    site_tag: str = Field(
        "gridwatch_site",
        description="ChirpStack device tag naming the site of a device not in `devices` (its id is then "
        "`eui-<deveui>`, or the tag `gridwatch_device`); uplinks of a device with neither are dead-lettered "
        "(`unknown_device`).",
    )
    signal: bool = Field(True, description="Keep each uplink's best RSSI and SNR as `rssi_dbm` and `snr_db`.")
    battery: bool = Field(
        True,
        description="Keep the battery the network reports as `battery_pct` (ChirpStack's status events, The "
        "Things Stack's `last_battery_percentage` on the uplink that carried it).",
    )

    @model_validator(mode="after")
    def _unique(self) -> LorawanConfig:
        for what, names in (
            ("networks", [n.name for n in self.networks]),
            ("profiles", [p.name for p in self.profiles]),
            ("devices", [d.dev_eui.lower() for d in self.devices]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"lorawan.{what}: {', '.join(twice)} given twice; keep one entry each")
        known = {p.name for p in self.profiles}
        unknown = sorted({d.profile for d in self.devices if d.profile is not None and d.profile not in known})
        if unknown:
            raise ValueError(f"lorawan.devices name profiles that lorawan.profiles has not: {', '.join(unknown)}")
        return self


class DataloggerGroup(Strict):
    """Dataloggers that share a token and the sites they may post readings for."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$", description="Name in metrics and dead letters.")
    token: str = Field(min_length=16, repr=False, description="Their bearer token; use ${ENV_VAR}.")
    sites: list[str] = Field(min_length=1, description="Sites whose readings they may post; others are refused.")


class DataloggerConfig(Strict):
    """Dataloggers that post readings over HTTP (`POST /api/ingest`, CSV or JSON), a token per group."""

    groups: list[DataloggerGroup] = Field(default_factory=list, description="Groups of dataloggers; none: no endpoint.")
    max_body_bytes: int = Field(
        1_000_000, ge=1024, description="Largest body; a larger one gets 413 before it is parsed (api.max_body_bytes "
        "still bounds every request)."
    )  # fmt: skip
    max_readings: int = Field(10_000, ge=1, description="Most readings (CSV rows) in one body; more get 413.")

    @model_validator(mode="after")
    def _unique(self) -> DataloggerConfig:
        names = [g.name for g in self.groups]
        tokens = [g.token for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError("datalogger.groups: each group needs its own name")
        if len(set(tokens)) != len(tokens):
            raise ValueError("datalogger.groups: two groups share a token; give each group its own")
        return self


def _default_sinks() -> list[SinkConfig]:
    return [LogSinkConfig(type="log")]


def _unions() -> tuple[Any, Any]:
    """The discriminated unions of every detector config registered now (sensor, camera)."""
    sensors: Any = Annotated[Union[tuple(registry.config_classes())], Field(discriminator="type")]  # noqa: UP007
    cameras: Any = Annotated[Union[tuple(frame_registry.config_classes())], Field(discriminator="type")]  # noqa: UP007
    return sensors, cameras


if TYPE_CHECKING:
    DetectorSpec = DetectorConfig
    CameraDetectorSpec = CameraDetectorConfig
else:  # the detectors registered when the config is imported; the loader takes up later ones (below)
    DetectorSpec, CameraDetectorSpec = _unions()
_UNION_OF = (tuple(registry.known()), tuple(frame_registry.known()))  # the types the unions were built from


SOURCE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "onvif://")


class CameraSourceConfig(Strict):
    """Where the engine pulls a camera's frames itself (instead of the camera publishing them over MQTT)."""

    url: str = Field(
        description="rtsp://host:554/path (an IP camera's stream), http(s)://host/snapshot.jpg (a still per pull), "
        "onvif://host[:port] (the stream URL asked of the camera with ONVIF GetStreamUri), or a local video device "
        "(/dev/video0, or its index: 0). No user or password in it: use `username` and `password`/`password_file`."
    )
    username: str | None = Field(None, description="The camera's user; use ${ENV_VAR} rather than a literal.")
    password: str | None = Field(
        None, description="The camera's password; use ${ENV_VAR}, never a literal.", repr=False
    )
    password_file: str | None = Field(
        None, description="Read the camera's password from this file (a Docker or systemd secret) instead."
    )
    http_auth: Literal["digest", "basic"] = Field(
        "digest", description="http(s) snapshots and ONVIF: how the user and password are sent (most cameras: digest)."
    )
    interval_s: float | None = Field(
        None,
        gt=0,
        description="Seconds between the frames taken (default: the camera's min_interval_s, or 1 s when that is 0). "
        "An RTSP stream is read at its own rate and its newest frame taken at each interval.",
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Connecting to the camera and waiting for one frame.")
    backoff_s: float = Field(1.0, gt=0, description="First wait before reconnecting after a failure; it doubles.")
    backoff_max_s: float = Field(
        6.0,
        gt=0,
        description="Longest wait between reconnection attempts (give or take 10 %): a camera whose server comes "
        "back is streaming again within this and the time to open its stream (about 1 s).",
    )
    no_frames_after_s: float | None = Field(
        None,
        gt=0,
        description="A camera without a frame for this long is reported in /readyz's cameras_without_frames and the "
        "gridwatch_camera_sources_without_frames gauge (default: 3 intervals, at least 10 s).",
    )
    onvif_profile: int = Field(0, ge=0, description="onvif://: which of the camera's media profiles (0: the first).")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.isdigit() or v.startswith("/dev/"):
            return v
        if not v.lower().startswith(SOURCE_SCHEMES):
            raise ValueError("use rtsp://, rtsps://, http://, https://, onvif://, /dev/videoN or a device index")
        netloc = v.split("://", 1)[1].split("/", 1)[0]
        if "@" in netloc:
            raise ValueError(
                "no user or password in the URL (it would reach logs): give `username` and `password: ${ENV_VAR}` "
                "or `password_file`"
            )
        return v

    @model_validator(mode="after")
    def _secrets(self) -> CameraSourceConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give `password` or `password_file`, not both")
        if self.password_file is not None and not Path(self.password_file).is_file():
            raise ValueError(f"password_file: no file {self.password_file}")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("backoff_max_s must be at least backoff_s")
        return self

    @property
    def scheme(self) -> str:
        """``rtsp``, ``http``, ``onvif`` or ``device`` (rtsps and https are rtsp and http over TLS)."""
        if "://" not in self.url:
            return "device"
        s = self.url.split("://", 1)[0].lower()
        return {"rtsps": "rtsp", "https": "http"}.get(s, s)

    def secret(self) -> str | None:
        """The camera's password, from the config (its environment) or from ``password_file``."""
        if self.password_file is not None:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
        return self.password


class CameraConfig(Strict):
    """One camera: where it is, what it sees, and how its frames are treated."""

    site: str = Field(description="Site id, as in the topic `gw/cameras/<site>/<camera>`.")
    id: str = Field(description="Camera id.")
    kind: Literal["visible", "thermal"] = Field("visible", description="Visible (JPEG/PNG) or thermal (TIFF/.npy).")
    min_interval_s: float = Field(
        1.0, ge=0, description="Frames closer than this to the camera's last analysed frame are skipped."
    )
    masks: list[tuple[float, float, float, float]] = Field(
        default_factory=list, description="Regions to ignore, [x, y, w, h] as fractions of the frame."
    )
    gain: float = Field(1.0, description="Thermal: temp_c = gain * raw + offset (per-camera calibration).")
    offset: float = Field(0.0, description="Thermal: see gain.")
    units: Literal["auto", "celsius", "counts"] = Field(
        "auto",
        description="Thermal: what the frames' numbers are. celsius: °C (floats, or integer counts with gain and "
        "offset); an integer frame with no calibration is refused (dead letter thermal_units). counts: raw relative "
        "counts, judged against the scene (gain and offset unused). auto: integer frames with no calibration are "
        "counts, any other °C.",
    )
    source: CameraSourceConfig | None = Field(
        None,
        description="Pull the camera's frames from its RTSP stream, HTTP snapshot URL or a local video device (the "
        "`cameras` extra). Unset: the camera publishes its frames to gw/cameras/<site>/<camera>.",
    )

    @model_validator(mode="after")
    def _source_kind(self) -> CameraConfig:
        if self.source is not None and self.kind == "thermal" and self.source.scheme != "http":
            raise ValueError(
                "a thermal camera's video stream is a false-colour picture, not temperatures: pull its radiometric "
                "frames from an http(s) snapshot URL (TIFF or .npy), or publish them to gw/thermal/<site>/<camera>"
            )
        return self

    def pull_interval_s(self) -> float:
        """Seconds between pulled frames: the source's ``interval_s``, else ``min_interval_s`` (1 s when 0)."""
        if self.source is not None and self.source.interval_s is not None:
            return self.source.interval_s
        return self.min_interval_s or 1.0


class CameraLearningConfig(Strict):
    """Cameras that learn their own scene from the operators' verdicts (false alarm, real fire, real smoke).

    A visible camera's verdict labels the cells of its alarm's frames; the camera's own head on the model's
    frozen per-cell features is refit at once (``smoke_fire_onnx``), and used only if it still finds every
    confirmed fire of that camera and no longer alarms on its dismissed scenes. A thermal camera's "false
    alarm" teaches its hot-spot memory that place at that time of day.
    """

    enabled: bool = Field(True, description="Take verdicts and learn from them (off: verdicts are refused).")
    max_dismissed_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="A dismissed region larger than this share of the frame is refused: a camera must not learn to "
        "ignore its whole view (draw a box around the part that is not fire).",
    )
    dismissed_expire_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="A dismissed scene is forgotten this long after the last verdict that named it (the scene may "
        "change: a field burnt, a roof gone); a confirmed fire or smoke is never forgotten.",
    )
    max_examples: int = Field(
        500, ge=10, description="Labelled cells kept per camera (the oldest dismissed ones go first, confirmed last)."
    )
    margin: float = Field(
        0.5,
        ge=0,
        description="A head is used only if every dismissed cell scores this far (in logits) under the alarm.",
    )
    frames_per_verdict: int = Field(
        4, ge=1, le=16, description="The alarm's frames (newest first) whose cells a verdict labels."
    )
    anchors_per_frame: int = Field(
        24,
        ge=0,
        description="Other cells of those frames kept as they are (the shipped head's own score): they keep the "
        "correction from drifting on the rest of the scene.",
    )
    hot_spot_window_s: float = Field(
        3600.0,
        gt=0,
        description="Thermal: a dismissed hot spot is ignored within this long of the same time of day (a roof the "
        "afternoon sun heats), in the same place, unless it grows hotter than when it was dismissed.",
    )
    hot_spot_rise: float = Field(
        0.2,
        ge=0,
        description="Thermal: a dismissed hot spot alarms again once its score exceeds the dismissed one by this "
        "share.",
    )


class CamerasConfig(Strict):
    """Cameras and the detectors that watch their frames."""

    devices: list[CameraConfig] = Field(default_factory=list, description="Cameras (visible and thermal).")
    queue_frames: int = Field(
        8, ge=1, description="Frames waiting per camera; when the detectors fall behind, the oldest is dropped."
    )
    max_cameras: int = Field(
        100,
        ge=0,
        description="At most this many cameras not in `devices` send frames (those in `devices` always may); frames "
        "of further new camera ids are dead-lettered (`camera_limit`), so that a stream of invented ids cannot "
        "exhaust memory: each camera's detectors keep several MB of scene memory (about 7.5 MB for 2 MP frames).",
    )
    latest_frames_mb: float = Field(
        256.0,
        gt=0,
        description="Memory for each camera's newest frame (the operator page's camera view); beyond it the frames "
        "of the cameras heard from least recently are let go.",
    )
    snapshot_quota_mb: float = Field(
        5000.0,
        gt=0,
        description="Disk for the cameras' alarm snapshots and the frames kept for verdicts (data_dir/snapshots); "
        "beyond it the oldest are deleted first, never one an open incident still shows.",
    )
    snapshot_retention_days: float = Field(
        30.0,
        gt=0,
        description="Snapshots and kept frames captured longer ago than this (against the newest frame's capture "
        "time) are deleted, unless an open incident still shows them.",
    )
    detectors: list[CameraDetectorSpec] = Field(
        default_factory=list, description="Camera detectors (smoke_fire_onnx, flame_color_motion, thermal_hotspot)."
    )
    learning: CameraLearningConfig = Field(
        default_factory=CameraLearningConfig,
        description="Learning each camera's scene from the operators' verdicts (data_dir/camera_heads).",
    )


DEFAULT_REPORT_CATEGORIES = {
    "landslide": "landslide",
    "crack": "landslide",
    "rockfall": "landslide",
    "subsidence": "landslide",
    "flood": "waterlogging",
    "waterlogging": "waterlogging",
    "fire": "fire",
    "smoke": "fire",
    "other": "report",
}


class ReportsConfig(Strict):
    """Grid reports: what grid workers and residents report (API, operator page, MQTT ``reports`` topic)."""

    categories: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_REPORT_CATEGORIES),
        description="Report category -> the hazard its incident is filed under (routing, plans, inhibition).",
    )
    default_level: LevelName = Field("yellow", description="The level of a report that names none.")
    max_level: LevelName = Field(
        "orange", description="The highest level a report may ask for (operators' reports: up to red)."
    )
    max_distance_m: float = Field(
        2000.0, gt=0, description="A report by position is filed under the nearest site within this distance."
    )
    max_photo_bytes: int = Field(5_000_000, gt=0, description="Largest photo taken with a report.")
    max_photo_pixels: int = Field(
        16_000_000, gt=0, le=40_000_000, description="Most pixels of a report's photo (a phone's 12 MP is fine)."
    )
    max_per_reporter_per_hour: int = Field(
        30, ge=1, description="Reports one reporter may file in an hour; more are refused (`rate_limited`)."
    )
    max_per_site_per_hour: int = Field(
        300, ge=1, description="Reports on one site in an hour, from everyone; more are refused (`rate_limited`)."
    )
    photo_quota_mb: float = Field(
        2000.0,
        gt=0,
        description="Disk for reports' photos (data_dir/reports); when it is full a report is still filed, "
        "without its photo, and says so.",
    )

    @model_validator(mode="after")
    def _levels(self) -> ReportsConfig:
        if Level.from_name(self.default_level) > Level.from_name(self.max_level):
            raise ValueError(
                f"default_level {self.default_level} is above max_level {self.max_level}: lower it or raise max_level"
            )
        return self


class EngineConfig(Strict):
    """The whole engine configuration (`config/gridwatch.yaml`)."""

    city: str = Field("city", description="The city centre at the top of the hierarchy.")
    timezone: str = Field(
        "UTC",
        description="The city's time zone (IANA name, e.g. Asia/Shanghai): the operator page and `gridwatch "
        "incidents` show every time in it, with its offset.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai or UTC") from None
        return v

    data_dir: str = Field(
        "var/gridwatch", description="Where the engine keeps its files (relative to the working dir)."
    )
    checkpoint_interval_s: float = Field(
        60.0,
        ge=0,
        description="Write the detectors' state to `checkpoint.npz` in the data dir this often, and on stop "
        "(0: only on stop); a restarted engine takes it up.",
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT connection.")
    ingest: IngestConfig = Field(default_factory=IngestConfig, description="Decoding, validation, batching.")
    sites: list[SiteConfig] = Field(default_factory=list, description="Sites and their devices.")
    sites_file: str | None = Field(
        None, description="CSV of sites (id,name,lat,lon,grid,town,district), relative to the config file."
    )
    devices_file: str | None = Field(
        None, description="CSV of devices (site,id,kind,metrics,expected_interval_s), metrics separated by `;`."
    )
    detectors: list[DetectorSpec] = Field(default_factory=list, description="Detectors to run, in order.")
    cameras: CamerasConfig = Field(default_factory=CamerasConfig, description="Cameras and camera detectors.")
    incidents: IncidentPolicy = Field(default_factory=IncidentPolicy, description="How findings become incidents.")
    fusion: list[FusionRule] = Field(default_factory=list, description="Site-level evidence fusion rules.")
    plans: list[PlanConfig] = Field(default_factory=list, description="Response plans by hazard and level.")
    routing: list[RouteRule] = Field(
        default_factory=list, description="First receiver, acknowledgement deadline and reminders by hazard and level."
    )
    silences: list[Silence] = Field(
        default_factory=list, description="Silences and recurring maintenance windows (more come through the API)."
    )
    inhibit: list[InhibitRule] = Field(default_factory=list, description="Graver incidents muting lesser ones.")
    sinks: list[SinkConfig] = Field(default_factory=_default_sinks, description="Where incident events go.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Incident store.")
    api: ApiConfig = Field(default_factory=ApiConfig, description="HTTP server.")
    reports: ReportsConfig = Field(default_factory=ReportsConfig, description="Grid reports by people.")
    lorawan: LorawanConfig = Field(
        default_factory=LorawanConfig,
        description="LoRaWAN sensors: uplinks of ChirpStack v4 or The Things Stack v3 over MQTT, as readings.",
    )
    datalogger: DataloggerConfig = Field(
        default_factory=DataloggerConfig, description="Dataloggers posting readings over HTTP, a token per group."
    )
    kafka: KafkaConfig = Field(
        default_factory=KafkaConfig, description="Kafka, for the scale-out runner (`gridwatch bridge`, `worker`)."
    )

    @model_validator(mode="before")
    @classmethod
    def _load_csv(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base = Path((info.context or {}).get("base_dir", "."))
        given = data.get("sites") or []
        if not isinstance(given, list) or not all(
            isinstance(x, str | None) for x in (data.get("sites_file"), data.get("devices_file"))
        ):
            return data  # the field validation says what is wrong with it
        sites = list(given)
        if data.get("sites_file"):
            path = base / data["sites_file"]
            sites += [_checked_row(SiteConfig, row, path, line) for line, row in _read_csv(path)]
        if data.get("devices_file"):
            by_id = {s.get("id") if isinstance(s, dict) else getattr(s, "id", None): s for s in sites}
            path = base / data["devices_file"]
            for line, row in _read_csv(path):
                site_id = row.pop("site", "")
                if site_id not in by_id:
                    raise ValueError(f"{path}:{line}: device {row.get('id')!r} names unknown site {site_id!r}")
                row["metrics"] = [m for m in (row.get("metrics") or "").split(";") if m]
                if not row.get("expected_interval_s"):
                    row.pop("expected_interval_s", None)
                by_id[site_id].setdefault("devices", []).append(_checked_row(DeviceConfig, row, path, line))
        if sites:
            data = {**data, "sites": sites}
        api = data.get("api")
        if isinstance(api, dict) and isinstance(api.get("basemap"), str):
            path = base / api["basemap"]
            if not path.is_file():
                raise ValueError(f"api.basemap: no file {path} (a GeoJSON FeatureCollection, relative to the config)")
            data = {**data, "api": {**api, "basemap": str(path.resolve())}}
        return data

    @model_validator(mode="after")
    def _unique(self) -> EngineConfig:
        names = [d.name for d in self.detectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"detector ids must be unique; give each an `id`: {dupes}")
        sinks = [sink_name(s) for s in self.sinks]
        dupe_sinks = sorted({n for n in sinks if sinks.count(n) > 1})
        if dupe_sinks:
            raise ValueError(f"sink names must be unique; give each a `name`: {dupe_sinks}")
        site_ids = [s.id for s in self.sites]
        dupe_sites = sorted({n for n in site_ids if site_ids.count(n) > 1})
        if dupe_sites:
            raise ValueError(f"site ids must be unique: {dupe_sites}")
        return self

    @model_validator(mode="after")
    def _device_network_sites(self) -> EngineConfig:
        """LoRaWAN devices and datalogger groups name configured sites (a typo would file readings nowhere)."""
        sites = {s.id for s in self.sites}
        for i, dev in enumerate(self.lorawan.devices):
            if dev.site not in sites:
                raise ValueError(f"lorawan.devices.{i}: site {dev.site!r} of {dev.dev_eui} is not in `sites`; "
                                 "add the site or fix the name")  # fmt: skip
        for group in self.datalogger.groups:
            unknown = sorted(set(group.sites) - sites)
            if unknown:
                raise ValueError(f"datalogger.groups {group.name!r}: sites {', '.join(unknown)} are not in `sites`; "
                                 "add them or fix the names")  # fmt: skip
        api_tokens = {t.token for t in self.api.tokens}
        shared = [g.name for g in self.datalogger.groups if g.token in api_tokens]
        if shared:
            raise ValueError(f"datalogger.groups {', '.join(shared)}: the token is also an api.tokens one; give the "
                             "dataloggers their own")  # fmt: skip
        return self

    def site(self, site_id: str) -> SiteConfig | None:
        return next((s for s in self.sites if s.id == site_id), None)

    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{Path(self.data_dir) / 'gridwatch.db'}"


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a sites or devices file, each with its line number (for errors that name it)."""
    if not path.exists():
        raise ValueError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return [(reader.line_num, dict(row)) for row in reader]


def _checked_row(model: type[BaseModel], row: dict[str, Any], path: Path, line: int) -> dict[str, Any]:
    """A CSV row checked as ``model`` here, so that an error names the file, the line and the column (checked
    later with the config, it would point at the YAML). Returned as given: the config validates it again."""
    try:
        model.model_validate(row)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "row"
        raise ValueError(f"{path}:{line}: {where}: {first['msg']} (value {first.get('input')!r:.60})") from None
    return row


def current_detector_types() -> None:
    """Rebuild the config models if detectors were registered since they were built (a plugin registered at
    run time, after this module was imported): the loader calls it before it validates a config."""
    global _UNION_OF
    names = (tuple(registry.known()), tuple(frame_registry.known()))
    if names == _UNION_OF:
        return
    sensors, cameras = _unions()
    globals()["DetectorSpec"], globals()["CameraDetectorSpec"] = sensors, cameras
    CamerasConfig.model_fields["detectors"].annotation = list[cameras]  # type: ignore[valid-type]
    CamerasConfig.model_rebuild(force=True)
    EngineConfig.model_fields["detectors"].annotation = list[sensors]  # type: ignore[valid-type]
    EngineConfig.model_rebuild(force=True)
    _UNION_OF = names
