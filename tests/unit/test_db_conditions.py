"""Filters become bound parameters; a filter not given is left out."""

from __future__ import annotations

from common.db.conditions import where


def test_given_filters_are_bound_and_the_rest_left_out() -> None:
    clause, params = where([("state = {}", "done"), ("id < {}", None), ("actor = {}", "x'; --")])
    assert clause == "state = :c0 AND actor = :c1"
    assert params == {"c0": "done", "c1": "x'; --"}


def test_no_filter_selects_everything() -> None:
    assert where([("id < {}", None)]) == ("TRUE", {})
