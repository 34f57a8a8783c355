"""The local stack as a user runs it: `hookyard dev` in its own process, driven over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from common.secrets import env_var_for
from common.topology import get_topology
from tests.support.dev_process import launch_dev
from tests.support.samples import samples
from tests.support.secret_scan import assert_log_clean
from tests.support.stack import (
    ADMIN_TOKEN,
    TEST_SECRETS,
    free_port,
    signed_stripe,
    stripe_event,
    wait_for,
)

pytestmark = pytest.mark.e2e


@dataclass
class DevStack:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def start_dev(data_dir: Path, port: int) -> DevStack:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKYARD_")}
    env.update(TEST_SECRETS)
    env.update({"HOOKYARD_DATA_DIR": str(data_dir), "HOOKYARD_PORT": str(port)})
    env["HOOKYARD_PUBSUB_PORT"] = "0"  # stacks run side by side: never Google's fixed 8085
    env["HOOKYARD_NOTIFY_ALLOW_LOOPBACK"] = "true"  # the test's receiver is on 127.0.0.1
    process, log_path = launch_dev(env, data_dir, port)
    return DevStack(process, f"http://127.0.0.1:{port}", data_dir, env, log_path)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    data_dir = tmp_path_factory.mktemp("e2e") / "data"
    stack = start_dev(data_dir, free_port())
    try:
        yield stack
    finally:
        if stack.process.poll() is None:
            stack.stop()
    assert_log_clean(stack.log_path, data_dir)


def _alive(pid: int) -> bool:
    """A zombie has exited; only its parent has not collected it yet."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _send(client: httpx.Client, body: bytes) -> int:
    return client.post("/webhooks/stripe", content=body, headers=signed_stripe(body)).status_code


def test_payments_story_exact_balance_and_no_double_apply(dev: DevStack) -> None:
    client = httpx.Client(
        base_url=dev.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert client.put("/admin/accounts/acct_e2e", json={"currency": "usd"}).status_code == 201
    events = [
        stripe_event(f"evt_pay_{i}", "payment_intent.succeeded", "acct_e2e", amount_received=amount)
        for i, amount in enumerate([1000, 2500, 400])
    ]
    events.append(
        stripe_event("evt_ref_1", "charge.refunded", "acct_e2e", id="ch_1", amount_refunded=300)
    )
    for body in events:
        assert _send(client, body) == 202
        assert _send(client, body) == 202  # the sender retries: same event twice

    forged = stripe_event(
        "evt_forged", "payment_intent.succeeded", "acct_e2e", amount_received=10**6
    )
    assert (
        client.post(
            "/webhooks/stripe", content=forged, headers=signed_stripe(forged, secret="whsec_wrong")
        ).status_code
        == 401
    )
    huge = b'{"id":"evt_big","pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert (
        client.post("/webhooks/stripe", content=huge, headers=signed_stripe(huge)).status_code
        == 413
    )
    orphan = stripe_event(
        "evt_orphan", "payment_intent.succeeded", "acct_nobody", amount_received=99
    )
    assert _send(client, orphan) == 202

    expected = 1000 + 2500 + 400 - 300
    wait_for(
        lambda: client.get("/admin/accounts/acct_e2e").json()["available"] == expected, timeout=60
    )
    dead = wait_for(
        lambda: client.get("/admin/dead-letters?source=stripe").json()["items"], timeout=60
    )
    assert [d["event_id"] for d in dead] == ["evt_orphan"]
    assert "unknown account" in dead[0]["reason"]
    time.sleep(1.0)  # let any stray duplicate land before the final check
    account = client.get("/admin/accounts/acct_e2e").json()
    assert account == {
        "id": "acct_e2e", "currency": "usd", "notify_url": None, "available": expected, "held": 0,
        "pending_notifications": 0,
    }  # fmt: skip


def test_hookyard_send_signs_like_the_sender(dev: DevStack, tmp_path: Path) -> None:
    payload = tmp_path / "event.json"
    payload.write_bytes(
        stripe_event("evt_cli", "payment_intent.succeeded", "acct_e2e", amount_received=1)
    )
    result = subprocess.run(
        [sys.executable, "-m", "hookyard", "send", "stripe", str(payload), "--url",
         dev.url, "--json"],
        env=dev.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "status": 202, "body": {"status": "accepted", "source": "stripe", "event_id": "evt_cli"},
    }  # fmt: skip


