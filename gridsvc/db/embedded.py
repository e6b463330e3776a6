"""The embedded PostGIS: a PostgreSQL cluster that gridsvc creates, starts and stops in a data folder.

Layout of the data folder (``GRIDSVC_DATA_DIR``, default ``./.gridsvc``)::

    gridsvc-cluster.json   marker written when gridsvc created the cluster (port, user, password)
    pgdata/                PGDATA, owned by the server's user
    run/                   the Unix socket directory (mode 0700)
    log/postgresql.log     the server log

gridsvc only ever starts, stops or migrates a cluster whose folder carries its marker, so it never
touches a cluster it did not create. PostgreSQL refuses to run as root; when gridsvc runs as root
the server runs as an unprivileged system user (``postgres`` by default) and the folders it writes
are handed to that user.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from gridsvc.errors import SetupProblemError

log = logging.getLogger(__name__)

MARKER_NAME = "gridsvc-cluster.json"
# Unix socket paths are limited to 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107
FALLBACK_ROOT = Path("/var/lib/gridsvc")
SUPERUSER = "gridsvc"
DEBIAN_POSTGIS_PACKAGE = "postgresql-{major}-postgis-3"

# Tuned for bulk loads of a city (millions of rows) on a small machine, still crash-safe.
SERVER_CONF = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "'512MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'512MB'",
    "max_wal_size": "'4GB'",
    "checkpoint_timeout": "'15min'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
}


@dataclass(frozen=True)
class PgInstallation:
    """Where the PostgreSQL binaries are and whether PostGIS is there for them."""

    bin_dir: Path
    major: int
    share_dir: Path

    @property
    def has_postgis(self) -> bool:
        """True when the postgis extension is installed for this PostgreSQL."""
        return (self.share_dir / "extension" / "postgis.control").exists()

    def tool(self, name: str) -> str:
        """The full path of one PostgreSQL program (initdb, pg_ctl, ...)."""
        return str(self.bin_dir / name)


@dataclass(frozen=True)
class ClusterStatus:
    """What runs where: the answer of ``gridsvc db status``."""

    data_dir: Path
    created: bool
    running: bool
    pid: int | None
    port: int | None
    socket_dir: Path
    log_file: Path
    server_user: str


def _major_of(bin_dir: Path) -> int | None:
    postgres = bin_dir / "postgres"
    if not postgres.exists():
        return None
    out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def find_installation(bin_dir: Path | None = None) -> PgInstallation | None:
    """Find PostgreSQL: the given folder, else the newest under /usr/lib/postgresql, else on PATH."""
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir))
    else:
        candidates += sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if not (candidate / "initdb").exists() or not (candidate / "pg_ctl").exists():
            continue
        major = _major_of(candidate)
        if major is None:
            continue
        share_dir = _share_dir(candidate, major)
        return PgInstallation(bin_dir=candidate, major=major, share_dir=share_dir)
    return None


def _share_dir(bin_dir: Path, major: int) -> Path:
    pg_config = bin_dir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    debian = Path(f"/usr/share/postgresql/{major}")
    return debian if debian.exists() else bin_dir.parent / "share"


def _is_debian_root() -> bool:
    return os.geteuid() == 0 and Path("/etc/debian_version").exists() and shutil.which("apt-get") is not None


def _apt_install(packages: Sequence[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", " ".join(packages))
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *packages], check=True, env=env, stdout=subprocess.DEVNULL
    )


def ensure_installation(bin_dir: Path | None = None) -> PgInstallation:
    """A PostgreSQL with PostGIS: installed with apt on Debian as root, else an error naming the packages."""
    found = find_installation(bin_dir)
    if found is not None and found.has_postgis:
        return found
    if bin_dir is None and _is_debian_root():
        if found is None:
            _apt_install(["postgresql"])
            found = find_installation()
            if found is None:
                raise SetupProblemError("apt-get installed postgresql, but its initdb/pg_ctl were not found")
        _apt_install([DEBIAN_POSTGIS_PACKAGE.format(major=found.major)])
        found = find_installation()
        if found is not None and found.has_postgis:
            return found
        raise SetupProblemError("PostGIS is still missing after apt-get install; see the apt output above")
    major = found.major if found else 15
    what = "PostGIS" if found else "PostgreSQL and PostGIS"
    raise SetupProblemError(
        f"{what} not found. Install them, e.g. on Debian/Ubuntu: "
        f"`apt-get install postgresql-{major} postgresql-{major}-postgis-3`; on Fedora/RHEL: "
        f"`dnf install postgresql-server postgis`; on macOS: `brew install postgresql postgis`. "
        "Or set GRIDSVC_DATABASE_URL to an existing PostGIS server."
    )


class EmbeddedCluster:
    """One gridsvc-made PostgreSQL cluster in a data folder."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int,
        db_name: str = "gridsvc",
        server_user: str = "postgres",
        bin_dir: Path | None = None,
        extra_conf: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.db_name = db_name
        self._server_user_name = server_user
        self._bin_dir = bin_dir
        self._extra_conf = extra_conf or {}

    # -- paths -----------------------------------------------------------------------------------
    @property
    def marker(self) -> Path:
        """The file that proves gridsvc created this cluster; it stays in the data folder."""
        return self.data_dir / MARKER_NAME

    @property
    def server_dir(self) -> Path:
        """Where PGDATA, the socket and the log live: the data folder, or a fallback the marker names."""
        if self.marker.exists():
            recorded = self.read_marker().get("server_dir")
            if recorded:
                return Path(recorded)
        return self.data_dir

    @property
    def pgdata(self) -> Path:
        """The PGDATA folder."""
        return self.server_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """Where the server's Unix socket lives."""
        return self.server_dir / "run"

    @property
    def log_file(self) -> Path:
        """The server's log file."""
        return self.server_dir / "log" / "postgresql.log"

    @property
    def runs_as_other_user(self) -> bool:
        """True when gridsvc is root and the server must run as an unprivileged user."""
        return os.geteuid() == 0

    @property
    def server_user(self) -> str:
        """The operating-system user the server runs as."""
        return self._server_user_name if self.runs_as_other_user else pwd.getpwuid(os.geteuid()).pw_name

    # -- state -----------------------------------------------------------------------------------
    def is_created(self) -> bool:
        """True when this folder holds a cluster made by gridsvc; refuses a cluster made by anyone else."""
        if not self.marker.exists():
            if (self.data_dir / "pgdata" / "PG_VERSION").exists():
                raise SetupProblemError(
                    f"{self.data_dir / 'pgdata'} holds a PostgreSQL cluster that gridsvc did not create; "
                    "gridsvc will not touch it. Choose another GRIDSVC_DATA_DIR, "
                    "or point GRIDSVC_DATABASE_URL at that server."
                )
            return False
        if self.read_marker().get("state", "ready") != "ready":  # markers before 0.1 had no state
            return False  # an earlier `db up` died while creating it; `up` starts over
        if not (self.pgdata / "PG_VERSION").exists():
            raise SetupProblemError(
                f"{self.marker} says gridsvc made a cluster in {self.pgdata}, but none is there: the data "
                "folder is damaged. Move it away and run `gridsvc db up` again."
            )
        return True

    def read_marker(self) -> dict[str, Any]:
        """The marker's content (state, server folder, user, password, creation time)."""
        data: dict[str, Any] = json.loads(self.marker.read_text(encoding="utf-8"))
        return data

    def url(self) -> str:
        """SQLAlchemy URL of the gridsvc database over the loopback port."""
        password = self.read_marker()["password"]
        return f"postgresql+psycopg2://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{self.db_name}"

    def status(self) -> ClusterStatus:
        """Whether the cluster exists and runs, with its pid, port and socket."""
        created = self.is_created()
        pid = self._running_pid() if created else None
        return ClusterStatus(
            data_dir=self.server_dir,
            created=created,
            running=pid is not None,
            pid=pid,
            port=self._running_port() if pid else None,
            socket_dir=self.socket_dir,
            log_file=self.log_file,
            server_user=self.server_user,
        )

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError, NotADirectoryError):
            return []

    def _running_pid(self) -> int | None:
        lines = self._pidfile_lines()
        if not lines or not lines[0].strip().isdigit():
            return None
        pid = int(lines[0])
        cmdline = Path(f"/proc/{pid}/cmdline")
        if Path("/proc/self").exists():
            # After a restart the pid in a stale postmaster.pid may belong to any other process.
            try:
                args = cmdline.read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                return None
            is_ours = any(a.endswith(b"postgres") for a in args[:1]) and str(self.pgdata).encode() in args
            return pid if is_ours else None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _running_port(self) -> int | None:
        try:
            return int(self._pidfile_lines()[3])
        except (IndexError, ValueError):
            return None

    # -- lifecycle -------------------------------------------------------------------------------
    def up(self) -> bool:
        """Create (first time) and start the cluster, then create the database; False if it already ran."""
        install = ensure_installation(self._bin_dir)
        if not self.is_created():
            self._init(install)
        if self._running_pid() is not None:
            running_port = self._running_port()
            if running_port != self.port:
                raise SetupProblemError(
                    f"the embedded PostGIS in {self.data_dir} already runs on port {running_port}, not "
                    f"{self.port}; run `gridsvc db down` first to change the port"
                )
            self._ensure_database()
            return False
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():
            stale.unlink()  # our own cluster, and no server of ours holds it (checked above)
        self._check_port_free()
        # Everything else (socket folder, listen address) is in gridsvc.conf; the port may change.
        self._pg_ctl(install, "start", "-w", "-t", "60", "-l", str(self.log_file), "-o", f"-p {self.port}")
        self._ensure_database()
        return True

    def down(self) -> bool:
        """Stop the cluster (fast shutdown). Returns False if it was not running."""
        if not self.is_created() or self._running_pid() is None:
            return False
        install = ensure_installation(self._bin_dir)
        self._pg_ctl(install, "stop", "-w", "-m", "fast")
        return True

    def _choose_server_dir(self, user: pwd.struct_passwd) -> Path:
        socket_path_len = len(str(self.data_dir / "run" / f".s.PGSQL.{self.port}"))
        if self._reachable_by(user, self.data_dir) and socket_path_len < MAX_SOCKET_PATH:
            return self.data_dir
        if not self.runs_as_other_user:
            raise SetupProblemError(
                f"the data folder {self.data_dir} makes the server's socket path longer than the "
                f"{MAX_SOCKET_PATH} bytes Unix allows; choose a shorter GRIDSVC_DATA_DIR"
            )
        # As root with a data folder the server user cannot reach (a clone under /root, mode 0700),
        # the server's files go to a folder of its own; the marker in the data folder says where.
        digest = hashlib.sha1(str(self.data_dir).encode(), usedforsecurity=False).hexdigest()[:12]
        fallback = FALLBACK_ROOT / digest
        if (fallback / "pgdata" / "PG_VERSION").exists():
            raise SetupProblemError(
                f"{fallback} already holds a cluster; move it away or choose another data folder"
            )
        FALLBACK_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        fallback.mkdir(mode=0o700, exist_ok=True)
        os.chown(fallback, user.pw_uid, user.pw_gid)
        log.info("the server user cannot reach %s; its files go to %s", self.data_dir, fallback)
        return fallback

    def _write_marker(self, **fields: Any) -> None:
        self.marker.write_text(json.dumps(fields, indent=2), encoding="utf-8")
        self.marker.chmod(0o600)

    def _init(self, install: PgInstallation) -> None:
        user = self._ensure_server_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.marker.exists():
            self._discard_unfinished()
        server_dir = self._choose_server_dir(user)
        password = secrets.token_urlsafe(24)
        marker = {
            "created_by": "gridsvc",
            "state": "initialising",
            "cluster_id": str(uuid.uuid4()),
            "created_at": datetime.now(UTC).isoformat(),
            "server_dir": str(server_dir),
            "user": SUPERUSER,
            "password": password,
            "postgresql_major": install.major,
        }
        # Written first, so a crash part-way leaves a folder gridsvc knows it may clean up.
        self._write_marker(**marker)
        for folder in (self.pgdata, self.socket_dir, self.log_file.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
            if self.runs_as_other_user:
                os.chown(folder, user.pw_uid, user.pw_gid)
        pwfile = self.socket_dir / ".pw"
        pwfile.write_text(password + "\n", encoding="utf-8")
        if self.runs_as_other_user:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        try:
            self._run_as_server(
                [
                    install.tool("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = {**SERVER_CONF, "unix_socket_directories": _quote(str(self.socket_dir)), **self._extra_conf}
        conf_text = "# written by gridsvc\n" + "".join(f"{k} = {v}\n" for k, v in conf.items())
        conf_path = self.pgdata / "gridsvc.conf"
        conf_path.write_text(conf_text, encoding="utf-8")
        with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as main_conf:
            main_conf.write("\ninclude 'gridsvc.conf'\n")
        if self.runs_as_other_user:
            os.chown(conf_path, user.pw_uid, user.pw_gid)
        self._write_marker(**{**marker, "state": "ready"})

    def _discard_unfinished(self) -> None:
        """Remove what an interrupted `db up` of ours left (the marker says it was ours)."""
        server_dir = self.server_dir
        for folder in ("pgdata", "run", "log"):
            shutil.rmtree(server_dir / folder, ignore_errors=True)
        self.marker.unlink()

    def _ensure_server_user(self) -> pwd.struct_passwd:
        name = self.server_user
        try:
            return pwd.getpwnam(name)
        except KeyError:
            if not self.runs_as_other_user:
                raise
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True
        )
        return pwd.getpwnam(name)

    def _reachable_by(self, user: pwd.struct_passwd, folder: Path) -> bool:
        if not self.runs_as_other_user:
            return True
        probe = subprocess.run(
            ["/bin/sh", "-c", 'test -x "$1" && test -r "$1"', "sh", str(folder)],
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            check=False,
        )
        return probe.returncode == 0

    def _run_as_server(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.runs_as_other_user:
            user = pwd.getpwnam(self.server_user)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C.UTF-8", "PGTZ": "UTC"}
        result = subprocess.run(args, capture_output=True, text=True, check=False, cwd="/", env=env, **kwargs)
        if result.returncode != 0:
            raise SetupProblemError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}" + self._log_tail()
            )
        return result

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return f"\nserver log ({self.log_file}):\n" + "\n".join(lines) if lines else ""

    def _pg_ctl(self, install: PgInstallation, *args: str) -> None:
        self._run_as_server([install.tool("pg_ctl"), "-D", str(self.pgdata), *args])

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise SetupProblemError(
                    f"port {self.port} on 127.0.0.1 is already in use by another program; "
                    "set GRIDSVC_PG_PORT to a free port"
                ) from exc

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(
                    host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname="postgres"
                )
                break
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise SetupProblemError(
                        "the embedded PostGIS did not accept connections within 30 s" + self._log_tail()
                    ) from exc
                time.sleep(0.2)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.db_name,))
                if cur.fetchone() is None:
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0").format(
                            sql.Identifier(self.db_name)
                        )
                    )
        finally:
            conn.close()


def _quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
