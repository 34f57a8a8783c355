"""`OidcVerifier` against certificates served over a real socket: what it accepts, what it
refuses and how, and how often it fetches (once per max-age, not per request)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import ServiceUnavailable, Unauthorized
from common.oidc import (
    CLOCK_SKEW_S,
    DEFAULT_CERTS_TTL_S,
    GOOGLE_ISSUERS,
    REFETCH_INTERVAL_S,
    STALE_GRACE_S,
    CertificateCache,
    OidcVerifier,
    TokenMinter,
)
from tests.support.oidc import GOOGLE_ISSUER, FakeGoogle, fake_google

AUDIENCE = "https://worker.example.run.app"
PUSH = "push@proj.iam.gserviceaccount.com"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogle]:
    with fake_google(tmp_path / "google") as running:
        yield running


def _verifier(google: FakeGoogle, clock: Clock, remembered: int = 0) -> OidcVerifier:
    """Remembering no token by default: these tests are about certificates, and tokens
    minted in the same second are the same string."""
    cache = CertificateCache(google.certs_url, clock=clock)
    return OidcVerifier(cache, GOOGLE_ISSUERS, AUDIENCE, {PUSH}, remembered=remembered)


def test_a_good_token_is_accepted_and_certificates_are_fetched_once(google: FakeGoogle) -> None:
    clock = Clock()
    verifier = _verifier(google, clock)
    for _ in range(50):
        caller = verifier.verify_token(google.token(AUDIENCE, PUSH))
    assert caller.email == PUSH
    assert google.certs_fetches == 1
    clock.now += DEFAULT_CERTS_TTL_S + 1  # no max-age: an hour
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    assert google.certs_fetches == 2


def test_the_servers_max_age_sets_how_long_certificates_are_kept(google: FakeGoogle) -> None:
    google.max_age = 600
    clock = Clock()
    verifier = _verifier(google, clock)
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    clock.now += 599
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    assert google.certs_fetches == 1
    clock.now += 2
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    assert google.certs_fetches == 2


def test_an_unknown_key_refetches_at_most_once_per_interval(
    google: FakeGoogle, tmp_path: Path
) -> None:
    """A rotation is picked up; a stream of forged key ids is not a stream of fetches."""
    clock = Clock()
    verifier = _verifier(google, clock)
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    stranger = FakeGoogle(tmp_path / "stranger")
    clock.now += REFETCH_INTERVAL_S + 1
    for _ in range(20):
        with pytest.raises(Unauthorized, match="unknown key"):
            verifier.verify_token(stranger.token(AUDIENCE, PUSH))
    assert google.certs_fetches == 2  # the first unknown kid looked again, once
    google.certs = {**google.certs, **stranger.certs}  # Google rotates a key in
    with pytest.raises(Unauthorized, match="unknown key"):
        verifier.verify_token(stranger.token(AUDIENCE, PUSH))
    clock.now += REFETCH_INTERVAL_S + 1
    assert verifier.verify_token(stranger.token(AUDIENCE, PUSH)).email == PUSH
    assert google.certs_fetches == 3


def test_unreachable_certificates_are_a_503_never_an_allow(google: FakeGoogle) -> None:
    clock = Clock()
    verifier = _verifier(google, clock)
    google.failing = True
    for _ in range(5):
        with pytest.raises(ServiceUnavailable):
            verifier.verify_token(google.token(AUDIENCE, PUSH))
    assert google.certs_fetches == 1  # failures are not retried per request either
    google.failing = False
    clock.now += REFETCH_INTERVAL_S + 1
    assert verifier.verify_token(google.token(AUDIENCE, PUSH)).email == PUSH


def test_an_outage_after_a_fetch_serves_what_was_published_for_a_while(
    google: FakeGoogle, tmp_path: Path
) -> None:
    clock = Clock()
    verifier = _verifier(google, clock)
    verifier.verify_token(google.token(AUDIENCE, PUSH))
    google.failing = True
    clock.now += DEFAULT_CERTS_TTL_S + 1
    for _ in range(5):
        assert verifier.verify_token(google.token(AUDIENCE, PUSH)).email == PUSH
    assert google.certs_fetches == 2  # one attempt, not one per request
    with pytest.raises(ServiceUnavailable):  # a key it never saw cannot be checked now
        verifier.verify_token(FakeGoogle(tmp_path / "new").token(AUDIENCE, PUSH))
    clock.now += STALE_GRACE_S
    with pytest.raises(ServiceUnavailable):
        verifier.verify_token(google.token(AUDIENCE, PUSH))


@pytest.mark.parametrize(
    ("case", "claims", "reason"),
    [
        ("another audience", {"aud": AUDIENCE + "/pubsub/ledger"}, "another audience"),
        ("unverified email", {"email_verified": False}, "not verified"),
        ("another issuer", {"iss": "https://evil.example"}, "unexpected issuer"),
        ("expired", {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}, "expired"),
        ("from the future", {"iat": int(time.time()) + 3600}, "future"),
        ("no expiry", {"exp": None}, "iat or exp"),
    ],
)
def test_each_failure_is_refused_and_named(
    google: FakeGoogle, case: str, claims: dict[str, object], reason: str
) -> None:
    token = google.token(AUDIENCE, PUSH, **claims)
    with pytest.raises(Unauthorized, match=reason) as refused:
        _verifier(google, Clock()).verify_token(token)
    assert token not in refused.value.detail


def test_another_caller_is_refused(google: FakeGoogle) -> None:
    token = google.token(AUDIENCE, "intruder@proj.iam.gserviceaccount.com")
    with pytest.raises(Unauthorized, match="not allowed"):
        _verifier(google, Clock()).verify_token(token)


def test_a_tampered_or_malformed_token_is_refused(google: FakeGoogle) -> None:
    verifier = _verifier(google, Clock())
    header, payload, signature = google.token(AUDIENCE, PUSH).split(".")
    other = google.token(AUDIENCE, "intruder@proj.iam.gserviceaccount.com").split(".")[1]
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify_token(f"{header}.{other}.{signature}")
    # A header nested past the interpreter's recursion limit, still under the length cap.
    deep = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode() + f".{payload}.{signature}"
    for garbage in ("", "a.b", "a.b.c", "x" * 9000, f"{header}.{payload}", deep):
        with pytest.raises(Unauthorized, match="malformed"):
            verifier.verify_token(garbage)
    assert google.certs_fetches <= 1


def test_the_minter_reuses_a_token_until_shortly_before_it_expires(google: FakeGoogle) -> None:
    clock = Clock()
    clock.now = time.time()
    minter = TokenMinter(google.signer, GOOGLE_ISSUER, clock=clock)
    first = minter.token(PUSH, AUDIENCE)
    assert minter.token(PUSH, AUDIENCE) == first
    assert minter.token(PUSH, AUDIENCE + "/other") != first  # per audience
    verifier = OidcVerifier(google.certs_url, GOOGLE_ISSUERS, AUDIENCE, {PUSH})
    assert verifier.verify_token(first).claims["iss"] == GOOGLE_ISSUER
    clock.now += 3000
    assert minter.token(PUSH, AUDIENCE) == first
    clock.now += 400  # within the re-mint margin of its hour
    assert minter.token(PUSH, AUDIENCE) != first


def test_a_remembered_token_is_never_accepted_past_its_expiry(google: FakeGoogle) -> None:
    clock = Clock()
    clock.now = time.time()
    cache = CertificateCache(google.certs_url, clock=clock)
    verifier = OidcVerifier(cache, GOOGLE_ISSUERS, AUDIENCE, {PUSH}, clock=clock)
    token = google.token(AUDIENCE, PUSH, exp=int(clock.now) + 120)
    for _ in range(3):
        assert verifier.verify_token(token).email == PUSH
    clock.now += 120 + CLOCK_SKEW_S + 1
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify_token(token)


def test_only_the_exact_token_that_was_verified_is_remembered(google: FakeGoogle) -> None:
    verifier = _verifier(google, Clock(), remembered=16)
    token = google.token(AUDIENCE, PUSH)
    verifier.verify_token(token)
    header, payload, signature = token.split(".")
    forged = ".".join(
        (header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB"))
    )
    with pytest.raises(Unauthorized, match="signature"):
        verifier.verify_token(forged)
    other = google.token("https://elsewhere.example", PUSH)
    with pytest.raises(Unauthorized, match="audience"):
        verifier.verify_token(other)
    assert verifier.verify_token(token).email == PUSH


def test_a_remembered_token_needs_no_certificate_while_it_is_remembered(
    google: FakeGoogle,
) -> None:
    """The certificates have expired and cannot be fetched: a token never seen cannot be
    checked, the one verified a moment ago is still known (without memory both fail)."""
    verifying, fetching = Clock(), Clock()
    verifying.now = time.time()
    cache = CertificateCache(google.certs_url, clock=fetching)
    verifier = OidcVerifier(cache, GOOGLE_ISSUERS, AUDIENCE, {PUSH}, clock=verifying)
    token = google.token(AUDIENCE, PUSH)
    verifier.verify_token(token)
    google.failing = True
    fetching.now += DEFAULT_CERTS_TTL_S + STALE_GRACE_S + 1
    with pytest.raises(ServiceUnavailable):
        verifier.verify_token(google.token(AUDIENCE, PUSH, sub="2"))
    assert verifier.verify_token(token).email == PUSH
