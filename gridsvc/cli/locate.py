"""``gridsvc locate`` and ``gridsvc locate-file``: which grid owns a place, and who answers for it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gridsvc.cli.main import _sessions, _settings, app, console, err_console, friendly

CrsOpt = Annotated[
    str,
    typer.Option(
        "--crs",
        help="Datum of the coordinates: wgs84, cgcs2000, gcj02 (Amap/Tencent), bd09 (Baidu) or EPSG:n.",
    ),
]
AtOpt = Annotated[
    dt.datetime | None,
    typer.Option(
        "--at", formats=["%Y-%m-%d"], help="Ask the plan that was in force on this date (YYYY-MM-DD)."
    ),
]


def located_json(located: Any) -> dict[str, Any]:
    """The one-point answer as the API returns it (also ``--json`` here)."""
    from gridsvc.services.locate import located_dict

    return located_dict(located)


@app.command("locate")
@friendly
def locate_command(
    lon: Annotated[float, typer.Argument(help="Longitude (or easting for a projected --crs).")],
    lat: Annotated[float, typer.Argument(help="Latitude (or northing).")],
    crs: CrsOpt = "wgs84",
    at: AtOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the answer as JSON (as GET /v1/locate).")
    ] = False,
) -> None:
    """Which unit grid, responsibility grid, worker, community, street, district and station own a point.

    Examples: `gridsvc locate 117.0213 36.6615` (WGS 84, e.g. a GPS fix);
    `gridsvc locate 117.0274 36.6643 --crs gcj02` (a point picked on Amap);
    `gridsvc locate 500123.4 4058000.0 --crs EPSG:4548 --at 2025-06-01` (the plan in force on that day).
    """
    from gridsvc.services.locate import locate_point

    settings = _settings()
    located = locate_point(
        _sessions(settings), settings, lon, lat, crs=crs, at=at.date() if at is not None else None
    )
    answer = located_json(located)
    if as_json:
        console.print_json(json.dumps(answer, ensure_ascii=False))
        return
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in _lines(answer, at.date() if at is not None else None):
        table.add_row(label, value)
    console.print(table)
    for note in answer["notes"]:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)


def _named(part: dict[str, Any] | None) -> str:
    if not part:
        return "—"
    return f"{part.get('code') or ''} {part.get('name') or ''}".strip()


def _lines(answer: dict[str, Any], at: dt.date | None = None) -> list[tuple[str, str]]:
    rgrid = answer["responsibility_grid"] or {}
    worker = rgrid.get("worker") or {}
    station = answer["station"] or {}
    plan = answer["plan"] or {}
    lines = [
        ("point (CGCS2000)", f"{answer['point']['lon']:.6f}, {answer['point']['lat']:.6f}"),
        ("answered by", answer["how"]),
        ("unit grid", _named(answer["unit_grid"])),
        ("responsibility grid", _named(rgrid)),
        ("grid worker", f"{worker.get('name') or '—'} {worker.get('phone') or ''}".strip()),
        ("community", _named(answer["community"])),
        ("street", _named(answer["street"])),
        ("district", _named(answer["district"])),
        (
            "station",
            f"{station.get('name') or '—'} {station.get('phone') or ''}"
            + (f" ({station['distance_m']:.0f} m away)" if station.get("distance_m") is not None else ""),
        ),
        (
            "plan",
            f"{plan['id']} {plan.get('name') or ''}".strip()
            if plan
            else f"none was in force on {at:%Y-%m-%d}"
            if at is not None
            else "none is active",
        ),
    ]
    for candidate in answer["candidates"]:
        lines.append(
            (
                "  other owner",
                f"{candidate['unit_grid_code']} / {candidate['responsibility_grid_code']} "
                f"at {candidate['distance_m']:.1f} m",
            )
        )
    return lines


@app.command("locate-file")
@friendly
def locate_file_command(
    source: Annotated[
        Path, typer.Argument(help="Points: CSV (lon/lat, x/y, 经度/纬度 columns), GeoPackage, GeoJSON, ...")
    ],
    target: Annotated[
        Path, typer.Argument(help="Where to write the answers: .csv, .gpkg, .geojson or .shp.")
    ],
    crs: Annotated[
        str | None,
        typer.Option(
            "--crs", help="The file's datum when it has none (CSV) or is wrong: wgs84, gcj02, EPSG:4548..."
        ),
    ] = None,
    layer: Annotated[str | None, typer.Option("--layer", help="Layer in a GeoPackage/FileGDB/KML.")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Attribute encoding, e.g. GBK.")] = None,
    out_crs: Annotated[str, typer.Option("--out-crs", help="Datum of the written points.")] = "cgcs2000",
    at: AtOpt = None,
) -> None:
    """Locate every point of a file and write its rows with the owner columns added.

    Same answers as `gridsvc locate` one by one (one in-memory index serves both). Added columns: how,
    needs_confirmation, unit_grid_code, responsibility_grid_code/name, worker_name/phone, community,
    street and district codes and names, station_name/phone/distance_m, distance_m, near_boundary,
    boundary_distance_m, candidates, plan_id. Nothing is written unless every row is a point.

    Example: `gridsvc locate-file reports.csv answers.gpkg --crs gcj02`
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from gridsvc.services.locate import locate_file

    settings = _settings()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:>10,} points"),
        TimeElapsedColumn(),
        console=err_console,
    ) as bar:
        task = bar.add_task(f"locating {source.name}", total=None)
        report = locate_file(
            _sessions(settings),
            settings,
            source,
            target,
            layer=layer,
            crs=crs,
            encoding=encoding,
            at=at.date() if at is not None else None,
            out_crs=out_crs,
            progress=lambda rows: bar.update(task, advance=rows),
        )
    table = Table(title=f"{report.rows:,} points → {report.output}")
    table.add_column("answered by")
    table.add_column("points", justify="right")
    for how, count in sorted(report.by_how.items()):
        table.add_row(how, f"{count:,}")
    table.add_row("needs confirmation", f"{report.needs_confirmation:,}")
    console.print(table)
