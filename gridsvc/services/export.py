"""Export layers back to the files GIS staff use, in any supported CRS and encoding."""

from __future__ import annotations

import codecs
import datetime as dt
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from gis import crs as gis_crs
from gis.export import write_layer
from gridsvc.errors import FieldProblem, InvalidInputError, NotFoundError
from gridsvc.repositories import imports as imports_repo
from gridsvc.repositories import layers

EXPORT_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".csv")
LEVELS = ("district", "street", "community")


def check_target(path: Path, crs: str, encoding: str) -> None:
    """Refuse a file format, CRS or encoding the export cannot write, before any work is done."""
    problems = []
    if path.suffix.lower() not in EXPORT_SUFFIXES:
        problems.append(FieldProblem("file", f"{path.name}: use one of {', '.join(EXPORT_SUFFIXES)}"))
    elif not path.parent.is_dir():
        problems.append(FieldProblem("file", f"{path.name}: the folder {path.parent} does not exist"))
    try:
        gis_crs.check_datum_shift(gis_crs.STORAGE_CRS, crs)  # resolves it too
    except gis_crs.CoordinateError as exc:
        problems.append(FieldProblem("crs", str(exc)))
    try:
        codec = codecs.lookup(encoding).name  # utf8, UTF_8, cp936, ... named as Python knows them
    except LookupError:
        codec = ""
    if codec not in ("utf-8", "gbk", "gb18030"):
        problems.append(FieldProblem("encoding", "UTF-8, GBK or GB18030"))
    elif codec != "utf-8" and path.suffix.lower() != ".shp":
        problems.append(FieldProblem("encoding", "only Shapefiles are written in GBK; the others are UTF-8"))
    if problems:
        raise InvalidInputError("cannot export like that", problems=problems)


# The options that choose the features of each layer: any other is refused for it.
_OPTIONS_OF_LAYER = {
    "components": ("class", "at"),
    "grids": ("plan", "kind"),
    "boundaries": ("level",),
    "roads": (),
}
_LAYER_OF_OPTION = {"class": "components", "at": "components", "plan": "grids", "kind": "grids"}
_LAYER_OF_OPTION["level"] = "boundaries"


def _check_options_fit(
    what: str,
    *,
    class_codes: tuple[str, ...],
    at: dt.datetime | None,
    plan: str | None,
    kind: str | None,
    level: str | None,
) -> None:
    if what not in _OPTIONS_OF_LAYER:
        return  # refused as an unknown layer below
    given = {"class": bool(class_codes), "at": at is not None, "plan": plan is not None}
    given |= {"kind": kind is not None, "level": level is not None}
    problems = [
        FieldProblem(
            option,
            f"--{option} chooses {_LAYER_OF_OPTION[option]}, not {what}: leave it out"
            + (
                f" (choose {what} with {', '.join('--' + o for o in _OPTIONS_OF_LAYER[what])})"
                if _OPTIONS_OF_LAYER[what]
                else f" ({what} are exported whole)"
            ),
        )
        for option, is_given in given.items()
        if is_given and option not in _OPTIONS_OF_LAYER[what]
    ]
    if problems:
        raise InvalidInputError(f"options that do not choose {what}", problems=problems)


def export_layer(
    sessions: sessionmaker[Session],
    what: str,
    path: Path,
    *,
    crs: str = "EPSG:4490",
    encoding: str = "UTF-8",
    class_codes: tuple[str, ...] = (),
    at: dt.datetime | None = None,
    plan: str | None = None,
    kind: str | None = None,
    level: str | None = None,
) -> tuple[Path, int]:
    """Write components, grids, boundaries or roads to ``path``; returns the path and the feature count.

    ``plan`` and ``kind`` choose grids (the active plan's unit grids when not given), ``level`` chooses
    boundaries (communities), ``class_codes`` chooses components (all classes), ``at`` (aware) the
    components' versions in force at that instant (today's when not given). An option given for a
    layer it does not choose is refused rather than ignored: `export components --plan 3` would otherwise
    write every component and let the user believe it was plan 3's.
    """
    check_target(path, crs, encoding)
    _check_options_fit(what, class_codes=class_codes, at=at, plan=plan, kind=kind, level=level)
    plan = plan or "active"
    kind = kind or "unit"
    level = level or "community"
    if what == "grids" and plan != "active" and not plan.isdigit():
        raise InvalidInputError(
            "unknown plan", problems=[FieldProblem("plan", f"{plan!r}: a plan id (a number) or 'active'")]
        )
    with sessions() as session:
        if what == "components":
            unknown = sorted(set(class_codes) - set(imports_repo.component_classes(session)))
            if unknown:
                raise InvalidInputError(
                    "unknown component class",
                    problems=[
                        FieldProblem(
                            "class", f"{c}: no such class (see GET /v1/component-classes)", {"value": c}
                        )
                        for c in unknown
                    ],
                )
            frame = layers.components(session, class_codes, at=at)
        elif what == "grids":
            if kind not in ("unit", "responsibility"):
                raise InvalidInputError(
                    "unknown grid kind", problems=[FieldProblem("kind", "unit or responsibility")]
                )
            plan_id = layers.plan_id(session, plan)
            if plan_id is None:
                raise NotFoundError(f"no plan {plan!r}")
            frame = layers.grids(session, plan_id, kind)
        elif what == "boundaries":
            if level not in LEVELS:
                raise InvalidInputError("unknown level", problems=[FieldProblem("level", ", ".join(LEVELS))])
            frame = layers.boundaries(session, level)
        elif what == "roads":
            frame = layers.roads(session)
        else:
            raise InvalidInputError(f"cannot export {what!r}: components, grids, boundaries or roads")
    if frame.empty:
        when = "" if at is None else f" at {at.isoformat(timespec='seconds')}"
        raise NotFoundError(f"nothing to export: no {what} match{when}")
    frame = frame.set_crs(4490, allow_override=True)
    try:
        written = write_layer(frame, path, crs=crs, encoding=encoding)
    except ValueError as exc:  # gis.crs.CoordinateError too
        # What the layer holds decides these (mixed geometry kinds in a Shapefile, text GBK cannot hold, a
        # point the target CRS cannot express): said as it is, with what to do instead.
        raise InvalidInputError(
            f"cannot export {what} to {path.name}", problems=[FieldProblem("file", str(exc))]
        ) from exc
    return (written[0] if isinstance(written, tuple) else written), len(frame)
