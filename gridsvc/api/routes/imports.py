"""Import uploads (gis_staff): the same service as `gridsvc import`, returning the import and its report."""

from __future__ import annotations

import difflib
import inspect
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path as FilePath
from typing import Annotated, Any, BinaryIO, Literal, TypeVar

from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from gis import fieldmap
from gridsvc.api.deps import AppSettings, Caller, Sessions
from gridsvc.api.problems import PROBLEM_JSON, exception_problem, problem_body
from gridsvc.api.request_body import UploadLimitRoute
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.errors import FieldProblem, GridsvcError, ImportRefusedError, InvalidInputError
from gridsvc.services import held_reports, import_jobs, imports
from gridsvc.services.access import Principal
from gridsvc.services.uploads import saved_upload, upload_name
from gridsvc.settings import Settings


class ImportRoute(UploadLimitRoute, RoleRoute):
    """Roles as declared; an upload over GRIDSVC_MAX_UPLOAD_BYTES is answered 413 before it is read."""


# Longest values of the form's one-word options (crs, encoding, level, a net's code) and names (a layer, a
# net, a department): past them a value is refused (the form parser has read it, up to its part limit)
# and not echoed in the answer.
_WORD_MAX = 64
_NAME_MAX = 255

router = APIRouter(prefix="/v1/imports", tags=["imports"], route_class=ImportRoute)

log = logging.getLogger(__name__)

PROBLEMS_SHOWN = 1000
T = TypeVar("T")
# A problem report, as a recorded import's or a held one's download answers it.
REPORT_MEDIA = {"csv": "text/csv; charset=utf-8", "gpkg": "application/geopackage+sqlite3"}
REPORT_FILE: dict[str, Any] = {
    "description": "the report",
    "content": {"text/csv": {}, "application/geopackage+sqlite3": {}},
}
# A refused background import asks to come back when a running one may have ended.
JOBS_RETRY_AFTER = 30


def _mapping(raw: str | None) -> dict[str, str] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInputError("mapping is not JSON", problems=[FieldProblem("mapping", str(exc))]) from exc
    if not isinstance(value, dict):
        raise InvalidInputError(
            "mapping must be a JSON object", problems=[FieldProblem("mapping", '{"code": "标识码", ...}')]
        )
    # Each value named, its key with it: a wrong one among right ones is otherwise hard to see.
    wrong = [
        problem
        for k, v in value.items()
        if (problem := fieldmap.field_name_problem(k, v, as_json=True)) is not None
    ]
    if wrong:
        raise InvalidInputError(
            "each value of mapping must be the name of one of the file's fields, as text: "
            "nothing was imported",
            problems=[FieldProblem("mapping", problem) for problem in wrong],
        )
    return value


def _in_form_words(exc: InvalidInputError) -> None:
    exc.detail = imports.as_form_fields(exc.detail)
    exc.args = (exc.detail,)
    for problem in exc.problems:
        problem.message = imports.as_form_fields(problem.message)


def _expiry(settings: AppSettings, report_id: str) -> str:
    return held_reports.expires_at(settings, report_id).isoformat()


def _held_links(report_id: str) -> dict[str, str]:
    base = f"/v1/imports/reports/{report_id}"
    return {"problems_csv": f"{base}/problems.csv", "problems_gpkg": f"{base}/problems.gpkg"}


# What a census upload answers (201): the import, its counts, its first problems and links.
IMPORT_EXAMPLE: dict[str, Any] = {
    "layer": "components",
    "file": "路灯普查.gpkg",
    "checksum_sha256": "9f2c…",
    "format": "GPKG",
    "source_layer": "路灯",
    "crs": "EPSG:4527",
    "crs_from": "file",
    "encoding": "UTF-8",
    "dry_run": False,
    "batch_id": 42,
    "rows_read": 12480,
    "accepted": 12477,
    "rejected": 3,
    "repaired": 1,
    "new": 310,
    "changed": 52,
    "unchanged": 12115,
    "retired": 0,
    "assigned_to_grid": 362,
    "indexes_rebuilt": False,
    "seconds": 2.4,
    "warnings": [],
    "problems": [
        {
            "source_row": 118,
            "field": "status",
            "value": "坏了",
            "reason": "status 坏了 is not known; use one of: 完好 intact, 破损 damaged, 丢失 missing, "
            "占用 occupied, 废弃 abandoned, 移除 removed",
            "action": "rejected",
        }
    ],
    "problems_total": 4,
    "report_file": None,
    "held_report": None,
    "links": {
        "self": "/v1/imports/42",
        "problems_csv": "/v1/imports/42/problems.csv",
        "problems_gpkg": "/v1/imports/42/problems.gpkg",
    },
}