@pytest.mark.parametrize("source", ["stripe", "standard", "github", "shopify", "slack", "twilio"])
def test_every_source_signed_by_hookyard_send_is_202_and_forged_is_401(
    dev: DevStack, tmp_path: Path, source: str
) -> None:
    sample = next(s for s in samples(f"e2e{time.monotonic_ns()}") if s.source == source)
    payload = tmp_path / "body"
    payload.write_bytes(sample.body)
    args = [sys.executable, "-m", "hookyard", "send", source, str(payload), "--json",
            "--url", dev.url, "--event-id", sample.event_id,
            "--content-type", sample.media_type]  # fmt: skip
    if sample.event_type:
        args += ["--event-type", sample.event_type]
    signed = subprocess.run(
        args, env=dev.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert json.loads(signed.stdout)["status"] == 202

    spec = get_topology().source(source)
    assert spec is not None
    forged_env = {**dev.env, env_var_for(spec.secret): "a-secret-the-sender-does-not-have"}
    if source == "standard":
        forged_env[env_var_for(spec.secret)] = "whsec_" + "B" * 43 + "="
    forged = subprocess.run(
        args, env=forged_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert forged.returncode == 1
    result = json.loads(forged.stdout)
    assert result["status"] == 401
    assert result["body"]["detail"] == "signature mismatch"


def test_notify_url_gets_one_signed_notification_per_change(dev: DevStack) -> None:
    """The receiver fails twice first; the queue retries; each change arrives once, signed."""
    from standardwebhooks.webhooks import Webhook

    from tests.support.receiver import receiver

    client = httpx.Client(
        base_url=dev.url, timeout=60, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    with receiver(statuses=[503, 500]) as hook:
        client.put("/admin/accounts/acct_notify", json={"currency": "usd", "notify_url": hook.url})
        for i, amount in enumerate([500, 120]):
            body = stripe_event(f"evt_nt{i}", "payment_intent.succeeded", "acct_notify",
                                amount_received=amount)  # fmt: skip
            assert _send(client, body) == 202
            assert _send(client, body) == 202

        def settled() -> bool:
            account = client.get("/admin/accounts/acct_notify").json()
            return bool(account["available"] == 620 and account["pending_notifications"] == 0)

        wait_for(settled, timeout=60, interval=0.2)
        received = list(hook.received)
    key = (dev.data_dir / "secrets" / "notify-signing-key").read_text().strip()
    bodies = [json.loads(r.body) for r in received if Webhook(key).verify(r.body, r.headers)]
    assert len(bodies) == len(received) == 4  # 2 failed attempts + 2 changes
    delivered_ids = {r.headers["Webhook-Id"] for r in received[2:]}
    assert len(delivered_ids) == 2
    assert {b["caused_by"] for b in bodies} == {"evt_nt0", "evt_nt1"}
    assert max(b["available"] for b in bodies) == 620


def _cli(dev: DevStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookyard", *args, "--url", dev.url],
        env={**dev.env, "HOOKYARD_ADMIN_TOKEN": ADMIN_TOKEN, "USER": "oncall"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_operator_story_dead_letters_replay_and_audit(dev: DevStack) -> None:
    client = httpx.Client(base_url=dev.url, timeout=60,
                          headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
    for i, amount in enumerate([700, 300]):
        body = stripe_event(f"evt_ops{i}", "payment_intent.succeeded", "acct_ops",
                            amount_received=amount)  # fmt: skip
        assert _send(client, body) == 202

    def listed() -> list[dict[str, object]]:
        result = _cli(dev, "dlq", "list", "--source", "stripe", "--json")
        assert result.returncode == 0, result.stderr
        return [d for d in json.loads(result.stdout) if str(d["event_id"]).startswith("evt_ops")]

    rows = wait_for(lambda: len(found := listed()) == 2 and found, timeout=60)
    assert all("unknown account" in str(r["reason"]) for r in rows)

    assert client.put("/admin/accounts/acct_ops", json={"currency": "usd"}).status_code == 201
    replay = _cli(dev, "dlq", "replay", "--source", "stripe", "--reason", "account created",
                  "--json")  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["state"] == "done"
    wait_for(lambda: client.get("/admin/accounts/acct_ops").json()["available"] == 1000)

    again = _cli(dev, "dlq", "replay", "--source", "stripe", "--reason", "account created",
                 "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    time.sleep(1.0)
    assert client.get("/admin/accounts/acct_ops").json()["available"] == 1000

    from hookyard.local_postgres import LocalPostgres

    engine = sa.create_engine(LocalPostgres(dev.data_dir / "postgres").url("hookyard"))
    try:
        with engine.connect() as conn:
            actions = conn.execute(sa.text(
                "SELECT actor, action, reason FROM operator_actions "
                "WHERE action = 'replay.start' ORDER BY id")).all()  # fmt: skip
    finally:
        engine.dispose()
    assert [tuple(a) for a in actions][-2:] == [
        ("oncall", "replay.start", "account created"),
        ("oncall", "replay.start", "account created"),
    ]


# Last on purpose: it stops the module's stack.
def test_sigterm_stops_everything_and_restart_keeps_data(dev: DevStack) -> None:
    pid_file = dev.data_dir / "postgres" / "pgdata" / "postmaster.pid"
    assert pid_file.exists()
    postmaster = int(pid_file.read_text().split()[0])
    assert dev.stop() == 0
    assert not pid_file.exists()
    wait_for(lambda: not _alive(postmaster), timeout=60)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{dev.url}/health/live", timeout=1)

    again = start_dev(dev.data_dir, free_port())
    try:
        account = httpx.get(
            f"{again.url}/admin/accounts/acct_e2e",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=60,
        ).json()
        assert account["available"] >= 1000 + 2500 + 400 - 300
    finally:
        assert again.stop() == 0
