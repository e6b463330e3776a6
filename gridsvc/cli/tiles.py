"""``gridsvc tiles``: the tile store — seed it ahead of dispatchers, see what it holds, empty it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, err_console, friendly

tiles_app = typer.Typer(
    help=(
        "Vector tiles kept in the database (table tile_store): rendered once per change of the data they "
        "show, and served from there to every process of the service."
    )
)
app.add_typer(tiles_app, name="tiles")


@tiles_app.command("seed")
@friendly
def tiles_seed_command(
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer",
            help="A layer to seed (repeatable): responsibility_grids, unit_grids, components, stations, "
            "communities. Default: all of them.",
        ),
    ] = None,
    min_zoom: Annotated[
        int | None,
        typer.Option(help="Lowest zoom to seed (default: each layer's own minimum zoom, 8 to 15)."),
    ] = None,
    max_zoom: Annotated[
        int, typer.Option(help="Highest zoom to seed; closer tiles render when first asked.")
    ] = 16,
    workers: Annotated[
        int, typer.Option(min=1, max=16, help="Tiles rendered at once (PostgreSQL connections used).")
    ] = 2,
) -> None:
    """Render every tile with data of the active plan's grids, the components, stations and communities into
    the tile store, so that no dispatcher waits for PostGIS to draw a street.

    Run it after `gridsvc plan activate` or an import (the service also renders and keeps a missing tile
    on first request). Tiles already stored for the current data are skipped, so an interrupted seed
    resumes, and after an import only the layers it touched are drawn again.

    Example: `gridsvc tiles seed --layer unit_grids --layer responsibility_grids --max-zoom 15`
    """
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from gridsvc.services import tiles
    from gridsvc.services.access import LOCAL_OPERATOR

    settings = _settings()
    with Progress(
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed:>9,}/{task.total:,} tiles"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        results = tiles.seed(
            _sessions(settings),
            settings,
            actor=LOCAL_OPERATOR,
            layers=tuple(layer or ()),
            min_zoom=min_zoom,
            max_zoom=max_zoom,
            workers=workers,
            progress=progress,
        )
    table = Table(title="tile store seeded")
    for column in ("layer", "zooms", "tiles with data", "rendered now", "features", "MiB", "seconds"):
        table.add_column(column, justify="left" if column == "layer" else "right", no_wrap=column == "layer")
    for r in results:
        table.add_row(
            r.layer,
            f"{r.min_zoom}–{r.max_zoom}",
            f"{r.tiles:,}",
            f"{r.rendered:,}",
            f"{r.features:,}",
            f"{r.stored_bytes / 2**20:,.1f}",
            f"{r.seconds:,.1f}",
        )
    console.print(table)
    if not results:
        console.print("no layer to seed: there is no active plan and no other layer was asked")


@tiles_app.command("status")
@friendly
def tiles_status_command() -> None:
    """What the tile store holds per layer and zoom, and how much of it is current."""
    from gridsvc.services import tiles

    settings = _settings()
    rows = tiles.store_status(_sessions(settings), settings)
    table = Table(title="tile store")
    for column in ("layer", "zoom", "tiles", "current", "MiB"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in rows:
        table.add_row(
            row.layer, str(row.z), f"{row.tiles:,}", f"{row.current:,}", f"{row.stored_bytes / 2**20:,.1f}"
        )
    console.print(table if rows else "the tile store is empty")


@tiles_app.command("clear")
@friendly
def tiles_clear_command(
    yes: Annotated[bool, typer.Option("--yes", help="Do it without asking.")] = False,
) -> None:
    """Empty the tile store (the service renders tiles again as they are asked)."""
    from gridsvc.services import tiles
    from gridsvc.services.access import LOCAL_OPERATOR

    if not yes:
        typer.confirm("Delete every stored tile?", abort=True)
    settings = _settings()
    deleted = tiles.clear_store(_sessions(settings), actor=LOCAL_OPERATOR)
    console.print(f"{deleted:,} stored tiles deleted")
