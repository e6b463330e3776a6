"""Problem reports of uploads that stored nothing (a dry run, a refused file), held on disk to download.

A recorded import keeps its problems in the database with its survey batch (``GET
/v1/imports/{id}/problems.csv``). A dry run or a refused file writes nothing to the database, by design,
yet that is when GIS staff most need the report as a file to open in QGIS. So the HTTP door has the report
written as ``problems.gpkg`` and ``problems.csv`` into a folder of its own under the data folder, named by
an unguessable id, and serves it until it expires (``GRIDSVC_HELD_REPORT_HOURS`` after it was written).
The CLI writes the same report with ``--report``.

Files, not rows: a report held in a table would be a write by an import that promised none. Every
service process on the machine shares the data folder, so any of them serves a report another wrote.
"""

from __future__ import annotations

import re
import secrets
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from gridsvc.errors import NotFoundError
from gridsvc.settings import Settings

FOLDER_NAME = "import-reports"
FORMATS = ("gpkg", "csv")
REPORT_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# A report is written under this prefix and renamed into place whole, so a reader never sees half of it.
_WRITING = ".writing-"


def _root(settings: Settings) -> Path:
    return settings.resolved_data_dir / FOLDER_NAME


def _lifetime_seconds(settings: Settings) -> float:
    return settings.held_report_hours * 3600.0


def hold(settings: Settings, write: Callable[[Path], None]) -> str:
    """Hold a new report: ``write`` puts its files (one per format: ``problems.gpkg``, ``problems.csv``)
    into the folder it is given. Returns the report's id; expired reports are removed first."""
    root = _root(settings)
    root.mkdir(parents=True, exist_ok=True)
    remove_expired(settings)
    report_id = secrets.token_urlsafe(16)  # 22 characters of REPORT_ID's alphabet
    writing = root / f"{_WRITING}{report_id}"
    writing.mkdir()
    try:
        write(writing)
        # The folder's own time is the last file written, so the report's lifetime starts when it is whole.
        writing.rename(root / report_id)
    except BaseException:
        shutil.rmtree(writing, ignore_errors=True)
        raise
    return report_id


def remove_expired(settings: Settings) -> int:
    """Remove the held reports older than their lifetime (and any half-written one as old); returns how
    many."""
    root = _root(settings)
    if not root.is_dir():
        return 0
    oldest = time.time() - _lifetime_seconds(settings)
    removed = 0
    for folder in root.iterdir():
        ours = REPORT_ID.fullmatch(folder.name.removeprefix(_WRITING))
        try:
            expired = folder.stat().st_mtime < oldest
        except FileNotFoundError:  # another process removed it meanwhile
            continue
        if ours and expired:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def expires_at(settings: Settings, report_id: str) -> datetime:
    """When the held report ``report_id`` stops being served; NotFoundError when it is gone."""
    try:
        written = (_root(settings) / report_id).stat().st_mtime
    except (FileNotFoundError, ValueError):
        raise _gone(report_id) from None
    return datetime.fromtimestamp(written + _lifetime_seconds(settings), UTC)


def open_report(settings: Settings, report_id: str, fmt: str) -> BinaryIO:
    """The file of a held report in one format, opened: a report removed meanwhile (expired, by another
    process) still reads to its end. NotFoundError for an unknown, malformed or expired id."""
    if not REPORT_ID.fullmatch(report_id) or fmt not in FORMATS:
        raise _gone(report_id)
    folder = _root(settings) / report_id
    if expires_at(settings, report_id) < datetime.now(UTC):
        shutil.rmtree(folder, ignore_errors=True)
        raise _gone(report_id)
    try:
        return (folder / f"problems.{fmt}").open("rb")
    except FileNotFoundError:
        raise _gone(report_id) from None


def _gone(report_id: str) -> NotFoundError:
    return NotFoundError(f"no held import report {report_id!r}: it never existed or has expired")