async def _known_form_fields(request: Request) -> None:
    """Refuse a form field the import does not know (422): ignored, ``dry-run=true`` (the CLI's spelling)
    would import for real. Refuse one sent twice too: the framework keeps the last, so ``dry_run=true``
    then ``dry_run=false`` imported for real, and a second ``file`` part was imported instead of the first.
    The form is the one FastAPI has already read for the route."""
    form = await request.form()
    names = [name for name, _ in form.multi_items()]
    unknown = sorted(set(names) - _FORM_FIELDS)
    if unknown:
        raise InvalidInputError(
            f"unknown form field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: nothing was imported",
            problems=[FieldProblem(name, _unknown_field_message(name)) for name in unknown],
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidInputError(
            f"form field{'s' if len(repeated) > 1 else ''} {', '.join(repeated)} sent more than once: "
            "nothing was imported",
            problems=[
                FieldProblem(name, f"sent {names.count(name)} times; send it once (one file per upload)")
                for name in repeated
            ],
        )


def _unknown_field_message(name: str) -> str:
    near = difflib.get_close_matches(name.replace("-", "_").lower(), sorted(_FORM_FIELDS), n=1, cutoff=0.6)
    known = ", ".join(sorted(_FORM_FIELDS))
    return f"not a form field of an import; did you mean {near[0]}?" if near else f"not one of {known}"


@router.post(
    "/{kind}",
    dependencies=[allow("gis_staff"), Depends(_known_form_fields)],
    summary="Import a survey layer file (gis_staff): components, boundaries, stations, net or roads",
    status_code=201,
    responses={
        201: {
            "description": "imported; the body is the import with its counts and problems, and `links` to "
            "the import and its problem report (CSV, GeoPackage)",
            "content": {"application/json": {"example": IMPORT_EXAMPLE}},
        },
        200: {
            "description": "dry run: validated and counted, nothing written; with problems, `links` to the "
            "report held for download until `report_expires_at`"
        },
        202: {
            "description": "background=true: the import runs as a job; poll `links.self` (also `Location`)"
        },
        503: {
            "description": "background=true while this process runs GRIDSVC_MAX_IMPORT_JOBS imports: see "
            "Retry-After"
        },
        400: {
            "description": "the body cannot be read as a multipart form, or ends before its closing boundary"
        },
        401: {"description": "no or unknown API key"},
        403: {"description": "role is not gis_staff"},
        413: {"description": "the upload is larger than GRIDSVC_MAX_UPLOAD_BYTES; refused before it is read"},
        422: {
            "description": "the file or the options cannot be used; nothing was written. A file refused "
            "whole for its rejected rows (strict, a net, roads with replace) has `links` to its report"
        },
    },
)
def import_file(
    kind: Annotated[
        str, Path(description="components, boundaries, stations, net or roads", examples=["components"])
    ],
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    file: Annotated[
        UploadFile, File(description="GeoPackage, zipped Shapefile or FileGDB, GeoJSON, CSV or KML")
    ],
    layer: Annotated[
        str | None,
        Form(description="layer name in a GeoPackage/FileGDB/KML", examples=["路灯"], max_length=_NAME_MAX),
    ] = None,
    crs: Annotated[
        str | None,
        Form(
            description="the file's CRS if it has none (every CSV), or to override it: EPSG:4527, gcj02, ...",
            examples=["EPSG:4527"],
            max_length=_WORD_MAX,
        ),
    ] = None,
    encoding: Annotated[
        str | None,
        Form(
            description="Shapefile or CSV attribute encoding if not detected",
            examples=["GBK"],
            max_length=_WORD_MAX,
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        Form(
            description="JSON: standard field to the file's field",
            examples=['{"code": "标识码", "name": "名称"}'],
        ),
    ] = None,
    dry_run: Annotated[
        bool, Form(description="validate and count, write nothing; the report is held")
    ] = False,
    retire_missing: Annotated[
        bool, Form(description="mark void the components of the surveyed classes the file no longer has")
    ] = False,
    area: Annotated[
        str | None,
        Form(description="comma-separated admin codes for retire_missing", examples=["370102001,370102002"]),
    ] = None,
    strict: Annotated[bool, Form(description="refuse the file if any row is rejected")] = False,
    level: Annotated[
        str | None,
        Form(
            description="boundaries: district, street or community",
            examples=["community"],
            max_length=_WORD_MAX,
        ),
    ] = None,
    net_code: Annotated[
        str | None, Form(description="net: its short code", examples=["zongzhi"], max_length=_WORD_MAX)
    ] = None,
    net_name: Annotated[
        str | None, Form(description="net: its name", examples=["综治网格"], max_length=_NAME_MAX)
    ] = None,
    net_department: Annotated[
        str | None,
        Form(description="net: the department keeping it", examples=["综合治理"], max_length=_NAME_MAX),
    ] = None,
    replace: Annotated[
        bool, Form(description="roads: the file is every road; delete the stored roads it does not have")
    ] = False,
    background: Annotated[
        bool,
        Form(
            description="answer 202 at once with a job to poll (GET /v1/imports/jobs/{job_id}) instead of "
            "when the import ends: for files that take longer than a request may (a city's census)"
        ),
    ] = False,
    rebuild_indexes: Annotated[
        bool | None,
        Form(
            description="components: rebuild the component table's indexes around the insert (true), keep "
            "them (false); unset: rebuild when the file adds at least a third of the table's rows"
        ),
    ] = None,
) -> JSONResponse:
    """Run the import as one transaction and return it with every rejected or repaired row."""
    if kind not in imports.LAYERS:
        raise InvalidInputError(
            f"nothing is imported as {kind!r}",
            problems=[
                FieldProblem(
                    "path.kind", f"the path names what to import: /v1/imports/{{{','.join(imports.LAYERS)}}}"
                )
            ],
        )
    if background and not import_jobs.has_room(settings):
        return _jobs_full(f"/v1/imports/{kind}")
    upload = ExitStack()  # the saved upload: removed when the import ends, here or in its job
    try:
        name = upload_name(file.filename or "", file.headers.get("content-disposition"))
        path = upload.enter_context(saved_upload(name, file.file, settings))
        request = imports.ImportRequest(
            path=path,
            layer=kind,
            source_layer=layer,
            crs=crs,
            encoding=encoding,
            mapping=_mapping(mapping),
            dry_run=dry_run,
            retire_missing=retire_missing,
            area_codes=tuple(a.strip() for a in (area or "").split(",") if a.strip()),
            strict=strict,
            display_name=name,
            level=level,
            net_code=net_code,
            net_name=net_name,
            net_department=net_department,
            replace=replace,
            rebuild_indexes=rebuild_indexes,
            hold_report=True,  # a dry run's or a refusal's report, for its links
            form_words=True,
        )
        if background:
            rows_in_file = _explained(
                settings, imports.check_before_start, sessions, request, settings=settings
            )
            return _started(sessions, request, settings, caller, upload, rows_in_file)
    except BaseException:
        upload.close()
        raise
    with upload:
        report = _explained(
            settings, imports.import_layer, sessions, request, settings=settings, actor=caller
        )
    return JSONResponse(_answer(report, settings), status_code=200 if report.dry_run else 201)


# The form fields import_file reads: its parameters but the path's kind and what FastAPI gives it.
_FORM_FIELDS = frozenset(inspect.signature(import_file).parameters) - {
    "kind",
    "sessions",
    "settings",
    "caller",
}


def _explained(settings: Settings, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call the import service; a refusal gets the upload's words and the links to its held report."""
    try:
        return function(*args, **kwargs)
    except InvalidInputError as exc:
        _in_form_words(exc)
        if isinstance(exc, ImportRefusedError):
            exc.extensions["warnings"] = [imports.as_form_fields(w) for w in exc.warnings]
            if exc.held_report is not None:
                exc.extensions["links"] = _held_links(exc.held_report)
                exc.extensions["report_expires_at"] = _expiry(settings, exc.held_report)
        raise


def _answer(report: imports.ImportReport, settings: Settings) -> dict[str, Any]:
    """The body answering an import: its counts, the first problems, and links to the rest."""
    body: dict[str, Any] = report.to_dict(problem_limit=PROBLEMS_SHOWN)
    body["warnings"] = [imports.as_form_fields(w) for w in report.warnings]
    for shown in body["problems"]:
        shown["reason"] = imports.as_form_fields(shown["reason"])
    if report.batch_id is not None:
        body["links"] = {
            "self": f"/v1/imports/{report.batch_id}",
            "problems_csv": f"/v1/imports/{report.batch_id}/problems.csv",
            "problems_gpkg": f"/v1/imports/{report.batch_id}/problems.gpkg",
        }
    elif report.held_report is not None:
        body["links"] = _held_links(report.held_report)
        body["report_expires_at"] = _expiry(settings, report.held_report)
    return body


def _started(
    sessions: sessionmaker[Session],
    request: imports.ImportRequest,
    settings: Settings,
    caller: Principal,
    upload: ExitStack,
    rows_in_file: int,
) -> JSONResponse:
    """Start the import as a job and answer 202 with it."""
    instance = f"/v1/imports/{request.layer}"

    def work(progress: import_jobs.JobProgress) -> tuple[str, dict[str, Any]]:
        try:
            report = _explained(
                settings,
                imports.import_layer,
                sessions,
                request,
                settings=settings,
                actor=caller,
                progress=progress.rows,
                phase=progress.phase,
                cancellation=progress.cancellation,
            )
        except imports.ImportCancelled as exc:  # by a cancel of the job, or a stopping service
            detail = (
                f"{exc.reason}: nothing of {request.display_name} was imported; the database is as it was "
                "before (the import is one transaction, and it was rolled back)"
            )
            return "cancelled", {"title": "Import cancelled", "detail": detail}
        except Exception as exc:  # answered as the synchronous upload's handlers would (api/problems.py)
            if not isinstance(exc, GridsvcError):
                log.exception("import job for %s failed", request.display_name)
            return "failed", exception_problem(exc, instance)
        return "done", _answer(report, settings)

    try:
        state = import_jobs.start(
            settings,
            work,
            layer=request.layer,
            file=request.display_name or "",
            cleanup=upload.close,
            started_by=caller.name,
            rows_in_file=rows_in_file,
        )
    except import_jobs.JobsFullError:
        return _jobs_full(instance)
    body = _public(state)
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})


def _jobs_full(instance: str) -> JSONResponse:
    body = problem_body(
        503, import_jobs.JobsFullError.title, import_jobs.FULL, kind="busy", instance=instance
    )
    return JSONResponse(
        body, status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": str(JOBS_RETRY_AFTER)}
    )


def _public(state: dict[str, Any]) -> dict[str, Any]:
    """A job's state as it is answered: without the process running it, with a link to itself."""
    body = {k: v for k, v in state.items() if k != "process"}
    body["links"] = {"self": f"/v1/imports/jobs/{state['job_id']}"}
    return body


@router.get(
    "/jobs",
    dependencies=[allow("gis_staff")],
    summary="The background imports of the last GRIDSVC_HELD_REPORT_HOURS: running, done, failed, cancelled",
)
def list_jobs(
    settings: AppSettings,
    status: Annotated[
        Literal["running", "done", "failed", "cancelled"] | None,
        Query(description="only the jobs with this status: `running` answers what is importing now"),
    ] = None,
) -> JSONResponse:
    """Every background import job still held, the latest started first: who started it, on which file and
    layer, its status and phase. A done job's `result` and a failed one's `error.errors` are left out here
    (its own link answers them), so the list stays small however large the reports."""
    listed = [_listed(state) for state in import_jobs.jobs(settings, status=status)]
    return JSONResponse({"jobs": listed, "count": len(listed)})


def _listed(state: dict[str, Any]) -> dict[str, Any]:
    """A job as the list shows it: its state without the result, and its error without the row list."""
    body = {k: v for k, v in state.items() if k != "result"}
    if isinstance(body.get("error"), dict):
        body["error"] = {k: v for k, v in body["error"].items() if k != "errors"}
    return _public(body)


@router.get(
    "/jobs/{job_id}",
    dependencies=[allow("gis_staff")],
    summary="An import started with background=true: running (with progress), done or failed",
    responses={404: {"description": "no such job, or it ended more than GRIDSVC_HELD_REPORT_HOURS ago"}},
)
def get_job(job_id: str, settings: AppSettings) -> JSONResponse:
    """The job's state. `status` is `running` (with `phase`, `rows_read` of `rows_in_file`), `done` (with
    `result`: the body a synchronous upload answers with, links included), `failed` (with `error`: the
    problem a synchronous upload would have answered, with its `status`) or `cancelled` (with `error`
    saying by whom; nothing imported). A job whose service process died is failed, with nothing imported;
    a service that stops cancels its jobs. `cancel_requested` (by, at) appears once a cancel is asked."""
    return JSONResponse(_public(import_jobs.job(settings, job_id)))


@router.post(
    "/jobs/{job_id}/cancel",
    dependencies=[allow("gis_staff")],
    status_code=202,
    summary="Cancel a running background import: it rolls back, nothing of its file is imported",
    responses={
        202: {"description": "cancel asked; the job's state, with `cancel_requested`: poll it to its end"},
        404: {"description": "no such job, or it ended more than GRIDSVC_HELD_REPORT_HOURS ago"},
        409: {"description": "the job has already ended (done, failed or cancelled)"},
    },
)
def cancel_job(job_id: str, settings: AppSettings, caller: Caller) -> JSONResponse:
    """Stop a running import job. Its running statement is cancelled at once and its transaction rolls
    back, so the database is as it was before; the job then reads `cancelled`. An import that was already
    committing cannot be stopped: it ends `done`, its file imported."""
    state = import_jobs.request_cancel(settings, job_id, by=caller.name)
    body = _public(state)
    return JSONResponse(body, status_code=202, headers={"Location": body["links"]["self"]})


@router.get(
    "/reports/{report_id}/problems.{fmt}",
    dependencies=[allow("gis_staff")],
    summary="The problem report of a dry run or a refused upload, as CSV or GeoPackage",
    responses={200: REPORT_FILE, 404: {"description": "no such report, or it has expired"}},
)
def get_held_problems(
    report_id: str, fmt: Literal["csv", "gpkg"], settings: AppSettings
) -> StreamingResponse:
    """Rejected and repaired rows of an upload that stored nothing, held for GRIDSVC_HELD_REPORT_HOURS after
    it: the `links` of its dry run's answer or of its refusal."""
    handle = held_reports.open_report(settings, report_id, fmt)
    media = REPORT_MEDIA[fmt]
    return StreamingResponse(
        _chunks_of(handle),
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="import-{report_id}-problems.{fmt}"',
            "Content-Length": str(os.fstat(handle.fileno()).st_size),
        },
    )


