"""Backing up and restoring the database with PostgreSQL's own tools (pg_dump / pg_restore).

A backup is ``pg_dump --format=custom`` of the whole database (schema, PostGIS extension, data, the
migration version), written to a temporary file beside the target and renamed only when pg_dump has
finished, so a crash or a full disk never leaves a half backup under the name. A restore first reads
the file's table of contents (a truncated or foreign file is refused before anything is touched), then
runs ``pg_restore --clean --if-exists --single-transaction --exit-on-error``: the database ends up
exactly as backed up, or, if anything fails, exactly as it was.

The tools come from the PostgreSQL gridsvc runs (the embedded cluster's binaries), else from PATH; the
server may be the embedded one or the one ``GRIDSVC_DATABASE_URL`` names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from gridsvc.db.embedded import find_installation
from gridsvc.errors import FieldProblem, InvalidInputError, SetupProblemError
from gridsvc.services.database import database_url
from gridsvc.settings import Settings


@dataclass(frozen=True)
class BackupReport:
    """What a backup wrote or a restore read."""

    path: Path
    bytes: int
    tables: int
    database: str

    def to_dict(self) -> dict[str, object]:
        """JSON for the CLI."""
        return {"path": str(self.path), "bytes": self.bytes, "tables": self.tables, "database": self.database}


def _tool(settings: Settings, name: str) -> str:
    installation = find_installation(settings.pg_bin_dir)
    if installation is not None and (installation.bin_dir / name).exists():
        return str(installation.bin_dir / name)
    found = shutil.which(name)
    if found is None:
        raise SetupProblemError(f"{name} not found: install postgresql-client (or run `gridsvc db up` once)")
    return found


def _connection(settings: Settings) -> tuple[list[str], dict[str, str], URL]:
    url = make_url(database_url(settings))
    args = [
        "--host",
        url.host or "127.0.0.1",
        "--port",
        str(url.port or 5432),
        "--username",
        url.username or "",
    ]
    env = {**os.environ, "PGPASSWORD": url.password or "", "PGCONNECT_TIMEOUT": "10"}
    return args, env, url


def _table_count(settings: Settings, path: Path) -> int:
    """Tables whose data the file holds, by its table of contents; refuses what pg_restore cannot read."""
    listing = subprocess.run(
        [_tool(settings, "pg_restore"), "--list", str(path)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        reason = listing.stderr.strip().splitlines()[-1] if listing.stderr.strip() else "unreadable"
        raise InvalidInputError(
            f"{path.name} is not a gridsvc backup pg_restore can read: {reason}",
            problems=[FieldProblem("file", reason)],
        )
    return sum(1 for line in listing.stdout.splitlines() if " TABLE DATA " in line)


def backup(settings: Settings, path: Path) -> BackupReport:
    """Write the whole database to ``path`` (custom format); the file appears only when complete."""
    args, env, url = _connection(settings)
    path = path.resolve()
    if not path.parent.is_dir():
        raise InvalidInputError(
            f"no folder {path.parent}", problems=[FieldProblem("file", f"{path.parent} does not exist")]
        )
    partial = path.with_name(f".{path.name}.partial")
    # Made first and private: pg_dump keeps the mode of a file it overwrites, and a backup holds reporters'
    # contacts and the key hashes, which other users of the machine have no business reading.
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)
    partial.chmod(0o600)
    result = subprocess.run(
        [_tool(settings, "pg_dump"), *args, "--format=custom", "--file", str(partial), url.database or ""],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise SetupProblemError(f"pg_dump failed: {result.stderr.strip()}")
    os.replace(partial, path)
    return BackupReport(path, path.stat().st_size, _table_count(settings, path), url.database or "")


def restore(settings: Settings, path: Path) -> BackupReport:
    """Replace the database's contents with the backup in ``path``, in one transaction (see the module)."""
    path = path.resolve()
    if not path.is_file():
        raise InvalidInputError(f"no file {path}", problems=[FieldProblem("file", "not found")])
    tables = _table_count(settings, path)
    args, env, url = _connection(settings)
    result = subprocess.run(
        [
            _tool(settings, "pg_restore"),
            *args,
            "--dbname",
            url.database or "",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise SetupProblemError(
            f"restore failed and was rolled back, the database is as it was: {result.stderr.strip()}"
        )
    return BackupReport(path, path.stat().st_size, tables, url.database or "")
