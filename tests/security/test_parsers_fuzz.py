"""Bounded fuzzing of every parser that sees untrusted bytes: each returns a value or raises the
project's typed 4xx problem (a worker's task body: a `PermanentError`, its dead letter), and
never anything else: an exception of another type is a 5xx, or a retry loop, waiting to happen.

Pure parsers are called as functions. Where parsing sits inside an entry point (the admin
API's routes, the task and push endpoints, the scheduler's), the entry point itself is called
with a request built in memory and a database that stops the call at its first use
(`ReachedTheDatabase`): everything before it, which is all the parsing, runs for real.

Inputs mix arbitrary bytes, non-UTF-8, JSON nested thousands deep, numbers of thousands of
digits, every code point (lone surrogates, NUL, BOMs, noncharacters) and mutations of valid
documents. Runs are reproducible (`derandomize`) and bounded in examples; the suite's timeout
bounds them in time, which is also what would catch a hang.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import pytest
from flask import Request, Response
from google.auth import jwt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from common import bounded_json
from common.db.event_search import where
from common.envelope import parse_envelope
from common.errors import PermanentError, Problem
from common.job_tasks import parse_job_task
from common.oidc import Caller, CertificateCache, OidcVerifier
from common.service_identity import load_local_signer
from common.signatures import SCHEMES, HmacOptions, SignedRequest, verifier_for
from common.storable import text_problem
from common.topology import get_topology
from common.webhook_body import FORM, JSON, event_id, first_present, lookup, parse_body
from functions.admin import AccountIn, Admin
from functions.cron import CronIngest, parse_schedule_time
from functions.event_operations import EventOperations, strict_query
from functions.operations import parse_json
from functions.webhooks import kept_headers
from hookyard.local_identity import ensure_signing_key
from workers.jobs import parse_statement_task
from workers.notifications import Notifier
from workers.push import Worker
from workers.replay import ReplayRunner
from workers.tasks import TaskWorker

T = TypeVar("T")

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TOPOLOGY = get_topology()
ADMIN_TOKEN = "fuzz-admin-token"
# What the fuzzing found, kept as explicit examples so that each stays checked whatever the
# generated cases become (each was a fix of its own).
DEEP_JSON = b'{"a":' * 2000 + b"1" + b"}" * 2000
UTF16_NUL = '["\\u0000"]'.encode("utf-16")
PUSH_NOT_ASCII = b'{"message": {"messageId": "1", "data": "\\u0080"}}'
DEEP_JWT = "Bearer " + base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode() + ".e30.c2ln"


class ReachedTheDatabase(BaseException):
    """Raised by the stand-in database: the input parsed and the call went on to use it.
    A BaseException, so no `except Exception` on the way can take it for a failure."""


class _NoDatabase:
    def __getattr__(self, name: str) -> Any:
        raise ReachedTheDatabase(name)


def _no_database() -> Any:
    raise ReachedTheDatabase("engine")


class _Admitted:
    """The caller verification passed: what follows it is what is under test."""

    def verify(self, request: Request) -> Caller:
        return Caller("fuzz@hookyard.local", {})


class _AdminToken:
    def values(self, name: str) -> tuple[str, ...]:
        return (ADMIN_TOKEN,) if name == "admin-token" else ()


def parses_or_refuses(parse: Callable[[], T]) -> T | Problem | None:
    """The property: a value, or a typed 4xx problem; anything else escapes and fails."""
    try:
        return parse()
    except ReachedTheDatabase:
        return None
    except Problem as problem:
        refused = problem
    assert 400 <= refused.status < 500, (refused.status, refused.detail)
    return refused


def answers_4xx_or_reaches_the_database(handle: Callable[[], Response]) -> None:
    try:
        response = handle()
    except ReachedTheDatabase:
        return
    assert response.status_code < 500, response.get_data(as_text=True)[:300]


# -- inputs --------------------------------------------------------------------------------

EVERY_CODE_POINT = st.characters(exclude_categories=())  # lone surrogates included
wild_text = st.text(EVERY_CODE_POINT, max_size=40)
# What a WSGI server hands over for a header or a raw path: bytes, decoded as latin-1 (no
# line breaks: those end a header before any parser sees it).
latin1_text = st.text(
    st.characters(max_codepoint=0xFF, exclude_categories=(), exclude_characters="\r\n"),
    max_size=80,
)
numbers = st.one_of(
    st.integers(), st.integers(min_value=-(10**40), max_value=10**40), st.floats()
)  # NaN and infinities included: json.dumps writes them, json.loads takes them back
scalars = st.one_of(st.none(), st.booleans(), numbers, wild_text)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(wild_text, inner, max_size=4),
    max_leaves=12,
)
ENCODINGS = ("utf-8", "utf-8", "utf-8", "utf-16", "utf-16-be", "utf-32")


def _encoded(document: Any, ascii_only: bool, encoding: str) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")


encoded_documents = st.builds(_encoded, documents, st.booleans(), st.sampled_from(ENCODINGS))


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    # Either side of the bound (64) and of the interpreter's recursion limit (1,000).
    depth = draw(st.one_of(st.sampled_from([63, 64, 65, 999, 1001, 3000]), st.integers(1, 5000)))
    opener, closer = draw(
        st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"k":[', b"]}"), (b" [\n", b" ]")])
    )
    inner = draw(st.sampled_from([b"1", b'"x"', b"", b'"\\ud800"', b'"[[[["', b"9" * 30]))
    return opener * depth + inner + (closer * depth if draw(st.booleans()) else b"")


@st.composite
def huge_numbers(draw: st.DrawFn) -> bytes:
    digits = b"9" * draw(st.integers(1, 6000))
    sign = draw(st.sampled_from([b"", b"-"]))
    exponent = draw(st.sampled_from([b"", b"e999", b"E-99999", b".5e+400"]))
    number = sign + digits + exponent
    fields = b'{"outbox_id": %s, "replay_id": %s, "seq": 1, "deliveryAttempt": %s}'
    return draw(
        st.sampled_from(
            [number, b'{"id": %s}' % number, b"[%s]" % number, fields % ((number,) * 3)]
        )
    )


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(encoded_documents))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        raw[at : at + draw(st.integers(0, 3))] = draw(st.binary(max_size=4))
    return bytes(raw)


untrusted_bytes = st.one_of(
    st.binary(max_size=512), encoded_documents, nested(), huge_numbers(), mutated()
)


def _request(
    path: str = "/",
    *,
    method: str = "POST",
    body: bytes = b"",
    headers: Headers | dict[str, str] | None = None,
    query: bytes = b"",
) -> Request:
    """A request as a WSGI server hands it over: path and query as latin-1 text of the bytes."""
    environ = EnvironBuilder(method=method, data=body, headers=headers).get_environ()
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query.decode("latin-1")
    return Request(environ)


# -- signatures ----------------------------------------------------------------------------

SIGNATURE_HEADERS = [
    "Stripe-Signature", "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id",
    "svix-timestamp", "svix-signature", "X-Hub-Signature-256", "X-Shopify-Hmac-Sha256",
    "X-Slack-Signature", "X-Slack-Request-Timestamp", "X-Twilio-Signature", "X-Signature",
    "X-Timestamp", "Content-Type",
]  # fmt: skip
_key_values = st.tuples(
    st.sampled_from(["t", "v1", "v0", "v1a", "sha256", "v0=", ""]),
    st.one_of(
        st.from_regex(r"[0-9]{0,40}", fullmatch=True),
        st.binary(max_size=70).map(bytes.hex),
        st.binary(max_size=70).map(lambda raw: base64.b64encode(raw).decode()),
        latin1_text,
    ),
).map("=".join)
signature_values = st.one_of(
    latin1_text,
    st.lists(_key_values, max_size=6).flatmap(
        lambda items: st.sampled_from([",", " ", ";", ", "]).map(lambda sep: sep.join(items))
    ),
    st.binary(max_size=70).map(lambda raw: "sha256=" + raw.hex()),
    st.binary(max_size=70).map(lambda raw: "v1," + base64.b64encode(raw).decode()),
    st.integers(min_value=-(10**20), max_value=10**40).map(str),
)
signature_headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(SIGNATURE_HEADERS), latin1_text), signature_values),
    max_size=8,
)
secrets = st.lists(
    st.one_of(
        st.sampled_from(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "12345", " "]),
        st.text(max_size=40),
    ),
    max_size=3,
)
GENERIC = HmacOptions(header="X-Signature", prefix="sha256=", timestamp_header="X-Timestamp")


@st.composite
def request_urls(draw: st.DrawFn) -> str:
    """The URL werkzeug reconstructs from a hostile Host header, path and query (Twilio
    signs it)."""
    environ = {
        "REQUEST_METHOD": "POST", "wsgi.url_scheme": draw(st.sampled_from(["http", "https"])),
        "HTTP_HOST": draw(latin1_text), "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SCRIPT_NAME": "", "PATH_INFO": "/webhooks/" + draw(latin1_text),
        "QUERY_STRING": draw(latin1_text),
    }  # fmt: skip
    return str(Request(environ).url)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
@FUZZ
@given(
    headers=signature_headers,
    body=untrusted_bytes,
    secrets=secrets,
    now=st.integers(0, 2**40),
    url=request_urls(),
    content_type=st.one_of(st.none(), st.sampled_from([JSON, FORM]), latin1_text),
)
@example(headers=[], body=b"{}", secrets=["\x80"], now=0, url="http://h/", content_type=None)
def test_signature_headers_verify_or_refuse(
    scheme: str,
    headers: list[tuple[str, str]],
    body: bytes,
    secrets: list[str],
    now: int,
    url: str,
    content_type: str | None,
) -> None:
    verifier = verifier_for(scheme, hmac=GENERIC if scheme == "hmac" else None)
    request = SignedRequest(headers=headers, body=body, url=url, content_type=content_type)
    parses_or_refuses(lambda: verifier.verify(request, secrets, now))


# -- bearer tokens -------------------------------------------------------------------------

ISSUER = "https://issuer.example"
AUDIENCE = "https://worker.example"
CALLER = "caller@hookyard.local"


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> tuple[OidcVerifier, Any]:
    """A verifier whose certificates come from memory, and the key that signs for it."""
    keys = tmp_path_factory.mktemp("issuer")
    ensure_signing_key(keys)
    signer, certs = load_local_signer(keys)
    cache = CertificateCache("memory:", fetch=lambda url: (certs, None))
    return OidcVerifier(cache, {ISSUER}, AUDIENCE, {CALLER}), signer


def _segment(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


segments = st.one_of(
    untrusted_bytes.map(_segment),
    st.text(st.sampled_from("ABCxyz019-_=.+/ "), max_size=12),
    st.just(_segment(b'{"alg":"RS256","kid":"k"}')),
)
claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.one_of(st.just(ISSUER), documents),
        "aud": st.one_of(st.just(AUDIENCE), documents),
        "email": st.one_of(st.just(CALLER), documents), "email_verified": documents,
        "iat": st.one_of(numbers, documents), "exp": st.one_of(numbers, documents),
    },
)  # fmt: skip


@FUZZ
@given(
    authorization=st.one_of(
        latin1_text,
        st.tuples(segments, segments, segments).map(lambda parts: "Bearer " + ".".join(parts)),
        st.lists(segments, max_size=4).map(lambda parts: "Bearer " + ".".join(parts)),
    ),
    signed_claims=st.one_of(st.none(), claims),
)
@example(authorization=DEEP_JWT, signed_claims=None)
def test_bearer_tokens_verify_or_refuse(
    issuer: tuple[OidcVerifier, Any], authorization: str, signed_claims: dict[str, Any] | None
) -> None:
    """Garbage of every shape, and tokens properly signed over claims of every shape."""
    verifier, signer = issuer
    if signed_claims is not None:
        token = jwt.encode(signer, signed_claims).decode()  # type: ignore[no-untyped-call]
        authorization = f"Bearer {token}"
    request = _request("/pubsub/ledger", headers={"Authorization": authorization})
    parses_or_refuses(lambda: verifier.verify(request))


# -- webhook bodies ------------------------------------------------------------------------

form_bodies = st.one_of(
    st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=6).map(
        lambda pairs: b"&".join(
            quote_from_bytes(k).encode() + b"=" + quote_from_bytes(v).encode() for k, v in pairs
        )
    ),
    st.builds(lambda doc: b"payload=" + quote_from_bytes(doc).encode(), untrusted_bytes),
    untrusted_bytes,
)
sender_headers = st.dictionaries(
    st.sampled_from(
        ["webhook-id", "X-GitHub-Delivery", "X-GitHub-Event", "X-Shopify-Webhook-Id",
         "X-Shopify-Topic", "User-Agent", "X-Slack-Retry-Num", "X-GitHub-Hook-ID"]
    ),
    latin1_text,
)  # fmt: skip


@pytest.mark.parametrize("source", [s.name for s in TOPOLOGY.sources])
@FUZZ
@given(
    media_index=st.integers(0, 1), json_body=untrusted_bytes, form_body=form_bodies,
    headers=sender_headers,
)  # fmt: skip
@example(media_index=0, json_body=UTF16_NUL, form_body=b"", headers={})
@example(media_index=1, json_body=UTF16_NUL, form_body=b"", headers={})
def test_webhook_bodies_parse_or_refuse(
    source: str, media_index: int, json_body: bytes, form_body: bytes, headers: dict[str, str]
) -> None:
    """What ingest does after the signature: parse by media type, find the id and type."""
    found = TOPOLOGY.source(source)
    assert found is not None
    media = found.content_types[media_index % len(found.content_types)]
    raw = json_body if media == JSON else form_body
    lookup_headers = Headers(headers)
    parsed = parses_or_refuses(lambda: parse_body(raw, media))
    if isinstance(parsed, Problem):
        return
    assert parsed is not None
    # The function's promise: nothing it lets through is text PostgreSQL cannot store.
    assert _unstorable(parsed.document) is None, _unstorable(parsed.document)
    parses_or_refuses(
        lambda: event_id(found.event_id, found.event_id_qualifiers, lookup_headers, parsed)
    )
    parses_or_refuses(lambda: first_present(found.event_type, lookup_headers, parsed))
    if found.ordering_key is not None:
        parses_or_refuses(lambda: lookup(found.ordering_key, lookup_headers, parsed))  # type: ignore[arg-type]
    kept_headers(found, lookup_headers)


def _unstorable(document: Any) -> str | None:
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and text_problem(node) is not None:
            return repr(node)
        if isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


@FUZZ
@given(raw=untrusted_bytes)
def test_bounded_json_parses_or_raises_value_error(raw: bytes) -> None:
    """Its contract with every caller, each of which turns ValueError into its own 4xx."""
    with contextlib.suppress(ValueError):
        bounded_json.loads(raw)


# -- push envelopes ------------------------------------------------------------------------

messages = st.fixed_dictionaries(
    {},
    optional={
        "messageId": st.one_of(st.from_regex(r"[0-9a-z-]{1,20}", fullmatch=True), wild_text,
                               documents),
        "message_id": wild_text,
        "data": st.one_of(
            wild_text, documents, st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
        ),
        "attributes": st.one_of(documents, st.dictionaries(wild_text, wild_text, max_size=4)),
        "publishTime": documents, "orderingKey": documents,
    },
)  # fmt: skip
envelopes = st.fixed_dictionaries(
    {"message": st.one_of(messages, documents)},
    optional={"subscription": documents, "deliveryAttempt": st.one_of(numbers, documents)},
).map(lambda envelope: _encoded(envelope, False, "utf-8"))


@FUZZ
@given(raw=st.one_of(envelopes, untrusted_bytes))
@example(raw=PUSH_NOT_ASCII)
def test_push_envelopes_parse_or_refuse(raw: bytes) -> None:
    parses_or_refuses(lambda: parse_envelope(raw))


@FUZZ
@given(raw=st.one_of(envelopes, untrusted_bytes), subscription=st.sampled_from(["ledger", "x"]))
@example(raw=PUSH_NOT_ASCII, subscription="ledger")
def test_a_push_reaches_the_database_or_is_refused(raw: bytes, subscription: str) -> None:
    worker = Worker(engine=_NoDatabase(), verifier=_Admitted())  # type: ignore[arg-type]
    request = _request(f"/pubsub/{subscription}", body=raw, headers={"Content-Type": JSON})
    answers_4xx_or_reaches_the_database(lambda: worker.handle(request))


# -- tasks ---------------------------------------------------------------------------------

task_headers = st.dictionaries(
    st.sampled_from(["X-CloudTasks-TaskRetryCount", "X-CloudTasks-TaskName",
                     "X-CloudTasks-TaskExecutionCount", "X-CloudTasks-QueueName"]),
    st.one_of(latin1_text, st.integers(min_value=-(10**30), max_value=10**30).map(str),
              st.just("9" * 5000), st.sampled_from(["٣", "1_000", " 1", "0x10", "+1"])),
)  # fmt: skip


@FUZZ
@given(
    queue=st.one_of(st.sampled_from([q.name for q in TOPOLOGY.queues]), latin1_text),
    headers=task_headers,
    body=untrusted_bytes,
)
def test_task_headers_parse_or_refuse(queue: str, headers: dict[str, str], body: bytes) -> None:
    worker = TaskWorker(
        engine=_NoDatabase(), topology=TOPOLOGY,  # type: ignore[arg-type]
        handlers={q.name: lambda body: None for q in TOPOLOGY.queues}, verifier=_Admitted(),
    )  # fmt: skip
    request = _request(f"/tasks/{queue}", body=body, headers={"Content-Type": JSON, **headers})
    answers_4xx_or_reaches_the_database(lambda: worker.handle(request))


task_bodies = st.one_of(
    untrusted_bytes,
    st.fixed_dictionaries(
        {},
        optional={
            key: st.one_of(documents, numbers, st.datetimes().map(datetime.isoformat), wild_text)
            for key in ("job", "schedule_time", "account_id", "date", "outbox_id", "replay_id",
                        "seq")
        },
    ).map(lambda doc: _encoded(doc, False, "utf-8")),
)  # fmt: skip


def _notifier_parse(body: bytes) -> None:
    Notifier(engine=_NoDatabase(), secrets=_AdminToken())(body)  # type: ignore[arg-type]


def _replay_parse(body: bytes) -> None:
    runner = ReplayRunner(_NoDatabase(), TOPOLOGY, None, None)  # type: ignore[arg-type]
    runner(body)


@pytest.mark.parametrize(
    "parse",
    [parse_job_task, parse_statement_task, _notifier_parse, _replay_parse],
    ids=["jobs", "statements", "notifications", "replays"],
)
@FUZZ
@given(body=task_bodies)
@example(body=DEEP_JSON)
@example(body=b'{"replay_id": 1e999, "seq": 1}')
def test_task_bodies_parse_or_dead_letter(parse: Callable[[bytes], object], body: bytes) -> None:
    """A task body the worker cannot use is a PermanentError (a dead letter at once); any
    other exception is retried with backoff until the queue's last attempt, for nothing."""
    with contextlib.suppress(PermanentError, ReachedTheDatabase):
        parse(body)