def _chunks_of(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(1 << 20):
            yield block


@router.get(
    "",
    dependencies=[allow("gis_staff")],
    summary="The recorded imports (survey batches), the latest first: was this file imported?",
)
def list_imports(
    sessions: Sessions,
    layer: Annotated[
        Literal["components", "boundaries", "stations", "net", "roads"] | None,
        Query(description="only the imports of this layer"),
    ] = None,
    file: Annotated[
        str | None,
        Query(
            max_length=_NAME_MAX * 4,
            pattern=r"^[^\x00-\x1f\x7f]*$",  # names are stored with control characters as spaces
            description="only the imports of the file of this name, as sent",
        ),
    ] = None,
    checksum_sha256: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-fA-F]{64}$",
            description="only the imports of the file with this SHA-256 (`sha256sum 路灯普查.gpkg`)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 50,
) -> JSONResponse:
    """Each import as `GET /v1/imports/{id}` answers it (file, checksum, who, when, counts, warnings),
    without its problems, with a link to it. After a background job that failed because its service
    stopped, `?file=` (or `?checksum_sha256=`) says whether the file was imported all the same."""
    found = imports.list_imports(
        sessions, layer=layer, file=file, checksum_sha256=checksum_sha256, limit=limit
    )
    return JSONResponse({"imports": found, "count": len(found)})


