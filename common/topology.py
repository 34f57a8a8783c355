"""Typed model of `topology.yaml`, validated as a whole so a dangling reference never ships."""

from __future__ import annotations

import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Literal, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from common.errors import ConfigError
from common.pubsub_filter import MAX_FILTER_BYTES, parse_filter

TOPOLOGY_PATH = Path(__file__).with_name("topology.yaml")
INGEST_ATTRIBUTES = frozenset({"source", "event_id", "received_at", "traceparent", "content_type"})
"""Attributes the webhook function sets on every message it publishes."""
HEADER_PREFIX = "header."
"""Kept sender headers travel as attributes `header.<lower-case name>`."""
REPLAY_TO = "replay_to"
"""Set on a replayed message: only the subscription it names takes it, so replaying one
handler's dead letter never delivers the event to the other handlers again."""
INGEST_NEVER_SETS = frozenset({REPLAY_TO})
ALWAYS_KEPT_HEADERS = ("User-Agent",)
NEVER_KEPT_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "stripe-signature",
        "x-hub-signature", "x-hub-signature-256", "x-shopify-hmac-sha256", "webhook-signature",
        "svix-signature", "x-slack-signature", "x-twilio-signature",
    }
)  # fmt: skip
"""Headers that carry a signature or a credential: the event log never keeps them."""
DEFAULT_DEAD_LETTER_TOPIC = "events-dead-letter"
RESERVED_HANDLER_NAMES = frozenset({"event-log", "dead-letters"})
"""The worker's own routes: a handler by one of these names would never run."""

ResourceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


def _no_goog_prefix(name: str) -> str:
    if name.startswith("goog"):
        raise ValueError("Pub/Sub names must not start with 'goog'")
    return name


