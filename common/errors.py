"""The typed error hierarchy every layer speaks.

Two families matter. Processing errors tell a worker what the broker should do next
(`TransientError`: nack and let the broker back off; `PermanentError`: dead-letter and ack).
HTTP problems carry what an entry point answers, rendered as RFC 7807 problem JSON; their
`detail` is written for the caller and must never contain a secret or a signature.
"""

from __future__ import annotations

from typing import Any, ClassVar


class HookyardError(Exception):
    """Base of everything Hookyard raises on purpose."""


class ConfigError(HookyardError):
    """Configuration or topology is invalid; the process must not start."""


class UsageError(HookyardError):
    """A command was asked for something it cannot do as asked (an unknown name, a value out
    of range); the message says what would work, and the CLI exits 2 with it."""


class AlreadyRunning(ConfigError):
    """Another live process owns this data directory; starting would take its database away."""

    def __init__(self, data_dir: object, pid: int | None) -> None:
        super().__init__(f"hookyard is already running on {data_dir} (pid {pid or 'unknown'})")
        self.pid = pid


class TransientError(HookyardError):
    """May succeed later (database blip, an event that arrived before its prerequisite)."""


class PermanentError(HookyardError):
    """Will never succeed as delivered; retrying only burns attempts."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishError(TransientError):
    """A message was not confirmed durable by the broker within its deadline."""


class SecretUnavailable(TransientError):
    """The secret store could not say what a secret holds (unreachable, no credentials, a
    corrupted payload). Not "no secret": nothing may be decided on it, so callers answer 503
    and the caller retries. The message names the secret, never a value."""


class Problem(HookyardError):
    """An HTTP error answered as `application/problem+json`."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    slug: ClassVar[str] = "internal"
    close_connection: ClassVar[bool] = False
    """True when the request's bytes may not have been read to their end: the connection
    cannot carry another request."""

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://hookyard.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status = 400
    title = "Bad Request"
    slug = "bad-request"


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class SignatureInvalid(Unauthorized):
    """The request is not provably from the sender; `detail` names the failure class only."""

    slug = "invalid-signature"


class Forbidden(Problem):
    status = 403
    title = "Forbidden"
    slug = "forbidden"


class NotFound(Problem):
    status = 404
    title = "Not Found"
    slug = "not-found"


class MethodNotAllowed(Problem):
    status = 405
    title = "Method Not Allowed"
    slug = "method-not-allowed"


class RequestTimeout(Problem):
    status = 408
    title = "Request Timeout"
    slug = "request-timeout"
    close_connection = True


class Conflict(Problem):
    status = 409
    title = "Conflict"
    slug = "conflict"


class Gone(Problem):
    """It existed and was removed on purpose (an erased payload)."""

    status = 410
    title = "Gone"
    slug = "gone"


class PayloadTooLarge(Problem):
    status = 413
    title = "Payload Too Large"
    slug = "payload-too-large"
    close_connection = True


class BodyUnreadable(BadRequest):
    """Malformed chunking, or a body that ended before its Content-Length."""

    slug = "body-unreadable"
    close_connection = True


class UnsupportedMediaType(Problem):
    status = 415
    title = "Unsupported Media Type"
    slug = "unsupported-media-type"


class UnprocessableContent(Problem):
    status = 422
    title = "Unprocessable Content"
    slug = "unprocessable"


class ServiceUnavailable(Problem):
    status = 503
    title = "Service Unavailable"
    slug = "unavailable"


class RetryLater(Problem):
    """A task failed this time. 500 asks Cloud Tasks for a retry on the queue's backoff;
    503 and 429 would also make it slow down the whole queue."""

    slug = "retry-later"
