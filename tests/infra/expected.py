"""The Python model rendered as infra's modules render topology.yaml, for comparison."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from common.topology import Topology


def seconds(value: float) -> str:
    """A duration as Terraform's "${n}s" writes it: 10 -> "10s", 0.1 -> "0.1s"."""
    return f"{Decimal(str(value)).normalize():f}s"


def model_view(topology: Topology) -> dict[str, Any]:
    dead_letter_topics = list(
        dict.fromkeys(
            s.dead_letter_policy.dead_letter_topic
            for s in topology.subscriptions
            if s.dead_letter_policy is not None
        )
    )
    topics = [t.name for t in topology.topics]
    return {
        "topics": topics,
        "subscriptions": {
            s.name: {
                "name": s.name,
                "topic": s.topic,
                "push_path": s.push_path,
                "ack_deadline_seconds": s.ack_deadline_seconds,
                "retry_policy": s.retry_policy and s.retry_policy.model_dump(),
                "dead_letter_policy": s.dead_letter_policy and s.dead_letter_policy.model_dump(),
                "enable_message_ordering": s.enable_message_ordering,
                "filter": s.filter,
            }
            for s in topology.subscriptions
        },
        "pull_subscriptions": {p.name: p.model_dump() for p in topology.pull_subscriptions},
        "queues": {
            q.name: {
                "name": q.name,
                "push_path": q.push_path,
                # max_burst_size is output-only in Cloud Tasks: the local emulator's setting.
                "rate_limits": q.rate_limits.model_dump(exclude={"max_burst_size"}),
                "retry_config": q.retry_config.model_dump(),
                "dispatch_deadline_s": q.dispatch_deadline_s,
            }
            for q in topology.queues
        },
        "jobs": {
            j.name: {
                "name": j.name,
                "push_path": f"/cron/{j.name}",
                "schedule": j.schedule,
                "time_zone": j.time_zone,
                "description": j.description,
                "retry_config": j.retry_config.model_dump(),
                "attempt_deadline_s": j.attempt_deadline_s,
            }
            for j in topology.jobs
        },
        "secrets": topology.all_secret_names(),
        "source_names": [s.name for s in topology.sources],
        "source_secrets": sorted({s.secret for s in topology.sources}),
        "source_topics": list(dict.fromkeys(s.topic for s in topology.sources)),
        "dead_letter_topics": dead_letter_topics,
        "publish_topics": [t for t in topics if t not in dead_letter_topics],
    }


def google_view(topology: Topology, urls: dict[str, str]) -> dict[str, Any]:
    """What each google_* resource must be given, from the model and the code's rules:
    push to the worker's `/pubsub/{name}` and tasks' audience = the worker URL (as
    common/service_identity.py verifies), Scheduler to the cron function's `/cron/{job}`."""
    worker = urls["worker_url"]
    return {
        "google_push_subscriptions": {
            s.name: {
                "name": s.name,
                "topic": s.topic,
                "ack_deadline_seconds": s.ack_deadline_seconds,
                "filter": s.filter,
                "enable_message_ordering": s.enable_message_ordering,
                "message_retention_duration": "604800s",
                "push_endpoint": worker + s.push_path,
                "oidc_service_account_email": urls["push_service_account"],
                "oidc_audience": worker,
                "retry_policy": s.retry_policy
                and {
                    "minimum_backoff": seconds(s.retry_policy.minimum_backoff_s),
                    "maximum_backoff": seconds(s.retry_policy.maximum_backoff_s),
                },
                "dead_letter_policy": s.dead_letter_policy and s.dead_letter_policy.model_dump(),
            }
            for s in topology.subscriptions
        },
        "google_pull_subscriptions": {
            p.name: {
                "name": p.name,
                "topic": p.topic,
                "ack_deadline_seconds": p.ack_deadline_seconds,
                "message_retention_duration": seconds(p.message_retention_s),
            }
            for p in topology.pull_subscriptions
        },
        "google_queues": {
            q.name: {
                "name": q.name,
                "max_dispatches_per_second": q.rate_limits.max_dispatches_per_second,
                "max_concurrent_dispatches": q.rate_limits.max_concurrent_dispatches,
                "max_attempts": q.retry_config.max_attempts,
                "max_retry_duration": (
                    seconds(q.retry_config.max_retry_duration_s)
                    if q.retry_config.max_retry_duration_s
                    else None
                ),
                "min_backoff": seconds(q.retry_config.min_backoff_s),
                "max_backoff": seconds(q.retry_config.max_backoff_s),
                "max_doublings": q.retry_config.max_doublings,
            }
            for q in topology.queues
        },
        "google_scheduler_jobs": {
            j.name: {
                "name": j.name,
                "description": j.description,
                "schedule": j.schedule,
                "time_zone": j.time_zone,
                "attempt_deadline": seconds(j.attempt_deadline_s),
                "retry_count": j.retry_config.retry_count,
                "max_retry_duration": seconds(j.retry_config.max_retry_duration_s),
                "min_backoff_duration": seconds(j.retry_config.min_backoff_s),
                "max_backoff_duration": seconds(j.retry_config.max_backoff_s),
                "max_doublings": j.retry_config.max_doublings,
                "uri": f"{urls['cron_url']}/cron/{j.name}",
                "oidc_service_account_email": urls["scheduler_service_account"],
                "oidc_audience": urls["cron_audience"],
            }
            for j in topology.jobs
        },
    }
