"""Config of the people-facing sink: Apprise URLs (SMS gateways, e-mail, chat) per receiver of the routing,
with a rate limit per receiver (``engine.dispatch.apprise_sink``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from engine.core.levels import LevelName

RECEIVER_KINDS = ("grid", "town", "district", "city", "contact")
MAX_LABEL = 200  # receiver_messages.receiver is VARCHAR(200): PostgreSQL refuses a longer one


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NotifyRateLimit(_Strict):
    """How many messages one receiver gets; beyond it events are held and sent as one summary.

    A burst of incidents (a storm over a district) must not send a phone a hundred SMS: each receiver gets at
    most ``messages`` within ``window_s``; what comes beyond is held (the incident's audit trail says so) and
    goes out as one summary message, at most every ``summary_every_s``, or as soon as the window has room.
    """

    messages: int = Field(5, ge=1, description="Messages one receiver gets within `window_s` before events are held.")
    window_s: float = Field(600.0, gt=0, description="The window the messages are counted over (seconds).")
    summary_every_s: float = Field(
        300.0, gt=0, description="While events are held, one summary of them goes out at most this often (seconds)."
    )


class AppriseReceiverConfig(_Strict):
    """One person or group reached through one Apprise URL (an SMS gateway, a mailbox, a chat)."""

    to: str = Field(
        description="Whom this is, as the routing names receivers: `grid:<grid>`, `town:<town>`, "
        "`district:<district>`, `city:<city>` (`town:*`: every town), or `contact:<name>` for a plan's contact "
        "(`plans[].contacts`, reached by one-key dispatch)."
    )
    name: str | None = Field(
        None,
        description="Name in the audit trail and the rate limit (unique in the sink); defaults to `to`. Give one "
        "when several URLs serve one receiver (e-mail and chat).",
    )
    url: str | None = Field(
        None,
        description="The Apprise URL (https://github.com/caronc/apprise/wiki), e.g. mailto://, json://, tgram://, "
        "dingtalk://; it holds keys: use ${ENV_VAR}, never a literal. It is never logged.",
        repr=False,
    )
    url_file: str | None = Field(None, description="Read the URL from this file (a Docker or systemd secret) instead.")
    min_level: LevelName = Field("blue", description="Only events of incidents at this level or above reach it.")

    @model_validator(mode="after")
    def _check(self) -> AppriseReceiverConfig:
        kind, sep, unit = self.to.partition(":")
        if not sep or kind not in RECEIVER_KINDS or not unit:
            raise ValueError(
                f"`to` must be <tier>:<name> with tier one of {', '.join(RECEIVER_KINDS)} (e.g. town:Nanshan, "
                f"town:*, contact:Geotech team); got {self.to[:80]!r}"
            )
        if len(self.to) > MAX_LABEL or (self.name is not None and len(self.name) > MAX_LABEL):
            raise ValueError(f"`to` and `name` are at most {MAX_LABEL} characters (the store's receiver column); got "
                             f"{max(len(self.to), len(self.name or ''))}")  # fmt: skip
        if (self.url is None) == (self.url_file is None):
            raise ValueError(f"receiver {self.label}: give `url` (from ${{ENV_VAR}}) or `url_file`, one of them")
        if self.url_file is not None and not Path(self.url_file).is_file():
            raise ValueError(f"receiver {self.label}: url_file: no file {self.url_file}")
        if self.url is not None and "://" not in self.url:  # the value itself is never repeated: it is a secret
            raise ValueError(f"receiver {self.label}: `url` is not an Apprise URL (<scheme>://…)")
        return self

    @property
    def label(self) -> str:
        """The receiver's name in the trail, the rate limit and every message about it."""
        return self.name or self.to

    def secret_url(self) -> str:
        """The URL, from the config (its environment) or from ``url_file``."""
        if self.url_file is not None:
            return Path(self.url_file).read_text(encoding="utf-8").strip()
        return self.url or ""


class AppriseSinkConfig(_Strict):
    """Incident events to people through Apprise: SMS, e-mail and chat, one URL per receiver of the routing."""

    type: Literal["apprise"] = Field("apprise", description="Sink kind (needs the `notify` extra).")
    name: str | None = Field(None, description="Name in the outbox and metrics; defaults to the type.")
    public_url: str | None = Field(
        None,
        description="Where people open the operator page (e.g. https://gridwatch.example.org): each message links "
        "to `<public_url>/#incident=<id>`. Unset: messages carry the incident id only.",
    )
    receivers: list[AppriseReceiverConfig] = Field(
        default_factory=list, description="Who is reached, and through which URL (and those of `receivers_file`)."
    )
    receivers_file: str | None = Field(
        None,
        description="A CSV of receivers, relative to the config file (columns `to,name,url,min_level`; `name` and "
        "`min_level` may be empty): a city's directory of grid workers and duty officers. It holds the URLs: mount "
        "it as a secret. An error names its line and column, never a URL.",
    )
    rate_limit: NotifyRateLimit = Field(
        default_factory=NotifyRateLimit, description="Messages per receiver; beyond it, held and summarised."
    )
    timeout_s: float = Field(15.0, gt=0, description="Give up on one message after this long.")
    backoff_s: float = Field(2.0, gt=0, description="First retry delay of a failed message; doubles each time.")
    backoff_max_s: float = Field(300.0, gt=0, description="Longest retry delay.")
    max_attempts: int = Field(
        0, ge=0, description="Give up on an event after this many attempts (0: never; the incident's news waits)."
    )
    hold_after_failures: int = Field(
        3,
        ge=0,
        description="After this many failed attempts at one event, a receiver's message is held for its next "
        "summary (sent once it answers again), so that one receiver's outage does not hold back the incident's "
        "later news to the others (0: retry it in order for ever).",
    )

    @model_validator(mode="before")
    @classmethod
    def _load_receivers_file(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("receivers_file"), str):
            return data
        path = Path((info.context or {}).get("base_dir", ".")) / data["receivers_file"]
        given = data.get("receivers") or []
        if not isinstance(given, list):
            return data  # the field's own validation says what is wrong
        return {**data, "receivers": [*given, *read_receivers(path)]}

    @model_validator(mode="after")
    def _unique(self) -> AppriseSinkConfig:
        if not self.receivers:
            raise ValueError("no receivers: give `receivers`, or a `receivers_file` with at least one row")
        labels = [r.label for r in self.receivers]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"receivers share a name: {dupes}; give each URL of one receiver its own `name`")
        if self.public_url is not None and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url: use the page's http:// or https:// address")
        return self


def read_receivers(path: Path) -> list[dict[str, str]]:
    """The rows of a receivers file, each checked here so that an error names the file, the line and the column
    (never the value: the URL holds keys)."""
    if not path.is_file():
        raise ValueError(f"receivers_file: no file {path}")
    out = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            fields = {k: (v or "").strip() for k, v in row.items() if k is not None}
            fields = {k: v for k, v in fields.items() if v or k in ("to", "url")}
            try:
                AppriseReceiverConfig.model_validate(fields)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "row"
                msg = first["msg"].removeprefix("Value error, ")
                raise ValueError(f"{path}:{reader.line_num}: {where}: {msg}") from None
            out.append(fields)
    return out