# -- Cloud Scheduler -----------------------------------------------------------------------

schedule_times = st.one_of(
    latin1_text,
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
        r"([Zz]|[+-][0-9]{2}(:?[0-9]{2}(:[0-9]{2})?)?)?",
        fullmatch=True,
    ),
)


@FUZZ
@given(raw=st.one_of(st.none(), schedule_times), now=st.floats(0, 2**33))
def test_scheduler_times_parse_or_refuse(raw: str | None, now: float) -> None:
    moment = parses_or_refuses(lambda: parse_schedule_time(raw, now))
    if isinstance(moment, datetime):
        assert moment.utcoffset() is not None
        assert moment.tzinfo is UTC


@FUZZ
@given(job=st.one_of(st.sampled_from([j.name for j in TOPOLOGY.jobs]), latin1_text),
       when=schedule_times, body=untrusted_bytes)  # fmt: skip
def test_a_scheduler_tick_reaches_the_queue_or_is_refused(job: str, when: str, body: bytes) -> None:
    cron = CronIngest(TOPOLOGY, _no_database, _Admitted())
    headers = {"Content-Type": JSON, "X-CloudScheduler-ScheduleTime": when}
    request = _request(f"/cron/{job}", body=body, headers=headers)
    answers_4xx_or_reaches_the_database(lambda: cron.handle(request))


