"""Which console path names which file: pages share the shell, assets are named one by one,
and anything else (dot segments, NUL, unknown pages, ids the API could never hold) is nothing."""

from __future__ import annotations

import pytest

from functions.console.assets import asset_for


@pytest.mark.parametrize(
    "path",
    ["", "/", "/events", "/events/stripe/evt_1", "/dead-letters/12", "/replays/3/",
     "/accounts/acct.1-a_b", "/audit", "/accounts/" + "a" * 256],
)  # fmt: skip
def test_pages_are_the_shell(path: str) -> None:
    asset = asset_for(path)
    assert asset is not None
    assert (asset.name, asset.media_type) == ("shell.html", "text/html")
    assert b'<script type="module" src="/console/static/console.js">' in asset.body()


def test_assets_are_named_one_by_one() -> None:
    script, style = asset_for("/static/console.js"), asset_for("/static/console.css")
    assert script is not None
    assert style is not None
    assert (script.media_type, style.media_type) == ("text/javascript", "text/css")
    assert b"textContent" in script.body()


@pytest.mark.parametrize(
    "path",
    ["x", "/nope", "/static", "/static/", "/static/shell.html", "/static/../shell.html",
     "/static/console.js\x00", "/events/stripe", "/events/a/b/c",
     "/accounts/a/b", "/audit/1", "/accounts/..", "/accounts/.", "/replays/...", "/..",
     "/accounts/\x00", "/accounts/a b", "/accounts/" + "a" * 257, "//events", "/events//"],
)  # fmt: skip
def test_anything_else_is_nothing(path: str) -> None:
    assert asset_for(path) is None
