"""GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.

The legacy SHA-1 `X-Hub-Signature` is never consulted, so a request carrying only that header
is rejected as unsigned. Nothing time-bound is signed: replay protection is dedup on
`X-GitHub-Delivery`.
"""

from __future__ import annotations

from common.signatures.base import SingleDigestVerifier


class GitHubVerifier(SingleDigestVerifier):
    def __init__(self) -> None:
        super().__init__(
            header="X-Hub-Signature-256", prefix="sha256=", id_header="X-GitHub-Delivery"
        )