# -- the admin API -------------------------------------------------------------------------


def _percent_encoded(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(
        f"{quote_from_bytes(k.encode('utf-8', 'surrogatepass'))}="
        f"{quote_from_bytes(v.encode('utf-8', 'surrogatepass'))}"
        for k, v in pairs
    ).encode()


# Servers hand over the query as sent on the request line, which is ASCII (gunicorn answers
# 400 to anything else; werkzeug's server re-encodes it as UTF-8): any byte arrives
# percent-encoded, `&`, `=` and `+` as they are.
query_strings = st.one_of(
    st.binary(max_size=200).map(lambda raw: quote_from_bytes(raw, safe="&=+%;").encode()),
    st.lists(
        st.tuples(
            st.one_of(st.sampled_from(
                ["source", "type", "since", "until", "handler", "outcome", "path", "q", "limit",
                 "cursor", "order", "state", "subscription", "reason", "sorce"]
            ), wild_text),
            st.one_of(wild_text, schedule_times, st.integers().map(str), st.just("9" * 5000),
                      st.from_regex(r"([a-z.]{0,20}=){0,2}[^&]{0,30}", fullmatch=True)),
        ),
        max_size=6,
    ).map(_percent_encoded),
)  # fmt: skip
ADMIN_ROUTES = [
    ("GET", "/admin/dead-letters"), ("GET", "/admin/events"), ("GET", "/admin/stats"),
    ("GET", "/admin/accounts/{id}"), ("GET", "/admin/accounts/{id}/entries"),
    ("GET", "/admin/dead-letters/{id}"), ("GET", "/admin/replays/{id}"),
    ("GET", "/admin/events/{id}/{id}"), ("GET", "/admin/events/{id}/{id}/payload"),
    ("POST", "/admin/dead-letters/replay"), ("POST", "/admin/dead-letters/discard"),
    ("POST", "/admin/replays/{id}/cancel"), ("POST", "/admin/events/{id}/{id}/erase"),
    ("POST", "/admin/events/{id}/{id}/resend"),
]  # fmt: skip
"""Every documented admin operation but PUT on an account, whose notify_url check resolves
host names (I/O); its body model is fuzzed on its own below."""
admin_bodies = st.one_of(
    untrusted_bytes,
    st.fixed_dictionaries(
        {},
        optional={
            "ids": st.one_of(st.lists(numbers, max_size=4), documents),
            "filter": st.one_of(documents, st.fixed_dictionaries({}, optional={
                k: st.one_of(wild_text, schedule_times, documents)
                for k in ("source", "type", "subscription", "reason", "since", "until")})),
            "reason": st.one_of(wild_text, documents), "dry_run": documents,
            "max_per_second": numbers, "handlers": documents,
            "currency": wild_text, "notify_url": st.one_of(wild_text, documents),
        },
    ).map(lambda doc: _encoded(doc, False, "utf-8")),
)  # fmt: skip
path_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
    st.integers().map(str),
    st.just("9" * 5000),
    latin1_text.filter(lambda text: "/" not in text),
)


