"""Imports run in the background for the HTTP door: the upload is answered at once with a job to poll.

A city's census takes a minute or more to import, and an HTTP request that long is cut by the proxies and
clients in between (nginx waits 60 s by default). With ``background=true`` the route saves the upload,
starts the import on a thread of its process and answers 202 with a job. The job's state is a JSON file
under the data folder, replaced whole (written aside, then renamed) as the import goes, so every service
process on the machine answers for every job, and a reader never sees half a state.

A job whose process died while it ran is reported failed: its transaction died with the connection, so
nothing of it was written (an import is one transaction).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gridsvc.errors import GridsvcError, NotFoundError
from gridsvc.services import held_reports
from gridsvc.settings import Settings

log = logging.getLogger(__name__)

FOLDER_NAME = "import-jobs"
# Progress is written at most this often: a state file per chunk of 100,000 rows is cheap, but a file of
# many small chunks (chunk_rows=1) would otherwise spend its time writing states.
PROGRESS_EVERY_SECONDS = 1.0
DIED = (
    "the service process running this import stopped before it finished; its transaction was rolled back "
    "with it, so nothing of the file was imported: upload it again"
)


class JobsFullError(GridsvcError):
    """This process already runs as many import jobs as it may (GRIDSVC_MAX_IMPORT_JOBS)."""

    title = "Service busy"


# Jobs running in this process: each holds a database connection and, for a million rows, ~750 MiB.
_running = 0
_running_lock = threading.Lock()


class JobProgress:
    """What a running job reports, for the import service's ``progress`` and ``phase`` callbacks."""

    def __init__(self, settings: Settings, job_id: str, state: dict[str, Any]) -> None:
        self._settings = settings
        self._job_id = job_id
        self._state = state
        self._written = 0.0

    def rows(self, rows_read: int, rows_in_file: int | None) -> None:
        self._state["rows_read"] += rows_read
        self._state["rows_in_file"] = rows_in_file
        self._save()

    def phase(self, text: str) -> None:
        self._state["phase"] = text
        self._save(now=True)

    def _save(self, *, now: bool = False) -> None:
        if now or time.monotonic() - self._written >= PROGRESS_EVERY_SECONDS:
            _write(self._settings, self._job_id, self._state)
            self._written = time.monotonic()


# What a job runs: the import with these callbacks, returning ("done", the answer's body) or ("failed", a
# problem body). The route makes it, since it knows how answers and problems are shaped.
JobWork = Callable[[JobProgress], tuple[str, dict[str, Any]]]


def _root(settings: Settings) -> Path:
    return settings.resolved_data_dir / FOLDER_NAME


def _path(settings: Settings, job_id: str) -> Path:
    return _root(settings) / f"{job_id}.json"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write(settings: Settings, job_id: str, state: dict[str, Any]) -> None:
    target = _path(settings, job_id)
    aside = target.with_name(f".{target.name}.{threading.get_ident()}")
    aside.write_text(json.dumps(state, ensure_ascii=False, default=str), encoding="utf-8")
    aside.replace(target)


def start(
    settings: Settings, work: JobWork, *, layer: str, file: str, cleanup: Callable[[], None]
) -> dict[str, Any]:
    """Start ``work`` on a thread of this process; return the job's first state. ``cleanup`` (removing
    the saved upload) runs when the work ends, however it ends."""
    global _running
    with _running_lock:
        if _running >= settings.max_import_jobs:
            cleanup()
            raise JobsFullError(
                f"this service process already runs {_running} import jobs (GRIDSVC_MAX_IMPORT_JOBS): "
                "upload again when one has ended"
            )
        _running += 1
    root = _root(settings)
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_expired(settings)
    except BaseException:
        _ended()
        cleanup()
        raise
    job_id = secrets.token_urlsafe(16)
    state: dict[str, Any] = {
        "job_id": job_id,
        "status": "running",
        "layer": layer,
        "file": file,
        "started_at": _now(),
        "finished_at": None,
        "phase": "reading the file",
        "rows_read": 0,
        "rows_in_file": None,
        "process": {"host": socket.gethostname(), "pid": os.getpid()},
    }
    try:
        _write(settings, job_id, state)
        thread = threading.Thread(
            target=_run, args=(settings, job_id, dict(state), work, cleanup), name=f"import-job-{job_id}"
        )
        thread.daemon = True  # a stopping service does not wait for it: the job is then reported failed
        thread.start()
    except BaseException:
        _ended()
        cleanup()
        raise
    return state


def _ended() -> None:
    global _running
    with _running_lock:
        _running -= 1


def _run(
    settings: Settings, job_id: str, state: dict[str, Any], work: JobWork, cleanup: Callable[[], None]
) -> None:
    try:
        status, body = work(JobProgress(settings, job_id, state))
    except Exception:  # the route's work shapes every expected failure; this is a bug or a lost database
        log.exception("import job %s failed", job_id)
        status, body = (
            "failed",
            {
                "title": "Internal error",
                "status": 500,
                "detail": "the import failed inside the service; nothing of the file was imported",
            },
        )
    finally:
        cleanup()
        _ended()
    state.update(status=status, finished_at=_now(), phase=None)
    state["result" if status == "done" else "error"] = body
    _write(settings, job_id, state)


def job(settings: Settings, job_id: str) -> dict[str, Any]:
    """A job's state; a running job whose process is gone is reported failed. NotFoundError when there
    is no such job (or it has expired)."""
    path = _path(settings, job_id)
    if not held_reports.REPORT_ID.fullmatch(job_id):
        raise _gone(job_id)
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _gone(job_id) from None
    if state["status"] == "running" and not _alive(state["process"]):
        state.update(
            status="failed", phase=None, error={"title": "Import stopped", "status": 503, "detail": DIED}
        )
    return state


def _alive(process: dict[str, Any]) -> bool:
    if process.get("host") != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    try:
        os.kill(int(process["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, as another user
        return True
    return True


def remove_expired(settings: Settings) -> int:
    """Remove the states of jobs that ended longer ago than a held report lives; returns how many."""
    root = _root(settings)
    oldest = time.time() - settings.held_report_hours * 3600.0
    removed = 0
    for path in root.glob("*.json"):
        try:
            if path.stat().st_mtime < oldest:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process removed it meanwhile
            continue
    return removed


def _gone(job_id: str) -> NotFoundError:
    return NotFoundError(f"no import job {job_id!r}: it never existed or ended too long ago")
