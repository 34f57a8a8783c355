"""`/console` on the real stack in its production shape (the admin target in its own process,
behind the front door), over real sockets: every page and asset with the console's strict
headers and no credential, unknown and hostile paths as 4xx problems, and assets that never
write data into the page as markup."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import httpx
import pytest

from hookyard.stack import LocalStack
from tests.support.postgres import TestServer
from tests.support.stack import ADMIN_TOKEN, module_stack

pytestmark = pytest.mark.timeout(600)

PROBLEM = "application/problem+json"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGES = [
    "/console", "/console/", "/console/events", "/console/events/stripe/evt_1",
    "/console/dead-letters", "/console/dead-letters/17", "/console/replays", "/console/replays/3",
    "/console/accounts", "/console/accounts/acct_1", "/console/accounts/acct.1-a_b/",
    "/console/audit",
]  # fmt: skip
ASSETS = {
    "/console/static/console.js": "text/javascript",
    "/console/static/console.css": "text/css",
}
UNKNOWN = [
    "/console/nope", "/console/static", "/console/static/shell.html", "/console/static/x.js",
    "/console/events/stripe", "/console/events/stripe/evt_1/payload", "/console/accounts/a/b",
    "/console/audit/1", "/console/accounts/a%20b", "/consolex",
]  # fmt: skip
HOSTILE = [
    "/console/%00", "/console/accounts/%00", "/console/static/console.js%00",
    "/console/..", "/console/../admin/stats", "/console/accounts/..", "/console/replays/.",
    "/console/static/..%2fshell.html", "/console/static/../../common/openapi.yaml",
    "/console/%2e%2e/%2e%2e/etc/passwd", "/console/accounts/%ff%fe", "/console/%09",
    "/console/%0d%0a",
    "/console/" + "a" * 5000, "/console/accounts/" + "a" * 257, "/console/" + "a" * 70_000,
]  # fmt: skip
MARKUP_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc"
)


@pytest.fixture(scope="module")
def live(pg_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with module_stack(pg_server, tmp_path_factory.mktemp("console"), dev_processes=True) as stack:
        yield stack


@pytest.fixture(scope="module")
def client(live: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as http:
        yield http


def assert_console_headers(response: httpx.Response) -> None:
    assert response.headers["Content-Security-Policy"] == CSP, response.url
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "set-cookie" not in response.headers


def test_every_page_is_served_without_a_credential(client: httpx.Client) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert_console_headers(response)
        assert '<script type="module" src="/console/static/console.js">' in response.text
        assert '<div id="alert" class="alert" role="alert">' in response.text
        head = client.head(path)
        assert head.status_code == 200
        assert head.content == b""


def test_assets_are_files_of_the_repository_with_the_same_headers(client: httpx.Client) -> None:
    for path, media_type in ASSETS.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"] == f"{media_type}; charset=utf-8"
        assert_console_headers(response)
        assert len(response.content) > 1000


def test_no_asset_writes_markup_or_reaches_off_site(client: httpx.Client) -> None:
    """A cheap static check: what the API returns (hostile payloads, reasons, ids) can only
    reach the page as text, and nothing is loaded from elsewhere (no CDN) or inline (the
    CSP would block it anyway, so the page would break)."""
    script = client.get("/console/static/console.js").text
    assert MARKUP_SINKS.findall(script) == []
    assert "textContent" in script
    shell = client.get("/console").text
    for text in (script, shell, client.get("/console/static/console.css").text):
        assert re.findall(r"https?:|//cdn", text) == []
    assert re.findall(r"<script(?![^>]*\bsrc=)", shell) == []
    assert re.findall(r"<style|\sstyle=|\son[a-z]+=", shell) == []


def test_unknown_console_paths_are_404_problems(client: httpx.Client) -> None:
    for path in UNKNOWN:
        response = client.get(path)
        assert response.status_code == 404, (path, response.text[:300])
        assert response.headers["Content-Type"] == PROBLEM, path
        assert response.json()["status"] == 404
        if path.startswith("/console/"):
            assert_console_headers(response)


def test_only_get_and_head(client: httpx.Client) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = client.request(method, "/console/accounts", json={"currency": "usd"})
        assert response.status_code == 405, (method, response.text)
        assert response.headers["Content-Type"] == PROBLEM
        assert response.headers["Allow"] == "GET, HEAD"
        assert_console_headers(response)


def test_hostile_paths_are_4xx_problems_never_5xx(live: LocalStack) -> None:
    """Sent byte for byte (an HTTP client would normalise the dot segments away)."""
    for path in HOSTILE:
        status, headers, body = _raw_get(live, path)
        assert 400 <= status < 500, (path[:80], status, body[:300])
        assert headers.get("content-type") == PROBLEM, (path[:80], headers, body[:400])
        assert re.findall(rb"<html|openapi:", body) == [], path[:80]


def test_the_admin_api_behind_the_console_still_wants_its_token(client: httpx.Client) -> None:
    assert client.get("/admin/stats").status_code == 401
    signed = client.get("/admin/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert signed.status_code == 200
    cross_site = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Sec-Fetch-Site": "cross-site"}
    assert client.get("/admin/stats", headers=cross_site).status_code == 403
    # The console's own calls are same-origin: the browser names this host as the origin.
    same_origin = {"Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    put = client.put(
        "/admin/accounts/console_probe",
        json={"currency": "usd"},
        headers={**same_origin, "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert put.status_code == 201, put.text


def _raw_get(live: LocalStack, path: str) -> tuple[int, dict[str, str], bytes]:
    assert live.server is not None
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", live.server.server_port), timeout=60) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body
