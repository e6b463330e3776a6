"""Imports run in the background for the HTTP door: the upload is answered at once with a job to poll.

A city's census takes a minute or more to import, and an HTTP request that long is cut by the proxies and
clients in between (nginx waits 60 s by default). With ``background=true`` the route saves the upload,
starts the import on a thread of its process and answers 202 with a job. The job's state is a JSON file
under the data folder, replaced whole (written aside, then renamed) as the import goes, so every service
process on the machine answers for every job, and a reader never sees half a state.

A running job can be cancelled (``POST /v1/imports/jobs/{job_id}/cancel``): the request is written beside
the job's state, for whichever process runs it, and that process cancels the import at once (its running
statement too); its transaction rolls back and the job ends ``cancelled``. A stopping service cancels its
running jobs the same way and waits for them to roll back. An import already committing is left to finish:
it ends ``done``.

A job whose process died while it ran is reported failed. Its transaction died with the connection, so
nothing of it was written (an import is one transaction), unless the process died in the instant between
the commit and writing the job's end: the answer says to check the imports before uploading again. The
process is known by its pid and its start time, so a new process given the same pid (a restarted
container's pid 1) is not taken for it.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from gridsvc.errors import ConflictError, GridsvcError, NotFoundError
from gridsvc.services import held_reports
from gridsvc.services.imports import Cancellation
from gridsvc.settings import Settings

log = logging.getLogger(__name__)

FOLDER_NAME = "import-jobs"
# Progress is written at most this often: a state file per chunk of 100,000 rows is cheap, but a file of
# many small chunks (chunk_rows=1) would otherwise spend its time writing states.
PROGRESS_EVERY_SECONDS = 1.0
DIED = (
    "the service process running this import stopped before the job ended. Its transaction was rolled back "
    "with it, so nothing of the file was imported, unless it stopped in the instant after committing: "
    "check the recorded imports of this file (GET /v1/imports?file={file}) before uploading it again"
)


FULL = (
    "this service process already runs as many background imports as it may (GRIDSVC_MAX_IMPORT_JOBS): "
    "upload again when one has ended"
)


class JobsFullError(GridsvcError):
    """This process already runs as many import jobs as it may (GRIDSVC_MAX_IMPORT_JOBS)."""

    title = "Service busy"


# What a stopping service says its cancelled jobs were stopped by.
SERVICE_STOPPED = "the service stopped while the import ran"
# How often a process looks for cancel requests written by another process (its own it takes at once).
CANCEL_POLL_SECONDS = 0.5

# Jobs running in this process: each holds a database connection and, for a million rows, ~750 MiB.
_running = 0
_running_lock = threading.Lock()


@dataclass(frozen=True)
class _Running:
    """A job running in this process: what cancels it, the thread running it, and where its files are."""

    cancellation: Cancellation
    thread: threading.Thread
    settings: Settings


_here: dict[str, _Running] = {}  # by job id
_watching = False  # whether this process's watcher for other processes' cancel requests runs


class JobProgress:
    """What a running job reports, for the import service's ``progress`` and ``phase`` callbacks."""

    def __init__(self, settings: Settings, job_id: str, state: dict[str, Any]) -> None:
        self._settings = settings
        self._job_id = job_id
        self._state = state
        self._written = 0.0
        self.cancellation = Cancellation()  # for the import: a cancel of the job stops it

    def rows(self, rows_read: int, rows_in_file: int | None) -> None:
        self._state["rows_read"] += rows_read
        self._state["rows_in_file"] = rows_in_file
        self._save()

    def phase(self, text: str) -> None:
        self._state["phase"] = text
        self._save(now=True)

    def _save(self, *, now: bool = False) -> None:
        if now or time.monotonic() - self._written >= PROGRESS_EVERY_SECONDS:
            self._written = time.monotonic()
            try:
                _write(self._settings, self._job_id, self._state)
            except OSError:  # progress is for people watching: a full disk must not stop the import
                log.warning("import job %s: progress not saved", self._job_id, exc_info=True)


# What a job runs: the import with these callbacks, returning ("done", the answer's body) or ("failed", a
# problem body). The route makes it, since it knows how answers and problems are shaped.
JobWork = Callable[[JobProgress], tuple[str, dict[str, Any]]]


def _root(settings: Settings) -> Path:
    return settings.resolved_data_dir / FOLDER_NAME


def _path(settings: Settings, job_id: str) -> Path:
    return _root(settings) / f"{job_id}.json"


def _cancel_path(settings: Settings, job_id: str) -> Path:
    return _root(settings) / f"{job_id}.cancel.json"


def _started_ticks(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the start time is field 22.
    return stat.rsplit(")", 1)[1].split()[19]


def _this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _started_ticks(pid)}


