"""The served `/openapi.json` is a valid OpenAPI 3.1 document, as tools that read it check."""

from __future__ import annotations

from pathlib import Path

import httpx
from openapi_spec_validator import OpenAPIV31SpecValidator

from tests.support.postgres import TestServer
from tests.support.stack import running_stack


def test_served_document_passes_openapi_spec_validator(
    pg_server: TestServer, database: str, tmp_path: Path
) -> None:
    with running_stack(pg_server, database, tmp_path) as stack:
        response = httpx.get(f"{stack.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message.splitlines()[0]}"
        for error in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert errors == []
