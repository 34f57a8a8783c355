"""The rules the checkov tests apply, on text and reports shaped like checkov 3.3's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.checkov_run import Finding, parse_report
from tests.support.infra_tree import skip_comments

TREE = Path("/tmp/tree")


@pytest.mark.parametrize(
    ("comment", "justified"),
    [
        ("#checkov:skip=CKV_GCP_83:Google-managed keys are enough for webhook payloads", True),
        ("  # checkov:skip=CKV_GCP_6,CKV_GCP_14:the connector encrypts, backups elsewhere", True),
        ("#checkov:skip=CKV_GCP_83", False),
        ("#checkov:skip=CKV_GCP_83:", False),
        ("#checkov:skip=CKV_GCP_83:   ", False),
        ("#checkov:skip=CKV_GCP_83:accepted", False),
        ("#checkov:skip=:no check id given here", False),
        ("// bridgecrew:skip=CKV_GCP_83", False),
    ],
)
def test_a_skip_needs_an_id_and_a_reason_of_a_few_words(comment: str, justified: bool) -> None:
    (skip,) = skip_comments(f'resource "x" "y" {{\n{comment}\n}}\n')
    assert skip.line == 2
    assert skip.justified() is justified


def test_text_without_skips_has_none() -> None:
    assert skip_comments('resource "x" "y" {\n  # checkov is run by make test\n}\n') == []


def test_report_lists_each_failed_check_with_its_place() -> None:
    report = parse_report(
        json.dumps(
            {
                "check_type": "terraform",
                "results": {
                    "failed_checks": [
                        {
                            "check_id": "CKV_GCP_83",
                            "check_name": "Ensure PubSub Topics are encrypted with CSEK",
                            "resource": "module.m.google_pubsub_topic.events",
                            "file_path": "/modules/m/main.tf",
                            "file_line_range": [6, 9],
                        }
                    ]
                },
                "summary": {"passed": 3, "failed": 1, "parsing_errors": 0, "resource_count": 2},
            }
        ),
        TREE,
    )
    assert report.resource_count == 2
    assert report.failed == (
        Finding(
            check_id="CKV_GCP_83",
            title="Ensure PubSub Topics are encrypted with CSEK",
            resource="module.m.google_pubsub_topic.events",
            file="/tmp/tree/modules/m/main.tf",
            lines=(6, 9),
        ),
    )
    assert report.failed[0].describe() == (
        "CKV_GCP_83 module.m.google_pubsub_topic.events at /tmp/tree/modules/m/main.tf:6: "
        "Ensure PubSub Topics are encrypted with CSEK"
    )


def test_a_tree_checkov_found_nothing_in_is_a_bare_summary() -> None:
    report = parse_report(json.dumps({"passed": 0, "failed": 0, "resource_count": 0}), TREE)
    assert (report.resource_count, report.failed) == (0, ())


def test_reports_of_several_frameworks_add_up() -> None:
    one = {"results": {"failed_checks": []}, "summary": {"resource_count": 1, "parsing_errors": 1}}
    report = parse_report(json.dumps([one, one]), TREE)
    assert (report.resource_count, report.parsing_errors) == (2, 2)