def has_room(settings: Settings) -> bool:
    """Whether this process may start another job now (checked again by :func:`start`): lets the door
    refuse before it saves an upload it could not import."""
    with _running_lock:
        return _running < settings.max_import_jobs


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _write(settings: Settings, job_id: str, state: dict[str, Any]) -> None:
    target = _path(settings, job_id)
    aside = target.with_name(f".{target.name}.{threading.get_ident()}")
    aside.write_text(json.dumps(state, ensure_ascii=False, default=str), encoding="utf-8")
    aside.replace(target)


def start(
    settings: Settings,
    work: JobWork,
    *,
    layer: str,
    file: str,
    cleanup: Callable[[], None],
    started_by: str | None = None,
    rows_in_file: int | None = None,
) -> dict[str, Any]:
    """Start ``work`` on a thread of this process; return the job's first state. ``cleanup`` (removing
    the saved upload) runs when the work ends, however it ends; ``started_by`` names the key that asked;
    ``rows_in_file`` is the file's count where the caller has it (the job's progress shows it at once)."""
    global _running
    with _running_lock:
        if _running >= settings.max_import_jobs:
            cleanup()
            raise JobsFullError(FULL)
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
        "started_by": started_by,
        "started_at": _now(),
        "finished_at": None,
        "phase": "reading the file",
        "rows_read": 0,
        "rows_in_file": rows_in_file,
        "process": _this_process(),
    }
    progress = JobProgress(settings, job_id, dict(state))
    try:
        _write(settings, job_id, state)
        thread = threading.Thread(
            target=_run, args=(settings, job_id, progress, work, cleanup), name=f"import-job-{job_id}"
        )
        # A stopping service cancels its jobs and waits for them (stop_all); daemon, so that an exit without
        # that wait is not held up by one (the job then reads failed: its process is gone).
        thread.daemon = True
        with _running_lock:
            _here[job_id] = _Running(progress.cancellation, thread, settings)
        _watch_cancel_requests()
        thread.start()
    except BaseException:
        _ended(job_id)
        cleanup()
        raise
    return state


def _ended(job_id: str | None = None) -> None:
    with _running_lock:
        _free_slot(job_id)


def _free_slot(job_id: str | None) -> None:
    """Give back the job's place; hold ``_running_lock``."""
    global _running
    _running -= 1
    _here.pop(job_id or "", None)


def _run(
    settings: Settings, job_id: str, progress: JobProgress, work: JobWork, cleanup: Callable[[], None]
) -> None:
    state = progress._state
    status, body = (
        "failed",
        {
            "title": "Import stopped",
            "status": 500,
            "detail": "the import was stopped inside the service; nothing of the file was imported",
        },
    )
    try:
        status, body = work(progress)
    finally:  # also for an interrupt or exit, which leave the job failed rather than running for ever
        state.update(status=status, finished_at=_now(), phase=None)
        state["result" if status == "done" else "error"] = body
        try:
            cleanup()
        except Exception:  # a leftover upload costs only disk in the temporary folder: the job has ended
            log.exception("import job %s: its upload could not be removed", job_id)
        finally:
            # The final state and the free place in one step: a client that reads "done" and uploads the
            # next file at once finds the place free (not a spurious 503), and a stopping service, which
            # waits for the job's place (stop_all), finds the state written.
            with _running_lock:
                try:
                    _write(settings, job_id, state)
                except OSError:
                    log.exception(
                        "import job %s ended %s, but its state could not be written", job_id, status
                    )
                finally:
                    _free_slot(job_id)


def job(settings: Settings, job_id: str) -> dict[str, Any]:
    """A job's state, with ``cancel_requested`` (by whom, when) once a cancel was asked for; a running job
    whose process is gone is reported failed. NotFoundError when there is no such job (or it has
    expired)."""
    if not held_reports.REPORT_ID.fullmatch(job_id):
        raise _gone(job_id)
    path = _path(settings, job_id)
    try:
        if path.stat().st_mtime < time.time() - settings.held_report_hours * 3600.0:
            raise _gone(job_id)
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _gone(job_id) from None
    asked = _cancel_request(settings, job_id)
    if asked is not None:
        state["cancel_requested"] = asked
    if state["status"] == "running" and not _alive(state["process"]):
        state.update(
            status="failed",
            phase=None,
            error={
                "title": "Import stopped",
                "status": 503,
                "detail": DIED.format(file=quote(str(state.get("file") or ""))),
            },
        )
    return state


def jobs(settings: Settings, *, status: str | None = None) -> list[dict[str, Any]]:
    """The states of the jobs still held (see :func:`job`), the latest started first; only those with
    ``status`` when given. Of each service process's jobs, not only this one's: they share the folder."""
    found = []
    for path in _root(settings).glob("*.json"):
        job_id = path.name.removesuffix(".json")
        if not held_reports.REPORT_ID.fullmatch(job_id):  # a cancel request (<id>.cancel.json)
            continue
        try:
            state = job(settings, job_id)
        except NotFoundError:  # expired, or removed meanwhile
            continue
        except (OSError, ValueError):  # unreadable: one damaged state must not hide the others
            log.warning("import job state %s cannot be read", path.name, exc_info=True)
            continue
        if status is None or state["status"] == status:
            found.append(state)
    return sorted(found, key=lambda state: (state["started_at"], state["job_id"]), reverse=True)