PubSubName = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9-]{2,62}$"), AfterValidator(_no_goog_prefix)
]
"""A topic or subscription: a resource name that also keeps Pub/Sub's rule (3 to 255
characters, a letter first, never `goog` first), so a topology that loads can be deployed."""
SignatureScheme = Literal[
    "standard-webhooks", "svix", "stripe", "github", "shopify", "slack", "twilio", "hmac"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Topic(_Model):
    name: PubSubName


class RetryPolicy(_Model):
    minimum_backoff_s: float = Field(default=10, ge=0, le=600)
    maximum_backoff_s: float = Field(default=600, ge=0, le=600)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.minimum_backoff_s > self.maximum_backoff_s:
            raise ValueError("minimum_backoff_s exceeds maximum_backoff_s")
        return self


def _zero_means_default_attempts(value: object) -> object:
    """Pub/Sub reads `max_delivery_attempts: 0` as its default, 5."""
    return 5 if type(value) is int and value == 0 else value


class DeadLetterPolicy(_Model):
    dead_letter_topic: PubSubName
    max_delivery_attempts: Annotated[
        int, BeforeValidator(_zero_means_default_attempts), Field(ge=5, le=100)
    ] = 5


class Subscription(_Model):
    name: PubSubName
    topic: PubSubName
    push_path: str = Field(pattern=r"^/[A-Za-z0-9/_-]+$")
    ack_deadline_seconds: int = Field(default=10, ge=10, le=600)
    retry_policy: RetryPolicy | None = None
    dead_letter_policy: DeadLetterPolicy | None = None
    enable_message_ordering: bool = False
    filter: str = ""

    @field_validator("filter")
    @classmethod
    def _filter_parses(cls, value: str) -> str:
        """Refused at load time, as Pub/Sub refuses it at creation: it can never be edited."""
        parse_filter(value)
        return value


RETAINED_SUFFIX = "-retained"
WEEK_S = 7 * 24 * 3600


class PullSubscription(_Model):
    """A subscription Hookyard itself never reads: a consumer's (build requests for CI), or
    the copy every dead-letter topic keeps for a week so nothing is lost while the sink is
    down. Terraform creates them; the local broker, which has no Pull API, does not."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{2,254}$"), AfterValidator(_no_goog_prefix)]
    """Pub/Sub's own limit (255): no route or URL carries it, and `{topic}-retained` fits."""
    topic: PubSubName
    ack_deadline_seconds: int = Field(default=60, ge=10, le=600)
    message_retention_s: int = Field(default=WEEK_S, ge=600, le=WEEK_S)
    description: str = ""


QueueName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


class RateLimits(_Model):
    """Cloud Tasks `rate_limits`; `max_burst_size` is output-only there, a setting here."""

    max_dispatches_per_second: float = Field(default=500, gt=0, le=500)
    max_concurrent_dispatches: int = Field(default=1000, ge=1, le=5000)
    max_burst_size: int | None = Field(
        default=None, ge=1, le=500, description="token bucket size; default: the rate, 1..100"
    )

    @property
    def burst(self) -> int:
        if self.max_burst_size is not None:
            return self.max_burst_size
        return max(1, min(100, int(self.max_dispatches_per_second)))


class TaskRetryConfig(_Model):
    """Cloud Tasks `retry_config` (see reference/gcp.md 2.3), durations in seconds."""

    max_attempts: int = Field(default=100, ge=-1, description="-1 = unlimited; counts attempt 1")
    max_retry_duration_s: float = Field(default=0, ge=0, description="0 = unlimited")
    min_backoff_s: float = Field(default=0.1, ge=0)
    max_backoff_s: float = Field(default=3600, ge=0)
    max_doublings: int = Field(default=16, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min_backoff_s > self.max_backoff_s:
            raise ValueError("min_backoff_s exceeds max_backoff_s")
        if self.max_attempts == 0:
            raise ValueError("max_attempts must be -1 (unlimited) or at least 1")
        return self


class Queue(_Model):
    """A Cloud Tasks queue whose HTTP tasks target `POST /tasks/{name}` on the worker."""

    name: QueueName
    rate_limits: RateLimits = RateLimits()
    retry_config: TaskRetryConfig = TaskRetryConfig()
    dispatch_deadline_s: int = Field(default=600, ge=15, le=1800)

    @property
    def push_path(self) -> str:
        return f"/tasks/{self.name}"


class SchedulerRetryConfig(_Model):
    """Cloud Scheduler `retry_config` (reference/gcp.md 3), durations in seconds."""

    retry_count: int = Field(default=0, ge=0, le=5)
    max_retry_duration_s: float = Field(default=0, ge=0)
    min_backoff_s: float = Field(default=5, ge=0)
    max_backoff_s: float = Field(default=3600, ge=0)
    max_doublings: int = Field(default=5, ge=0)


class Job(_Model):
    """A Cloud Scheduler job: at each tick it POSTs `/cron/{name}` on the cron function,
    which enqueues the named task `{name}-{schedule time}` on queue `jobs`."""

    name: ResourceName
    schedule: str = Field(description="unix-cron, five fields")
    time_zone: str = "Etc/UTC"
    description: str = ""
    retry_config: SchedulerRetryConfig = SchedulerRetryConfig()
    attempt_deadline_s: int = Field(default=180, ge=15, le=1800)

    @field_validator("schedule")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a five-field unix-cron expression: {value!r}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class FieldRef(_Model):
    """Where a value lives in a request: a header, a JSON pointer, or a form field."""

    header: str | None = None
    json_pointer: str | None = Field(default=None, pattern=r"^(/[^/]*)+$")
    form_field: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if sum(v is not None for v in (self.header, self.json_pointer, self.form_field)) != 1:
            raise ValueError("give exactly one of header, json_pointer or form_field")
        return self

    def describe(self) -> str:
        if self.header:
            return f"header {self.header}"
        if self.form_field:
            return f"form field {self.form_field}"
        return f"JSON field {self.json_pointer}"


def _as_list(value: object) -> object:
    return [value] if isinstance(value, dict) else value


FieldRefs = Annotated[list[FieldRef], BeforeValidator(_as_list)]
"""One reference or a list of them; the first one present in a request wins."""


class HmacConfig(_Model):
    """The generic `hmac` scheme's settings (see the signature reference, section 10)."""

    header: str
    algorithm: Literal["sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None


MediaType = Literal["application/json", "application/x-www-form-urlencoded"]


HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")]


class Source(_Model):
    name: ResourceName
    scheme: SignatureScheme
    secret: ResourceName
    event_id: FieldRefs = Field(min_length=1)
    event_id_qualifiers: FieldRefs = Field(
        default=[], description="values appended to the id with ':' when present"
    )
    event_type: FieldRefs = []
    topic: PubSubName
    content_types: list[MediaType] = Field(default=["application/json"], min_length=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=10 * 1024 * 1024)
    tolerance_s: int = Field(default=300, ge=1, le=86400)
    ordering_key: FieldRef | None = None
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="the URL the sender calls, where it signs the URL (Twilio) behind a proxy",
    )
    hmac: HmacConfig | None = None
    response: Literal["json", "twiml"] = "json"
    keep_headers: list[HeaderName] = Field(
        default=[],
        description="sender headers the event log keeps, besides User-Agent and the id/type ones",
    )
    retention_days: int = Field(
        default=30, ge=1, le=3650, description="days the event log keeps the payload"
    )

    @model_validator(mode="after")
    def _hmac_only_for_hmac(self) -> Self:
        if (self.scheme == "hmac") != (self.hmac is not None):
            raise ValueError(f"source {self.name}: `hmac` settings go with scheme hmac only")
        return self

    @model_validator(mode="after")
    def _keeps_no_secret(self) -> Self:
        refused = set(NEVER_KEPT_HEADERS)
        if self.hmac is not None:
            refused.add(self.hmac.header.lower())
        for name in self.keep_headers:
            if name.lower() in refused:
                raise ValueError(
                    f"source {self.name}: keep_headers may not keep {name}, "
                    "which carries a signature or credential"
                )
        return self

    @cached_property
    def kept_headers(self) -> tuple[str, ...]:
        """Lower-case names, in order, without duplicates (read on every ingest: kept)."""
        named = [*ALWAYS_KEPT_HEADERS, *self.keep_headers]
        named += [ref.header for ref in (*self.event_id, *self.event_type) if ref.header]
        return tuple(dict.fromkeys(name.lower() for name in named))


EventTypePattern = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.:/-]{1,200}\*?)$")]
"""An event type, or a prefix ending in `*` (`charge.dispute.*`), or `*` for every type: the
shapes a Pub/Sub filter can express (`=` and `hasPrefix`)."""


