"""GitHub `push` to a branch -> a build request for CI, published on topic `build-requests`.

The request is an outbox message: it commits with the handler's inbox row and is published
after commit, so a push asks for exactly one build however often GitHub redelivers it. Tag
pushes and branch deletions ask for nothing (outcome `ignored`, with the reason).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from handlers.payloads import read
from workers.plugin import Effects, Event, Message

BUILD_REQUESTS = "build-requests"
BRANCH_PREFIX = "refs/heads/"
Text = Field(min_length=1, max_length=256)


class Repository(BaseModel):
    model_config = ConfigDict(extra="ignore")
    full_name: str = Text


class Pusher(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Text


class Push(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ref: str = Text
    after: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")
    deleted: bool = False
    repository: Repository
    pusher: Pusher | None = None


def handle(event: Event, tx: Connection) -> Effects:
    del tx  # nothing to write but the message, which the runner writes with the inbox row
    push = read(event, Push)
    if not push.ref.startswith(BRANCH_PREFIX):
        return Effects.ignore(f"not a branch: {push.ref}")
    if push.deleted:
        return Effects.ignore("branch deleted")
    branch = push.ref.removeprefix(BRANCH_PREFIX)
    request = {
        "repository": push.repository.full_name,
        "branch": branch,
        "commit": push.after,
        "requested_by": push.pusher.name if push.pusher else None,
        "github_delivery": event.id,
    }
    return Effects(
        messages=[
            Message(
                BUILD_REQUESTS,
                request,
                attributes={"repository": push.repository.full_name, "branch": branch},
            )
        ]
    )
