"""Hand edits of a draft plan (gis_staff): split, merge, move — versioned with ETag / If-Match."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gridsvc.api.deps import AppSettings, Caller, Sessions
from gridsvc.api.roles import RoleRoute, allow
from gridsvc.errors import FieldProblem, InvalidInputError
from gridsvc.services import plan_edits

router = APIRouter(prefix="/v1/plans", tags=["plans"], route_class=RoleRoute)

IfMatch = Annotated[
    str | None,
    Header(
        description='The plan version the edit was made against, as the ETag of the plan\'s edits: "3"',
        examples=['"3"'],
    ),
]
VERSION_FIELD = Field(
    default=None,
    ge=1,
    description="The plan version the edit was made against (instead of the If-Match header)",
)
ETAG_HEADER = {
    "ETag": {"description": 'The plan\'s version after the edit, e.g. "4"', "schema": {"type": "string"}}
}
EDIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the edit, the changed grids and the community's new quality",
        "headers": ETAG_HEADER,
    },
    400: {"description": "the body cannot be read: not UTF-8 JSON"},
    403: {"description": "the API key is not gis_staff"},
    404: {"description": "no such plan"},
    409: {"description": "the plan is not a draft, or it changed since the version named: the edits since"},
    422: {"description": "the edit would break a rule (contiguity, ...), or the input is not usable"},
}


class SplitBody(BaseModel):
    """Split a responsibility grid along a drawn line."""

    grid: str = Field(description="the responsibility grid to split")
    line: str | dict[str, Any] = Field(
        description="a LineString across the grid: WKT, or GeoJSON (a geometry or a Feature)"
    )
    crs: str = Field(
        default="wgs84", description="the datum of the line: wgs84, cgcs2000, gcj02, bd09 or EPSG:n"
    )
    version: int | None = VERSION_FIELD

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "grid": "370102001001R03",
                    "line": "LINESTRING(116.999 36.6836, 117.011 36.6836)",
                    "crs": "cgcs2000",
                },
                {
                    "grid": "370102001001R03",
                    "line": {
                        "type": "LineString",
                        "coordinates": [[117.00484, 36.68387], [117.01689, 36.68391]],
                    },
                    "crs": "gcj02",
                    "version": 3,
                },
            ]
        }
    }


class MergeBody(BaseModel):
    """Merge two neighbouring responsibility grids of one community: the smaller code stays."""

    grids: list[str] = Field(min_length=2, max_length=2, description="the two grids")
    version: int | None = VERSION_FIELD

    model_config = {"json_schema_extra": {"examples": [{"grids": ["370102001001R03", "370102001001R04"]}]}}


class MoveBody(BaseModel):
    """Move unit grids to a neighbouring responsibility grid of their community."""

    unit_grids: list[str] = Field(min_length=1, description="the unit grids to move")
    to: str = Field(description="the responsibility grid that takes them")
    version: int | None = VERSION_FIELD

    model_config = {
        "json_schema_extra": {
            "examples": [{"unit_grids": ["370102001001014", "370102001001020"], "to": "370102001001R04"}]
        }
    }


def _version(if_match: str | None, body_version: int | None) -> int | None:
    """The version the edit names: the If-Match header's (a strong ETag) or the body's; both must agree."""
    header: int | None = None
    if if_match is not None:
        tag = if_match.strip()
        unquoted = tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag
        if not unquoted.isdigit():
            message = f'If-Match must name one plan version, e.g. "3" (the plan\'s ETag), not {if_match}'
            raise InvalidInputError(message, problems=[FieldProblem("If-Match", if_match)])
        header = int(unquoted)
    if header is not None and body_version is not None and header != body_version:
        raise InvalidInputError(
            f"If-Match names version {header} and the body version {body_version}: name one",
            problems=[FieldProblem("version", str(body_version), {"if_match": header})],
        )
    return header if header is not None else body_version


def _answer(result: plan_edits.EditResult) -> JSONResponse:
    return JSONResponse(result.to_dict(), headers={"ETag": f'"{result.version}"'})


@router.get(
    "/{plan_id}/edits",
    dependencies=[allow(*plan_edits.READ_ROLES)],
    summary="A plan's version (its ETag: what the next edit names) and its hand edits, oldest first",
    responses={
        200: {"description": "the history", "headers": {"ETag": ETAG_HEADER["ETag"]}},
        404: {"description": "no such plan"},
    },
)
def edit_history(plan_id: int, sessions: Sessions, settings: AppSettings, caller: Caller) -> JSONResponse:
    """gis_staff and dispatchers."""
    history = plan_edits.plan_edit_history(sessions, settings, plan_id, actor=caller)
    return JSONResponse(history, headers={"ETag": f'"{history["version"]}"'})


@router.post(
    "/{plan_id}/edits/split",
    dependencies=[allow(plan_edits.EDIT_ROLE)],
    summary="Split a responsibility grid of a draft along a drawn line (gis_staff)",
    responses=EDIT_RESPONSES,
)
def split(
    plan_id: int,
    body: SplitBody,
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    if_match: IfMatch = None,
) -> JSONResponse:
    """Each unit grid goes to the side of the line holding most of its area (`cut_unit_grids`: those the line
    ran through). The side holding more area keeps the code; the other becomes a new grid numbered after the
    highest number the community has used (in a plan in force, in this draft, or merged away from it).
    Refused when the line does not divide the grid or a side would be in pieces."""
    result = plan_edits.split_grid(
        sessions,
        settings,
        plan_id,
        body.grid,
        body.line,
        version=_version(if_match, body.version),
        actor=caller,
        crs=body.crs,
    )
    return _answer(result)


@router.post(
    "/{plan_id}/edits/merge",
    dependencies=[allow(plan_edits.EDIT_ROLE)],
    summary="Merge two neighbouring responsibility grids of a draft (gis_staff)",
    responses=EDIT_RESPONSES,
)
def merge(
    plan_id: int,
    body: MergeBody,
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    if_match: IfMatch = None,
) -> JSONResponse:
    """The grids must be of one community and share an edge; the smaller code stays, the other is never
    given again."""
    a, b = body.grids
    result = plan_edits.merge_grids(
        sessions, settings, plan_id, a, b, version=_version(if_match, body.version), actor=caller
    )
    return _answer(result)


@router.post(
    "/{plan_id}/edits/move",
    dependencies=[allow(plan_edits.EDIT_ROLE)],
    summary="Move unit grids of a draft to a neighbouring responsibility grid (gis_staff)",
    responses=EDIT_RESPONSES,
)
def move(
    plan_id: int,
    body: MoveBody,
    sessions: Sessions,
    settings: AppSettings,
    caller: Caller,
    if_match: IfMatch = None,
) -> JSONResponse:
    """Every grid must stay in one piece and keep a unit grid (to empty a grid, merge it)."""
    result = plan_edits.move_unit_grids(
        sessions,
        settings,
        plan_id,
        body.unit_grids,
        body.to,
        version=_version(if_match, body.version),
        actor=caller,
    )
    return _answer(result)
