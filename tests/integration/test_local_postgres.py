"""The embedded PostgreSQL against other users of the machine and against a second owner."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from common.errors import AlreadyRunning
from hookyard.local_postgres import SERVICE_USER, LocalPostgres, _bin_dir, allows_trust
from tests.support.stack import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
AS_ROOT = os.geteuid() == 0


def _postmaster(pg: LocalPostgres) -> int | None:
    try:
        return int((pg.pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def _cleanup(pg: LocalPostgres) -> Iterator[None]:
    """Whatever a test leaves running (an orphaned postmaster included) is stopped."""
    try:
        yield
    finally:
        pg.stop()
        pid = _postmaster(pg)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGQUIT)
            wait_for(lambda: not _alive(pid), timeout=60)


def _select_one(url: str) -> object:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1").scalar()
    finally:
        engine.dispose()


def _trust_url(pg: LocalPostgres) -> str:
    return f"postgresql+pg8000://postgres@/postgres?unix_sock={pg.socket_path}"


def _psql(
    pg: LocalPostgres, password: str | None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(user) if user else None
    return subprocess.run(
        [str(_bin_dir() / "psql"), "-w", "-h", str(pg.socket_dir), "-U", "postgres",
         "-d", "postgres", "-tAc", "SELECT 1"],
        env={"PATH": os.environ.get("PATH", ""), **({"PGPASSWORD": password} if password else {})},
        user=entry.pw_uid if entry else None, group=entry.pw_gid if entry else None,
        extra_groups=[] if entry else None, cwd="/",
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _assert_locked_down(pg: LocalPostgres) -> None:
    socket_dir = os.stat(pg.socket_dir)
    assert stat.S_IMODE(socket_dir.st_mode) == 0o700
    server_uid = pwd.getpwnam(SERVICE_USER).pw_uid if AS_ROOT else os.geteuid()
    assert socket_dir.st_uid == server_uid
    assert stat.S_IMODE(os.stat(pg.password_file).st_mode) == 0o600
    assert not allows_trust((pg.pgdata / "pg_hba.conf").read_text())
    assert pg.password not in (pg.pgdata / "server.log").read_text()

    assert _select_one(pg.url()) == 1
    assert _psql(pg, pg.password).stdout.strip() == "1"
    wrong = _psql(pg, "not-the-password")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr
    without = _psql(pg, None)
    assert without.returncode != 0
    assert "no password supplied" in without.stderr


def test_only_the_owner_with_the_password_gets_in(tmp_path: Path) -> None:
    pg = LocalPostgres(tmp_path / "pg", fast_unsafe=True)
    with _cleanup(pg):
        pg.start()
        _assert_locked_down(pg)
        if AS_ROOT:
            # Another OS user, even holding the password, cannot reach the socket.
            other = _psql(pg, pg.password, user="nobody")
            assert other.returncode != 0
            assert "Permission denied" in other.stderr


def test_a_trust_data_directory_from_before_is_upgraded_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    """What `make run` left behind before passwords: initdb --auth=trust, a readable socket."""
    old = LocalPostgres(tmp_path / "pg", fast_unsafe=True)
    with _cleanup(old):
        old.pgdata.mkdir(parents=True)
        old._prepare_user()
        old._run("initdb", "-D", str(old.pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions", timeout=120)  # fmt: skip
        old.socket_dir.mkdir(parents=True, exist_ok=True)
        if AS_ROOT:
            entry = pwd.getpwnam(SERVICE_USER)
            os.chown(old.socket_dir, entry.pw_uid, entry.pw_gid)
        old.socket_dir.chmod(0o755)
        options = f"-c listen_addresses='' -c unix_socket_directories='{old.socket_dir}'"
        old._run("pg_ctl", "-D", str(old.pgdata), "-l", str(old.pgdata / "server.log"),
                 "-o", options, "-w", "-t", "60", "start", timeout=90)  # fmt: skip
        engine = sa.create_engine(_trust_url(old), poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE kept (v text)")
                conn.exec_driver_sql("INSERT INTO kept VALUES ('from the trust era')")
        finally:
            engine.dispose()
        old._run("pg_ctl", "-D", str(old.pgdata), "-m", "fast", "-w", "stop")
        assert allows_trust((old.pgdata / "pg_hba.conf").read_text())

    pg = LocalPostgres(tmp_path / "pg", fast_unsafe=True)
    with _cleanup(pg):
        pg.start()
        _assert_locked_down(pg)
        engine = sa.create_engine(pg.url(), poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT v FROM kept").scalars().all() == [
                    "from the trust era"
                ]
        finally:
            engine.dispose()


def test_a_second_owner_is_refused_and_a_dead_owners_server_is_taken_over(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pg"
    holder_code = (
        "import sys, time; from pathlib import Path;"
        "from hookyard.local_postgres import LocalPostgres;"
        "LocalPostgres(Path(sys.argv[1]), fast_unsafe=True).start();"
        "print('ready', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    pg = LocalPostgres(data_dir, fast_unsafe=True)
    with _cleanup(pg):
        try:
            assert holder.stdout is not None
            for line in holder.stdout:
                if line.strip() == "ready":
                    break
            first_postmaster = _postmaster(pg)
            assert first_postmaster is not None

            with pytest.raises(AlreadyRunning) as refused:
                pg.start()
            assert refused.value.pid == holder.pid
            assert f"(pid {holder.pid})" in str(refused.value)
            pg.stop()  # a refused object must not touch the owner's server
            assert _postmaster(pg) == first_postmaster
            assert _select_one(pg.url()) == 1

            holder.send_signal(signal.SIGKILL)  # the owner dies; its server does not
            holder.wait(timeout=60)
            assert _alive(first_postmaster)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(timeout=60)

        pg.start()
        assert not _alive(first_postmaster)
        assert _postmaster(pg) not in (None, first_postmaster)
        assert _select_one(pg.url()) == 1
        pg.stop()
        assert _postmaster(pg) is None
