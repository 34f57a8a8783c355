"""Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the raw body, keyed with the client secret.

No timestamp is signed (`X-Shopify-Triggered-At` is informational), so dedup on
`X-Shopify-Webhook-Id` is the only replay defence.
"""

from __future__ import annotations

from common.signatures.base import SingleDigestVerifier


class ShopifyVerifier(SingleDigestVerifier):
    def __init__(self) -> None:
        super().__init__(
            header="X-Shopify-Hmac-Sha256", encoding="base64", id_header="X-Shopify-Webhook-Id"
        )
