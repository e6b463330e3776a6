"""``gridsvc plan split|merge|move|edits``: hand edits of a draft plan, each naming its plan version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from gridsvc.cli.main import _operator, _sessions, _settings, console, friendly
from gridsvc.cli.plans import plan_app

PlanArg = Annotated[int, typer.Argument(help="The draft plan's id.")]
VersionOpt = Annotated[
    int,
    typer.Option(
        "--version",
        help="The plan version you looked at (`gridsvc plan edits PLAN` shows it); "
        "refused when someone edited the plan since.",
    ),
]
EditorOpt = Annotated[
    str | None,
    typer.Option("--editor", help="Your name in the plan's history (default: cli:LOGIN, your login name)."),
]


def _print(result: dict[str, Any]) -> None:
    console.print_json(json.dumps(result, ensure_ascii=False, default=str))


@plan_app.command("split")
@friendly
def plan_split_command(
    plan_id: PlanArg,
    grid: Annotated[str, typer.Argument(help="The responsibility grid to split, e.g. 370102001001R03.")],
    line: Annotated[
        str,
        typer.Option(
            "--line",
            help="The line across the grid: WKT, GeoJSON (geometry or Feature), or @file holding either.",
        ),
    ],
    version: VersionOpt,
    crs: Annotated[
        str, typer.Option("--crs", help="Datum of the line: wgs84, cgcs2000, gcj02, bd09 or EPSG:n.")
    ] = "wgs84",
    editor: EditorOpt = None,
) -> None:
    """Split a responsibility grid of a draft along a drawn line.

    Each unit grid goes whole to the side of the line holding most of its area (`cut_unit_grids`: those
    the line ran through). The side holding more area keeps the code; the other side becomes a new grid
    numbered after the highest number the community has used (in a plan in force, in this draft, or
    merged away from it). The answer (JSON) has the plan's new version, the two grids and the community's
    new quality figures.

    Example: `gridsvc plan split 7 370102001001R03 --line "LINESTRING(116.999 36.6836, 117.011 36.6836)"
    --crs cgcs2000 --version 1`

    Example: `gridsvc plan split 7 370102001001R03 --line @cut.geojson --crs gcj02 --version 4`
    """
    from gridsvc.services.plan_edits import split_grid

    text = Path(line[1:]).read_text(encoding="utf-8") if line.startswith("@") else line
    settings = _settings()
    result = split_grid(
        _sessions(settings), settings, plan_id, grid, text, version=version, actor=_operator(editor), crs=crs
    )
    _print(result.to_dict())


@plan_app.command("merge")
@friendly
def plan_merge_command(
    plan_id: PlanArg,
    grid_a: Annotated[str, typer.Argument(help="One responsibility grid.")],
    grid_b: Annotated[str, typer.Argument(help="Its neighbour, in the same community.")],
    version: VersionOpt,
    editor: EditorOpt = None,
) -> None:
    """Merge two neighbouring responsibility grids of a draft.

    They must be of one community and share an edge (a corner is not enough). The smaller code stays; the
    other is never given again. The answer (JSON) has the plan's new version, the merged grid and the
    community's new quality figures.

    Example: `gridsvc plan merge 7 370102001001R03 370102001001R04 --version 2`
    """
    from gridsvc.services.plan_edits import merge_grids

    settings = _settings()
    result = merge_grids(
        _sessions(settings), settings, plan_id, grid_a, grid_b, version=version, actor=_operator(editor)
    )
    _print(result.to_dict())


@plan_app.command("move")
@friendly
def plan_move_command(
    plan_id: PlanArg,
    unit: Annotated[
        list[str], typer.Option("--unit", help="A unit grid to move (repeat, or separate codes by commas).")
    ],
    to: Annotated[str, typer.Option("--to", help="The neighbouring responsibility grid that takes them.")],
    version: VersionOpt,
    editor: EditorOpt = None,
) -> None:
    """Move unit grids of a draft to a neighbouring responsibility grid of their community.

    Refused when a grid would fall into pieces or be left empty (merge it instead). The answer (JSON) has
    the plan's new version, the grids that changed and the community's new quality figures.

    Example: `gridsvc plan move 7 --unit 370102001001014 --unit 370102001001020 --to 370102001001R04
    --version 3`
    """
    from gridsvc.services.plan_edits import move_unit_grids

    codes = [code.strip() for item in unit for code in item.split(",") if code.strip()]
    settings = _settings()
    result = move_unit_grids(
        _sessions(settings), settings, plan_id, codes, to, version=version, actor=_operator(editor)
    )
    _print(result.to_dict())


@plan_app.command("edits")
@friendly
def plan_edits_command(plan_id: Annotated[int, typer.Argument(help="The plan's id.")]) -> None:
    """A plan's version and its hand edits, oldest first (JSON).

    The version is what your next edit names with `--version`: an edit made on an older one is refused
    and told who changed what since.

    Example: `gridsvc plan edits 7`
    """
    from gridsvc.services.plan_edits import plan_edit_history

    settings = _settings()
    _print(plan_edit_history(_sessions(settings), settings, plan_id, actor=_operator(None)))