_MODULE_PATH = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"


class Handler(_Model):
    """Business code for some sources' events. Each handler gets a subscription of its own
    (same name, push path `/pubsub/{name}`), so it has its own inbox key, retries and dead
    letters: one failing handler never blocks or re-runs another."""

    name: PubSubName
    module: str = Field(pattern=_MODULE_PATH, description='"package.module:function"')
    events: dict[ResourceName, list[EventTypePattern]] = Field(min_length=1)
    description: str = ""
    ack_deadline_seconds: int = Field(default=30, ge=10, le=600)
    retry_policy: RetryPolicy = RetryPolicy(minimum_backoff_s=10, maximum_backoff_s=600)
    dead_letter_policy: DeadLetterPolicy = DeadLetterPolicy(
        dead_letter_topic=DEFAULT_DEAD_LETTER_TOPIC, max_delivery_attempts=5
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_HANDLER_NAMES:
            raise ValueError(f"{value} is reserved for the worker's own route")
        return value

    @field_validator("events")
    @classmethod
    def _types_given(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for source, patterns in value.items():
            if not patterns:
                raise ValueError(f'source {source}: list its event types, or ["*"] for all')
        return value

    def takes(self, source: str, event_type: str | None) -> bool:
        """The handler's own check: its subscription's filter is configuration, and a filter
        too long for Pub/Sub names the sources only."""
        patterns = self.events.get(source)
        if patterns is None:
            return False
        return any(_type_matches(p, event_type) for p in patterns)

    def subscription(self, topic: str) -> dict[str, object]:
        return {
            "name": self.name,
            "topic": topic,
            "push_path": f"/pubsub/{self.name}",
            "ack_deadline_seconds": self.ack_deadline_seconds,
            "retry_policy": self.retry_policy,
            "dead_letter_policy": self.dead_letter_policy,
            "filter": handler_filter(self.name, self.events),
        }


def _type_matches(pattern: str, event_type: str | None) -> bool:
    if pattern == "*":
        return True
    if event_type is None:
        return False
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def handler_filter(name: str, events: dict[str, list[str]]) -> str:
    """Pub/Sub's filter for a handler's subscription: its sources and types, and replays
    addressed to it. Over Pub/Sub's 256 bytes, the types are left to `Handler.takes`.
    Sources go in name order, as Terraform's `for` over a map does: both write one string."""
    replays = f'(NOT attributes:{REPLAY_TO} OR attributes.{REPLAY_TO} = "{name}")'
    for with_types in (True, False):
        clauses = []
        for source, patterns in sorted(events.items()):
            clause = f'attributes.source = "{source}"'
            if with_types and "*" not in patterns:
                types = [
                    f'hasPrefix(attributes.event_type, "{p[:-1]}")'
                    if p.endswith("*")
                    else f'attributes.event_type = "{p}"'
                    for p in patterns
                ]
                either = types[0] if len(types) == 1 else f"({' OR '.join(types)})"
                clause = f"{clause} AND {either}"
            clauses.append(clause)
        sources = clauses[0] if len(clauses) == 1 else " OR ".join(f"({c})" for c in clauses)
        text = f"({sources}) AND {replays}"
        if len(text.encode()) <= MAX_FILTER_BYTES:
            return text
    raise ValueError(f"handler {name}: too many sources for one Pub/Sub filter")


class Topology(_Model):
    topics: list[Topic]
    subscriptions: list[Subscription] = Field(
        default=[], description="as declared, then one per handler (derived on load)"
    )
    pull_subscriptions: list[PullSubscription] = Field(
        default=[],
        description="as declared, then `{topic}-retained` for each dead-letter topic without one",
    )
    sources: list[Source] = []
    handler_defaults: dict[str, object] = Field(
        default={}, description="settings every handler takes unless it gives its own"
    )
    handlers: list[Handler] = []
    queues: list[Queue] = []
    jobs: list[Job] = []
    secrets: list[ResourceName] = []

    @model_validator(mode="before")
    @classmethod
    def _handler_subscriptions(cls, data: object) -> object:
        """Each handler's subscription joins the declared ones, so the broker, Terraform's
        consistency test, replays and stats see one list."""
        if not isinstance(data, dict) or not data.get("handlers"):
            return data
        topics = {_field(s, "name"): _field(s, "topic") for s in data.get("sources") or []}
        defaults = data.get("handler_defaults") or {}
        if not isinstance(defaults, dict):
            raise ValueError("handler_defaults must be a mapping")
        declared = {_field(s, "name"): s for s in data.get("subscriptions") or []}
        handlers, derived = [], []
        for raw in data["handlers"]:
            if isinstance(raw, Handler):
                handler = raw
            else:
                if not isinstance(raw, dict):
                    raise ValueError("each handler is a mapping")
                handler = Handler.model_validate({**defaults, **raw})
            handlers.append(handler)
            used = {topics.get(source) for source in handler.events}
            if None in used:
                unknown = sorted(s for s in handler.events if topics.get(s) is None)
                raise ValueError(f"handler {handler.name}: unknown source {', '.join(unknown)}")
            if len(used) != 1:
                raise ValueError(f"handler {handler.name}: its sources publish to several topics")
            if handler.name not in declared:
                derived.append(handler.subscription(str(used.pop())))
            elif _field(declared[handler.name], "push_path") != f"/pubsub/{handler.name}":
                # Declared (or dumped and loaded again) it wins, if it reaches the handler.
                raise ValueError(
                    f"subscription {handler.name} has a handler's name: its push_path must be "
                    f"/pubsub/{handler.name}"
                )
        subscriptions = [*(data.get("subscriptions") or []), *derived]
        return {**data, "handlers": handlers, "subscriptions": subscriptions}

    @model_validator(mode="after")
    def _dead_letters_retained(self) -> Self:
        """Every dead-letter topic keeps a week of its messages in a pull subscription of its
        own, derived here so Terraform and the consistency test read one list."""
        covered = {p.topic for p in self.pull_subscriptions}
        dead_letter_topics = dict.fromkeys(
            s.dead_letter_policy.dead_letter_topic
            for s in self.subscriptions
            if s.dead_letter_policy is not None
        )
        retained = [
            PullSubscription(
                name=f"{topic}{RETAINED_SUFFIX}",
                topic=topic,
                description="a week of dead letters, kept while the sink is down",
            )
            for topic in dead_letter_topics
            if topic not in covered
        ]
        if retained:
            object.__setattr__(self, "pull_subscriptions", [*self.pull_subscriptions, *retained])
        return self

    @model_validator(mode="after")
    def _references_resolve(self) -> Self:
        topics = {t.name for t in self.topics}
        _unique("topic", [t.name for t in self.topics])
        _unique(
            "subscription",
            [s.name for s in self.subscriptions] + [p.name for p in self.pull_subscriptions],
        )
        _unique("source", [s.name for s in self.sources])
        _unique("queue", [q.name for q in self.queues])
        _unique("job", [j.name for j in self.jobs])
        if self.jobs and self.queue("jobs") is None:
            raise ValueError("scheduler jobs need a queue named jobs")
        _unique("push_path", [s.push_path for s in self.subscriptions])
        for sub in self.subscriptions:
            if sub.topic not in topics:
                raise ValueError(f"subscription {sub.name}: unknown topic {sub.topic}")
            dlp = sub.dead_letter_policy
            if dlp and dlp.dead_letter_topic not in topics:
                raise ValueError(f"subscription {sub.name}: unknown dead-letter topic")
            if dlp and dlp.dead_letter_topic == sub.topic:
                raise ValueError(f"subscription {sub.name}: dead-letters into its own topic")
        for pull in self.pull_subscriptions:
            if pull.topic not in topics:
                raise ValueError(f"pull subscription {pull.name}: unknown topic {pull.topic}")
        for src in self.sources:
            if src.topic not in topics:
                raise ValueError(f"source {src.name}: unknown topic {src.topic}")
            if not self.always_delivered(src):
                raise ValueError(
                    f"source {src.name}: some of its events on topic {src.topic} would match "
                    "no subscription, and Pub/Sub drops those after answering 202; give the "
                    "topic a subscription without a filter (like event-log), or one whose "
                    f'filter takes every attributes.source = "{src.name}"'
                )
        return self

    def always_delivered(self, source: Source) -> bool:
        """Whether one subscription of the source's topic takes every event it publishes."""
        known = {"source": source.name}
        return any(
            parse_filter(sub.filter).always_matches(known, INGEST_ATTRIBUTES, INGEST_NEVER_SETS)
            for sub in self.subscriptions_of(source.topic)
        )

    def topic(self, name: str) -> Topic | None:
        return next((t for t in self.topics if t.name == name), None)

    def subscription(self, name: str) -> Subscription | None:
        return next((s for s in self.subscriptions if s.name == name), None)

    def subscriptions_of(self, topic: str) -> list[Subscription]:
        return [s for s in self.subscriptions if s.topic == topic]

    def source(self, name: str) -> Source | None:
        return next((s for s in self.sources if s.name == name), None)

    def handler(self, name: str) -> Handler | None:
        return next((h for h in self.handlers if h.name == name), None)

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def job(self, name: str) -> Job | None:
        return next((j for j in self.jobs if j.name == name), None)

    def all_secret_names(self) -> list[str]:
        return sorted({*self.secrets, *(s.secret for s in self.sources)})


def _field(item: object, name: str) -> object:
    """A field of a raw mapping or of a model, before validation has made them one."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {kind} {name!r}")
        seen.add(name)


class _TerraformReadsIt(yaml.SafeLoader):
    """YAML as Terraform's yamldecode reads it too: there a plain `y`, `n` (any case) is a
    boolean, as in YAML 1.1, where PyYAML reads a string. Read as a boolean here, such a
    name or event type is refused (it must be quoted), instead of meaning "y" to the code
    and `true` to Terraform."""


_TerraformReadsIt.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)
_TerraformReadsIt.add_constructor(
    "tag:yaml.org,2002:bool",
    lambda loader, node: (
        str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
        in {"y", "yes", "true", "on"}
    ),
)


def load_topology(path: Path = TOPOLOGY_PATH) -> Topology:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_TerraformReadsIt)  # noqa: S506
        return Topology.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"invalid topology {path}: {exc}") from exc


@lru_cache(maxsize=1)
def get_topology() -> Topology:
    return load_topology()