@router.get(
    "/{batch_id}",
    dependencies=[allow("gis_staff")],
    summary="One import: file, checksum, who, when, counts, problems",
    responses={404: {"description": "no such import"}},
)
def get_import(batch_id: int, sessions: Sessions) -> JSONResponse:
    """A recorded import (survey batch)."""
    return JSONResponse(json.loads(json.dumps(imports.get_import(sessions, batch_id), default=str)))


@router.get(
    "/{batch_id}/problems.{fmt}",
    dependencies=[allow("gis_staff")],
    summary="The import's problem report as CSV or GeoPackage",
    responses={200: REPORT_FILE, 404: {"description": "no such import"}},
)
def get_problems(
    batch_id: int, fmt: Literal["csv", "gpkg"], sessions: Sessions, background: BackgroundTasks
) -> FileResponse:
    """Rejected and repaired rows with source row, field, value and reason, to fix in QGIS and re-import."""
    folder = FilePath(tempfile.mkdtemp(prefix="gridsvc-report-"))
    try:
        path = imports.import_problems_file(sessions, batch_id, folder / f"import-{batch_id}-problems.{fmt}")
    except BaseException:  # an unknown import (404) or a failure: no file to send, no folder to keep
        shutil.rmtree(folder, ignore_errors=True)
        raise
    background.add_task(shutil.rmtree, folder, ignore_errors=True)
    media = REPORT_MEDIA[fmt]
    return FileResponse(path, media_type=media, filename=path.name)
