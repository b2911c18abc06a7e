"""People reached through Apprise (SMS gateways, e-mail, chat): one URL per receiver of the routing.

The sink sits behind the same durable outbox as the others: an event is one outbox row, and the row is done
once every receiver the event names (``receivers``: the tiers the dispatcher reached, a one-key dispatch's
contacts) has it. What each receiver got is marked in the store (``receiver_messages``) in the transaction of
its audit line, so a retry after a failure or a restart skips the receivers already reached: a message is
sent again only when the engine dies between the receiver's acceptance and that mark.

Rate limits per receiver: at most ``rate_limit.messages`` within ``rate_limit.window_s``; later events are
held (the audit trail says so) and go out as one summary, at most every ``summary_every_s`` or as soon as the
window has room again. URLs hold keys: they are never logged, and every text that reaches the logs, the
store or an error (Apprise's own messages too) has each part of them cut out (``Redactor``).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from engine import metrics
from engine.config.notify import AppriseReceiverConfig, AppriseSinkConfig, NotifyRateLimit
from engine.core.levels import Level

if TYPE_CHECKING:
    from engine.config.models import EngineConfig
    from engine.store.receivers import HeldEvent
    from engine.store.store import Store

logger = logging.getLogger(__name__)

ACTION_WORDS = {
    "fired": "new incident",
    "raised": "level raised",
    "lowered": "level lowered",
    "reopened": "reopened",
    "escalated": "escalated: not acknowledged in time",
    "reminder": "reminder: not acknowledged yet",
    "acknowledged": "acknowledged",
    "assigned": "assigned",
    "resolved": "resolved",
    "dispatched": "dispatched with its response plan",
    "reported": "reported by a person",
}
NOTIFY_TYPE = {"red": "failure", "orange": "warning", "yellow": "warning", "blue": "info"}
SUMMARY_LINES = 20  # the most events one summary lists (it counts the rest)
IDLE_CHECK_S = 60.0  # held events of another worker (or a previous engine) are looked for this often
RETENTION_S = 7 * 86400.0
HANGING_S = 2.0  # an attempt that failed after this long (or half of timeout_s) hung: a time-out, not a refusal
_DELIMITERS = re.compile(r"[/?&=@:#,;\s]+")


class Redactor:
    """Cuts every part of a secret URL out of a text: the password, and each piece of the host, the user, the
    path and the query's values, between the URL's delimiters, that is 4 characters or longer (tokens sit in
    any of them), but for numbers of up to 5 digits (ports) and the query's parameter names.

    >>> cut = Redactor("json://bot:pw9@hooks.example.org:8443/T0KEN-abc?+X-Key=k3y-value&mode=insecure")
    >>> cut("POST to https://hooks.example.org:8443/T0KEN-abc (mode insecure) failed for bot (pw9, k3y-value)")
    'POST to https://…:8443/… (mode …) failed for bot (…, …)'
    """

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[-1]
        userinfo, at, _host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")
        password = userinfo.partition(":")[2] if at else ""
        try:
            parts = urlsplit(url)
            values = [pair.partition("=")[2] for pair in parts.query.split("&")]  # `+` as given, not a space
            texts = [parts.netloc, parts.path, parts.fragment, *values]
        except ValueError:  # not even a URL to urlsplit (a stray `[`): every piece of it
            values, texts = [], [rest]
        pieces = {p for text in texts for t in (text, unquote(text)) for p in _DELIMITERS.split(t) if len(p) >= 4}
        pieces.update(t for v in values for t in (v, unquote(v)) if len(t) >= 4)
        pieces = {p for p in pieces if not (p.isdigit() and len(p) <= 5)}  # a port, not a key
        if password and len(password) >= 3:
            pieces.update({password, unquote(password)})
        pieces.update({url, unquote(url)})
        self._pieces = sorted(pieces, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for piece in self._pieces:
            text = text.replace(piece, "…")
        return text


class RedactingFilter(logging.Filter):
    """On Apprise's loggers and those of the HTTP client under it: their messages (a host, a path with a token)
    never reach a log handler unredacted."""

    def __init__(self) -> None:
        super().__init__()
        self.redactors: list[Redactor] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactors:
            text = record.getMessage()
            if record.exc_info:  # a traceback's text can hold the URL too: redacted with the message
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
                record.exc_info, record.exc_text = None, None
            for cut in self.redactors:
                text = cut(text)
            record.msg, record.args = text, None
        return True


_APPRISE_LOG_FILTER = RedactingFilter()
# Loggers that write what Apprise sends where (a filter on a logger sees only its own records, not its children's).
LEAKY_LOGGERS = (
    "apprise", "urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "urllib3.response",
    "requests_oauthlib.oauth2_session",
)  # fmt: skip


@dataclass
class Receiver:
    """A configured receiver with its Apprise object and its redactor."""

    cfg: AppriseReceiverConfig
    label: str
    channel: str  # the URL's scheme: what kind of message (mailto, json, tgram, …), safe to show
    min_level: Level
    notifier: Any  # apprise.Apprise holding the one URL
    redact: Redactor

    def matches(self, receivers: list[str]) -> bool:
        """Whether an event for ``receivers`` (the routing's ``tier:name`` and plan contacts) reaches it."""
        kind, _, unit = self.cfg.to.partition(":")
        if kind == "contact":
            return unit in receivers
        if unit == "*":
            return any(r.startswith(f"{kind}:") for r in receivers)
        return self.cfg.to in receivers


class _Said(logging.Handler):
    """What Apprise said while it loaded a URL (why it refused it), redacted by the filter on its logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.getMessage().startswith("Could not load"):  # that one repeats the URL, half-masked
            self.lines.append(record.getMessage())


def build_receivers(cfg: AppriseSinkConfig, where: str) -> list[Receiver]:
    """Each receiver's URL loaded into Apprise; ``ValueError`` naming the receiver (never its URL) when Apprise
    does not know the URL. ``where`` names the sink in the config (``sinks[2]``)."""
    import apprise

    for name in LEAKY_LOGGERS:
        leaky = logging.getLogger(name)
        if _APPRISE_LOG_FILTER not in leaky.filters:
            leaky.addFilter(_APPRISE_LOG_FILTER)
    out = []
    for i, r in enumerate(cfg.receivers):
        url = r.secret_url()
        redact = Redactor(url)
        _APPRISE_LOG_FILTER.redactors.append(redact)
        said = _Said()
        apprise_logger = logging.getLogger("apprise")
        apprise_logger.addHandler(said)
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        finally:
            apprise_logger.removeHandler(said)
        if plugin is None:
            scheme = url.split("://", 1)[0][:20]
            why = f" ({redact('; '.join(said.lines))[:300]})" if said.lines else ""
            raise ValueError(
                f"{where}.receivers[{i}] ({r.label}): Apprise cannot use this URL (scheme {scheme!r}){why}; check it "
                "against https://github.com/caronc/apprise/wiki (the URL itself is not shown: it holds keys)"
            )
        # Apprise pauses between two messages of one URL (5.5 s for most services), asleep in the delivery
        # thread: a second event to one receiver held up everyone's news. The rate limit per receiver paces them.
        plugin.request_rate_per_sec = 0
        notifier = apprise.Apprise()
        notifier.add(plugin)
        channel = url.split("://", 1)[0].lower()
        out.append(Receiver(r, r.label, channel, Level.from_name(r.min_level), notifier, redact))
    return out


def receiver_warnings(cfg: EngineConfig) -> list[str]:
    """Receivers of Apprise sinks that no event can reach: a grid, town, district, city or plan contact that the
    config does not have (a typo reaches nobody, silently).

    >>> from engine.config.models import EngineConfig
    >>> site = dict(id="S1", lat=29.5, lon=106.5, grid="g1", town="Nanshan", district="Nan'an")
    >>> sink = dict(type="apprise", receivers=[dict(to="town:Nanshn", url="json://localhost/x")])
    >>> receiver_warnings(EngineConfig(sites=[site], sinks=[sink]))
    ["sinks[0].receivers[0].to: town:Nanshn is no town of the config's sites (did you mean town:Nanshan?)"]
    """
    import difflib

    known: dict[str, set[str]] = {"grid": set(), "town": set(), "district": set(), "city": {cfg.city}}
    for site in cfg.sites:
        known["grid"].add(site.grid)
        known["town"].add(site.town)
        known["district"].add(site.district)
    known["contact"] = {c for p in cfg.plans for c in p.contacts}
    out = []
    for i, sink in enumerate(cfg.sinks):
        if not isinstance(sink, AppriseSinkConfig):
            continue
        for j, r in enumerate(sink.receivers):
            kind, _, unit = r.to.partition(":")
            if unit == "*" or unit in known[kind]:
                continue
            close = difflib.get_close_matches(unit, sorted(known[kind]), n=1)
            mean = f" (did you mean {kind}:{close[0]}?)" if close else ""
            what = "plan contact" if kind == "contact" else f"{kind} of the config's sites"
            out.append(f"sinks[{i}].receivers[{j}].to: {r.to} is no {what}{mean}")
    return out


def event_line(event: dict[str, Any]) -> str:
    """An event in one line (a summary lists them).

    >>> event_line({"level": "red", "hazard": "landslide", "site": "S1", "action": "escalated",
    ...             "incident_id": "19a71bbd040da447"})
    'RED landslide at S1: escalated: not acknowledged in time (incident 19a71bbd040da447)'
    """
    words = ACTION_WORDS.get(event.get("action", ""), event.get("action", ""))
    return f"{event['level'].upper()} {event['hazard']} at {event['site']}: {words} (incident {event['incident_id']})"


def incident_link(public_url: str | None, incident_id: str) -> str | None:
    """Where the operator page opens the incident.

    >>> incident_link("https://gridwatch.example.org/", "19a71bbd040da447")
    'https://gridwatch.example.org/#incident=19a71bbd040da447'
    """
    return f"{public_url.rstrip('/')}/#incident={incident_id}" if public_url else None


class MessageWriter:
    """The title and text of an event's message: the level, the site (with its name and town), what happened,
    the response plan (title, role, steps, checklist, contacts) and a link to the incident.

    >>> from engine.config.models import EngineConfig
    >>> site = dict(id="S1", name="Hillside above road 12", lat=29.5, lon=106.5, grid="g1", town="Nanshan",
    ...             district="Nan'an")
    >>> w = MessageWriter(EngineConfig(sites=[site], timezone="Asia/Shanghai"), "https://gw.example.org")
    >>> e = {"incident_id": "19a71bbd040da447", "site": "S1", "hazard": "landslide", "level": "red",
    ...      "state": "firing", "opened_at": 1764000000.0, "action": "fired", "receivers": ["grid:g1"],
    ...      "plan": {"title": "Evacuate", "role": "district emergency office", "steps": ["Evacuate now"]}}
    >>> title, body = w.event(e)
    >>> title
    '[RED] landslide at S1 Hillside above road 12: new incident'
    >>> print(body)
    RED landslide at S1 Hillside above road 12 (Nanshan, Nan'an): new incident.
    Firing, open since 2025-11-25 00:00 UTC+08:00; sent to grid:g1.
    Plan: Evacuate (district emergency office)
    1. Evacuate now
    Open: https://gw.example.org/#incident=19a71bbd040da447
    """

    def __init__(self, cfg: EngineConfig, public_url: str | None) -> None:
        self.sites = {s.id: s for s in cfg.sites}
        self.zone = ZoneInfo(cfg.timezone)
        self.public_url = public_url

    def when(self, ts: float) -> str:
        t = datetime.fromtimestamp(ts, self.zone)
        offset = t.strftime("%z")
        return t.strftime("%Y-%m-%d %H:%M") + f" UTC{offset[:3]}:{offset[3:]}"

    def event(self, e: dict[str, Any]) -> tuple[str, str]:
        site = self.sites.get(e["site"])
        where = f"{e['site']} {site.name}".strip() if site else e["site"]
        action, actor = e.get("action", ""), e.get("actor")  # the actor of this event (none: the engine)
        words = ACTION_WORDS.get(action, action)
        if actor and action in ("assigned", "dispatched"):
            words += f" by {actor}"
        title = f"[{e['level'].upper()}] {e['hazard']} at {where}: {words}"
        place = f" ({site.town}, {site.district})" if site else ""
        lines = [f"{e['level'].upper()} {e['hazard']} at {where}{place}: {words}."]
        who = ", ".join(e.get("receivers") or [])
        by = f" by {actor}" if actor and action in ("acknowledged", "resolved") else ""
        if e["state"] == "resolved":
            state = (
                f"Resolved{by} at {self.when(e.get('updated_at', e['opened_at']))} (opened {self.when(e['opened_at'])})"
            )
        else:
            state = f"{e['state'].capitalize()}{by}, open since {self.when(e['opened_at'])}"
        lines.append(f"{state}; sent to {who or 'nobody'}.")
        if e.get("assigned_to"):
            lines.append(f"Assigned to {e['assigned_to']}.")
        plan = e.get("plan") or {}
        if plan.get("title") and e["state"] != "resolved":
            lines.append(f"Plan: {plan['title']} ({plan.get('role', '')})")
            lines += [f"{k}. {step}" for k, step in enumerate(plan.get("steps") or [], 1)]
            if plan.get("checklist"):
                lines.append("Checklist: " + "; ".join(plan["checklist"]))
            if plan.get("contacts"):
                lines.append("Contacts: " + "; ".join(plan["contacts"]))
        link = incident_link(self.public_url, e["incident_id"])
        lines.append(f"Open: {link}" if link else f"Incident {e['incident_id']}")
        return title, "\n".join(lines)

    def summary(self, label: str, held: list[Any], limit: NotifyRateLimit) -> tuple[str, str, str]:
        """One message for the events a receiver's rate limit held: the gravest first. Returns the title, the
        text and the Apprise notify type."""
        ordered = sorted(held, key=lambda h: (-Level.from_name(h.level), h.at))
        gravest = ordered[0].level
        incidents = len({h.incident_id for h in held})
        title = f"[{gravest.upper()}] gridwatch: {len(held)} events on {incidents} incidents held for you"
        window = f"{limit.window_s / 60:g} min" if limit.window_s >= 60 else f"{limit.window_s:g} s"
        lines = [
            f"{len(held)} events held for {label} since {self.when(min(h.at for h in held))} "
            f"(over its rate limit of {limit.messages} messages per {window}, or while it did not answer):"
        ]
        lines += [h.line for h in ordered[:SUMMARY_LINES]]
        if len(ordered) > SUMMARY_LINES:
            lines.append(f"… and {len(ordered) - SUMMARY_LINES} more.")
        if self.public_url:
            lines.append(f"Open: {self.public_url.rstrip('/')}/")
        return title, "\n".join(lines), NOTIFY_TYPE.get(gravest, "info")


class AppriseSink:
    """Incident events to people through Apprise, one URL per receiver, rate-limited per receiver.

    ``send`` raises ``ConnectionError`` while a receiver the event names is not reached (the outbox retries
    the event; the receivers reached are skipped). ``flush_held`` (called by the outbox's delivery loop) sends
    the summaries that are due.
    """

    def __init__(
        self, cfg: AppriseSinkConfig, store: Store, engine_cfg: EngineConfig, where: str = "sinks[apprise]"
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name or cfg.type
        self.store = store
        self.receivers = build_receivers(cfg, where)
        self.by_label = {r.label: r for r in self.receivers}
        self.writer = MessageWriter(engine_cfg, cfg.public_url)
        for warning in receiver_warnings(engine_cfg):
            logger.warning("%s: it receives nothing", warning)
        self._failures: dict[tuple[str, str], int] = {}  # (delivery, receiver) -> failed attempts, for the trail
        self._summary_retry: dict[str, tuple[float, float]] = {}  # receiver -> (next try, backoff) after a failure
        self._hanging: dict[str, tuple[float, int]] = {}  # receiver -> (not tried before, hangs in a row)
        self._next_flush = 0.0  # look for held events at once: a previous engine may have left some
        self._pool = ThreadPoolExecutor(max_workers=min(8, len(self.receivers)), thread_name_prefix=f"{self.name}-")
        self._purged_at = 0.0
        self._gone: set[str] = set()  # receivers with held events that the config no longer has (warned once)
        store.receiver_unclaim(self.name)  # summaries under way when the last engine stopped: held again

    # Sending one event

    def send(self, event: dict[str, Any], delivery_id: str | None = None) -> None:
        level = Level.from_name(event["level"])
        names = list(event.get("receivers") or [])
        targets = [r for r in self.receivers if level >= r.min_level and r.matches(names)]
        if not targets:
            return
        delivery = delivery_id or f"{event['incident_id']}.{event.get('seq', 0)}.{self.name}"
        reached = self.store.receivers_reached(self.name, delivery)
        title, body = self.writer.event(event)
        line = event_line(event)
        failed: list[str] = []
        due: list[Receiver] = []
        for r in targets:
            if r.label in reached:
                continue
            now = time.time()
            if not self._over_limit(r, now):
                due.append(r)
                continue
            note = (
                f"held for {r.label}: over its rate limit of {self.cfg.rate_limit.messages} messages per "
                f"{self.cfg.rate_limit.window_s:g} s; it goes out in a summary"
            )
            audit = self._audit(event, r, "notify_held", now, delivery, note)
            if self.store.receiver_mark(self.name, r.label, delivery, event["incident_id"], "held", now,
                                        event["level"], line, audit):  # fmt: skip
                metrics.NOTIFY_MESSAGES.labels(self.name, "held").inc()
                logger.info("sink %s: %s (incident %s)", self.name, note, event["incident_id"])
            self._next_flush = min(self._next_flush, now + 1.0)
        # The receivers of one event at once: a mail server that takes its time-out holds up no one else's news.
        notify_type = NOTIFY_TYPE.get(event["level"], "info")
        outcomes = list(self._pool.map(lambda r: self._try(r, title, body, notify_type), due))
        for r, (ok, why) in zip(due, outcomes, strict=True):
            now = time.time()
            if ok:
                self._failures.pop((delivery, r.label), None)
                audit = self._audit(event, r, "notified", now, delivery, f"{r.channel} message sent to {r.label}")
                self.store.receiver_mark(self.name, r.label, delivery, event["incident_id"], "sent", now,
                                         event["level"], line, audit)  # fmt: skip
                metrics.NOTIFY_MESSAGES.labels(self.name, "sent").inc()
                logger.info("sink %s: %s message sent to %s (%s)", self.name, r.channel, r.label, line)
                continue
            metrics.NOTIFY_MESSAGES.labels(self.name, "failed").inc()
            attempt = self._failures.get((delivery, r.label), 0) + 1
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures[(delivery, r.label)] = attempt
            if 0 < self.cfg.hold_after_failures <= attempt:  # its outage must not hold the others' later news
                note = (
                    f"{r.channel} message to {r.label} failed {attempt} times ({why}); held for its next summary, "
                    "sent once it answers again"
                )
                audit = self._audit(event, r, "notify_held", now, delivery, note)
                if self.store.receiver_mark(self.name, r.label, delivery, event["incident_id"], "held", now,
                                            event["level"], line, audit):  # fmt: skip
                    metrics.NOTIFY_MESSAGES.labels(self.name, "held").inc()
                self._failures.pop((delivery, r.label), None)
                self._next_flush = min(self._next_flush, now + 1.0)
                continue
            failed.append(f"{r.label} ({r.channel}): {why}")
            if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8…: a long outage does not flood the trail
                note = f"{r.channel} message to {r.label} failed (attempt {attempt}; retried): {why}"
                self.store.receiver_audit([self._audit(event, r, "notify_failed", now, delivery, note)])
        if failed:
            raise ConnectionError(f"{len(failed)} of {len(targets)} receivers not reached: " + "; ".join(failed))

    def _over_limit(self, r: Receiver, now: float) -> bool:
        """Whether a message to ``r`` now must wait: its window is full, or events are already held for it
        (a new event joins their summary rather than overtaking them)."""
        limit = self.cfg.rate_limit
        sent, _last = self.store.receiver_window(self.name, r.label, now - limit.window_s)
        return sent >= limit.messages or r.label in self.store.receivers_holding(self.name)

    def _try(self, r: Receiver, title: str, body: str, notify_type: str) -> tuple[bool, str]:
        """``_notify``, unless the receiver's last attempt hung until its time-out (a mail server that takes
        connections and never answers): then it is not tried again until its backoff has passed, so that each
        event for it does not hold the delivery loop, and everyone else's news, for ``timeout_s`` again."""
        hung_until, hangs = self._hanging.get(r.label, (0.0, 0))
        if time.time() < hung_until:
            return False, f"not tried: its last attempt hung; tried again in {hung_until - time.time():.0f} s"
        started = time.monotonic()
        ok, why = self._notify(r, title, body, notify_type)
        if ok:
            self._hanging.pop(r.label, None)
        elif time.monotonic() - started >= min(HANGING_S, 0.5 * self.cfg.timeout_s):
            wait = min(self.cfg.backoff_max_s, self.cfg.backoff_s * 2**hangs)
            self._hanging[r.label] = (time.time() + wait, hangs + 1)
        return ok, why

    def _notify(self, r: Receiver, title: str, body: str, notify_type: str) -> tuple[bool, str]:
        """One message through Apprise; whether it went, and why not (redacted)."""
        try:
            result = r.notifier.notify(
                body=body, title=title, notify_type=notify_type, body_format="text", timeout=self.cfg.timeout_s
            )
        except Exception as exc:  # a plugin's bug must not take the delivery loop down
            return False, r.redact(f"{type(exc).__name__}: {exc}")[:300]
        if result:
            return True, ""
        said = [e.message for service in result for e in service.logs() if e.level in ("WARNING", "ERROR")]
        why = "; ".join(dict.fromkeys(said)) or f"Apprise status {getattr(result, 'status', 'failure')!s}"
        return False, r.redact(why)[:300]

    def _audit(
        self, event: dict[str, Any], r: Receiver, action: str, at: float, delivery: str, note: str
    ) -> dict[str, Any]:
        detail = {"sink": self.name, "receivers": [r.label], "channel": r.channel, "delivery": delivery,
                  "event": event.get("action"), "event_level": event["level"], "note": note}  # fmt: skip
        return {"incident_id": event["incident_id"], "at": at, "actor": self.name, "action": action, "detail": detail}

    # Summaries of held events

    def flush_held(self) -> int:
        """Send the summaries that are due (the delivery loop calls this after each pass); returns how many."""
        now = time.time()
        if now < self._next_flush:
            return 0
        self._next_flush = now + IDLE_CHECK_S
        if now - self._purged_at > 3600.0:
            self._purged_at = now
            self.store.receiver_purge(self.name, now - max(RETENTION_S, 2 * self.cfg.rate_limit.window_s))
        sent = 0
        limit = self.cfg.rate_limit
        for label in self.store.receivers_holding(self.name):
            r = self.by_label.get(label)
            if r is None:
                if label not in self._gone:
                    self._gone.add(label)
                    logger.warning("sink %s: events held for %s, which the config no longer has: not sent (they "
                                   "are forgotten after %.0f days)", self.name, label, RETENTION_S / 86400)  # fmt: skip
                continue
            retry_at, _backoff = self._summary_retry.get(label, (0.0, 0.0))
            count, last = self.store.receiver_window(self.name, label, now - limit.window_s)
            due = max(retry_at, now if count < limit.messages else last + limit.summary_every_s)
            if due > now:
                self._next_flush = min(self._next_flush, due)
                continue
            sent += self._summarise(r, now)
        return sent

    def _summarise(self, r: Receiver, now: float) -> int:
        token = f"summary.{uuid.uuid4().hex[:16]}.{self.name}"
        held = self.store.receiver_claim(self.name, r.label, token)
        if not held:
            return 0
        title, body, notify_type = self.writer.summary(r.label, held, self.cfg.rate_limit)
        ok, why = self._try(r, title, body, notify_type)
        at = time.time()
        if not ok:
            self.store.receiver_unclaim(self.name, token)
            _, backoff = self._summary_retry.get(r.label, (0.0, 0.0))
            backoff = min(self.cfg.backoff_max_s, backoff * 2 if backoff else self.cfg.backoff_s)
            self._summary_retry[r.label] = (at + backoff, backoff)
            self._next_flush = min(self._next_flush, at + backoff)
            metrics.NOTIFY_MESSAGES.labels(self.name, "failed").inc()
            logger.warning("sink %s: summary of %d held events to %s failed (retried in %.0f s): %s", self.name,
                           len(held), r.label, backoff, why)  # fmt: skip
            if backoff == self.cfg.backoff_s:  # the first failure of this summary: the incidents' trails say so
                note = f"{r.channel} summary to {r.label} failed (retried): {why}"
                self.store.receiver_audit(self._summary_audit(r, held, "notify_failed", at, token, note))
            return 0
        self._summary_retry.pop(r.label, None)
        note = f"{r.channel} summary of {len(held)} held events sent to {r.label}"
        audit = self._summary_audit(r, held, "notify_summarised", at, token, note)
        self.store.receiver_summarised(self.name, r.label, token, at, f"summary of {len(held)} events", audit)
        metrics.NOTIFY_MESSAGES.labels(self.name, "summary").inc()
        logger.info("sink %s: %s", self.name, note)
        return 1

    def _summary_audit(
        self, r: Receiver, held: list[HeldEvent], action: str, at: float, token: str, note: str
    ) -> list[dict[str, Any]]:
        """One audit line per incident a summary carries."""
        return [
            {"incident_id": iid, "at": at, "actor": self.name, "action": action,
             "detail": {"sink": self.name, "receivers": [r.label], "channel": r.channel, "delivery": token,
                        "events": sum(1 for h in held if h.incident_id == iid), "note": note}}
            for iid in dict.fromkeys(h.incident_id for h in held)
        ]  # fmt: skip

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for r in self.receivers:
            if r.redact in _APPRISE_LOG_FILTER.redactors:
                _APPRISE_LOG_FILTER.redactors.remove(r.redact)