def request_cancel(settings: Settings, job_id: str, *, by: str) -> dict[str, Any]:
    """Ask a running job to stop and roll back; returns its state with ``cancel_requested``.

    The job ends ``cancelled`` (or ``done``, if its import began to commit before another process took the
    request). NotFoundError for no such job; ConflictError for a job that has ended, or whose import is
    committing in this process.
    """
    state = job(settings, job_id)
    if state["status"] != "running":
        done = (
            " (its import is in the database: see its result's links.self)"
            if state["status"] == "done"
            else ""
        )
        raise ConflictError(
            f"import job {job_id} has ended ({state['status']}): there is nothing to cancel{done}"
        )
    asked = state.get("cancel_requested") or {"by": by, "at": _now()}
    if _cancel_here(job_id, f"cancelled by {asked['by']}") is False:
        raise ConflictError(
            f"import job {job_id} is committing its import, which can no longer be stopped: it ends done"
        )
    if "cancel_requested" not in state:
        # For the process that runs the job, if not this one; written aside and renamed like a state.
        target = _cancel_path(settings, job_id)
        aside = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        aside.write_text(json.dumps(asked, ensure_ascii=False), encoding="utf-8")
        aside.replace(target)
    state["cancel_requested"] = asked
    return state


def _cancel_request(settings: Settings, job_id: str) -> dict[str, Any] | None:
    try:
        asked = json.loads(_cancel_path(settings, job_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):  # unreadable, or half-written by hand: taken as no request, and said
        log.warning("import job %s: its cancel request cannot be read", job_id, exc_info=True)
        return None
    return asked if isinstance(asked, dict) and isinstance(asked.get("by"), str) else None


def _cancel_here(job_id: str, reason: str) -> bool | None:
    """Cancel a job of this process: whether it took the cancel; None when it does not run here."""
    with _running_lock:
        running = _here.get(job_id)
    return None if running is None else running.cancellation.cancel(reason)


def _watch_cancel_requests() -> None:
    """Start, unless it runs, the thread that takes the cancel requests another process wrote for this
    process's jobs; it ends when this process runs none."""
    global _watching
    with _running_lock:
        if _watching:
            return
        _watching = True
    try:
        threading.Thread(target=_watch, name="import-job-cancels", daemon=True).start()
    except BaseException:
        with _running_lock:
            _watching = False
        raise


def _watch() -> None:
    global _watching
    try:
        while True:
            with _running_lock:
                running = list(_here.items())
                if not running:  # said under the lock a new job registers under: it starts a new watch
                    _watching = False
                    return
            for job_id, job_running in running:
                try:
                    asked = _cancel_request(job_running.settings, job_id)
                    if asked is not None:
                        job_running.cancellation.cancel(f"cancelled by {asked['by']}")
                except Exception:  # one job's trouble must not end the watch for the others
                    log.exception("import job %s: its cancel request could not be taken", job_id)
            time.sleep(CANCEL_POLL_SECONDS)
    except BaseException:
        with _running_lock:
            _watching = False
        raise


def stop_all(reason: str = SERVICE_STOPPED, wait_seconds: float = 30.0) -> int:
    """Cancel every job this process runs and wait (up to ``wait_seconds``) for them to end: they roll back
    and end ``cancelled``; one already committing is left to finish. For a stopping service. Returns how
    many jobs ran."""
    with _running_lock:
        running = list(_here.values())
    for job_running in running:
        job_running.cancellation.cancel(reason)
    deadline = time.monotonic() + wait_seconds
    for job_running in running:
        job_running.thread.join(max(0.0, deadline - time.monotonic()))
    return len(running)


def _alive(process: dict[str, Any]) -> bool:
    if process.get("host") != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    pid = int(process["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process as another user: only the start time can tell whether it is ours
        pass
    recorded = process.get("started")
    return recorded is None or _started_ticks(pid) in (None, recorded)


def remove_expired(settings: Settings) -> int:
    """Remove the states of jobs that ended longer ago than a held report lives; returns how many."""
    root = _root(settings)
    oldest = time.time() - settings.held_report_hours * 3600.0
    removed = 0
    for path in [*root.glob("*.json"), *root.glob(".*.json.*")]:  # states, and any a crash left half-written
        try:
            if path.stat().st_mtime < oldest:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # another process removed it meanwhile
            continue
    return removed


def _gone(job_id: str) -> NotFoundError:
    return NotFoundError(f"no import job {job_id!r}: it never existed or ended too long ago")
