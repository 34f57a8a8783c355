"""The generic `hmac` scheme for senders that just put an HMAC of the body in a header.

Options usually come from a YAML file, so the Literal types are checked again at runtime:
a typo must stop the process at start-up, not turn into a verifier that rejects everything.
"""

from __future__ import annotations

from typing import get_args

from common.errors import ConfigError
from common.signatures.base import (
    DEFAULT_TOLERANCE_S,
    Algorithm,
    Encoding,
    HmacOptions,
    SingleDigestVerifier,
)


class GenericHmacVerifier(SingleDigestVerifier):
    def __init__(self, options: HmacOptions, tolerance_s: int = DEFAULT_TOLERANCE_S) -> None:
        if not options.header.strip():
            raise ConfigError("hmac scheme: header must be set")
        if options.algorithm not in get_args(Algorithm):
            raise ConfigError(f"hmac scheme: unsupported algorithm {options.algorithm!r}")
        if options.encoding not in get_args(Encoding):
            raise ConfigError(f"hmac scheme: unsupported encoding {options.encoding!r}")
        if options.timestamp_header is not None and not options.timestamp_header.strip():
            raise ConfigError("hmac scheme: timestamp_header must be a header name or unset")
        super().__init__(
            header=options.header,
            prefix=options.prefix,
            encoding=options.encoding,
            algorithm=options.algorithm,
            timestamp_header=options.timestamp_header,
            tolerance_s=tolerance_s,
        )
