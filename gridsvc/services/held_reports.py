"""Problem reports of uploads that stored nothing (a dry run, a refused file), held on disk to download.

A recorded import keeps its problems in the database with its survey batch (``GET
/v1/imports/{id}/problems.csv``). A dry run or a refused file writes nothing to the database, by design,
yet that is when GIS staff most need the report as a file to open in QGIS. So the HTTP door writes it as
``problems.gpkg`` and ``problems.csv`` into a folder of its own under the data folder, named by an
unguessable id, and serves it until it expires (``GRIDSVC_HELD_REPORT_HOURS``). The CLI writes the same
report with ``--report``.

Files, not rows: a report held in a table would be a write by an import that promised none. Every
service process on the machine shares the data folder, so any of them serves a report another wrote.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from gridsvc.errors import NotFoundError
from gridsvc.settings import Settings

FOLDER_NAME = "import-reports"
FORMATS = ("gpkg", "csv")
REPORT_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def _root(settings: Settings) -> Path:
    return settings.resolved_data_dir / FOLDER_NAME


def _lifetime_seconds(settings: Settings) -> float:
    return settings.held_report_hours * 3600.0


def files_in(folder: Path) -> tuple[Path, ...]:
    """The report files an import writes into a held folder, one per format."""
    return tuple(folder / f"problems.{fmt}" for fmt in FORMATS)


def new_folder(settings: Settings) -> Path:
    """A fresh, empty folder for one upload's report; expired ones are removed first."""
    root = _root(settings)
    root.mkdir(parents=True, exist_ok=True)
    remove_expired(settings)
    folder = root / secrets.token_urlsafe(16)  # 22 characters of REPORT_ID's alphabet
    folder.mkdir()
    return folder


def discard(folder: Path) -> None:
    """Remove a held folder and what is in it."""
    shutil.rmtree(folder, ignore_errors=True)


def remove_expired(settings: Settings) -> int:
    """Remove the held reports older than their lifetime; returns how many."""
    root = _root(settings)
    if not root.is_dir():
        return 0
    oldest = time.time() - _lifetime_seconds(settings)
    removed = 0
    for folder in root.iterdir():
        try:
            expired = folder.stat().st_mtime < oldest
        except FileNotFoundError:  # another process removed it meanwhile
            continue
        if expired and REPORT_ID.fullmatch(folder.name):
            discard(folder)
            removed += 1
    return removed


def expires_at(settings: Settings, report_id: str) -> datetime:
    """When the held report ``report_id`` stops being served."""
    created = (_root(settings) / report_id).stat().st_mtime
    return datetime.fromtimestamp(created + _lifetime_seconds(settings), UTC)


def report_file(settings: Settings, report_id: str, fmt: str) -> Path:
    """The file of a held report in one format; NotFoundError for an unknown, malformed or expired id."""
    folder = _root(settings) / report_id
    path = folder / f"problems.{fmt}"
    if not REPORT_ID.fullmatch(report_id) or fmt not in FORMATS or not path.is_file():
        raise NotFoundError(f"no held import report {report_id!r}: it never existed or has expired")
    if expires_at(settings, report_id) < datetime.now(UTC):
        discard(folder)
        raise NotFoundError(f"no held import report {report_id!r}: it never existed or has expired")
    return path