@FUZZ
@given(
    route=st.sampled_from(ADMIN_ROUTES), data=st.data(), query=query_strings,
    body=admin_bodies, operator=st.one_of(st.none(), latin1_text),
)  # fmt: skip
def test_admin_requests_reach_the_database_or_are_refused(
    route: tuple[str, str], data: st.DataObject, query: bytes, body: bytes, operator: str | None
) -> None:
    method, template = route
    path = template
    while "{id}" in path:
        path = path.replace("{id}", data.draw(path_ids), 1)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": JSON}
    if operator is not None:
        headers["X-Hookyard-Operator"] = operator
    request = _request(path, method=method, body=body, headers=headers, query=query)
    admin = Admin(_no_database, _AdminToken())
    answers_4xx_or_reaches_the_database(lambda: admin.handle(request))


@FUZZ
@given(query=query_strings)
def test_event_search_queries_parse_or_refuse(query: bytes) -> None:
    """The search's own parser (strict about bytes, repeats and unknown names), and the SQL
    it builds from what it accepts."""
    operations = EventOperations(_no_database, topology=TOPOLOGY)
    parsed = parses_or_refuses(lambda: operations.query(strict_query(_request(query=query))))
    if parsed is not None and not isinstance(parsed, Problem):
        where(parsed, TOPOLOGY.handlers)


@FUZZ
@given(body=admin_bodies)
def test_account_bodies_parse_or_refuse(body: bytes) -> None:
    """PUT on an account, left out of the route fuzzing above, is this parse then I/O."""
    parses_or_refuses(lambda: parse_json(AccountIn, _request(body=body)))


def test_every_fuzzed_entry_point_refuses_garbage_with_a_problem() -> None:
    """The stand-ins above must not make the entry points trivially pass: one clear refusal
    each, through the same calls the properties make."""
    garbage = b"\xff{"
    worker = Worker(engine=_NoDatabase(), verifier=_Admitted())  # type: ignore[arg-type]
    pushed = worker.handle(_request("/pubsub/ledger", body=garbage, headers={"Content-Type": JSON}))
    assert pushed.status_code == 400
    admin = Admin(_no_database, _AdminToken())
    listed = admin.handle(_request("/admin/dead-letters", method="GET", query=b"limit=0",
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))  # fmt: skip
    assert listed.status_code == 400
    with pytest.raises(ReachedTheDatabase):
        admin.handle(_request("/admin/dead-letters", method="GET",
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))  # fmt: skip
    assert isinstance(parses_or_refuses(lambda: parse_envelope(garbage)), Problem)
