"""Departments, component classes and event classes: readable by anyone, changed by gis_staff."""

from __future__ import annotations

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from gridsvc.api.deps import Caller, Sessions
from gridsvc.api.roles import PUBLIC, RoleRoute, allow
from gridsvc.services import reference

router = APIRouter(prefix="/v1", tags=["reference data"], route_class=RoleRoute)


class DepartmentOut(BaseModel):
    """A department."""

    model_config = ConfigDict(from_attributes=True)
    code: str = Field(examples=["lighting"])
    name_zh: str = Field(examples=["照明"])
    name_en: str = Field(examples=["Street lighting"])
    phone: str | None = Field(default=None, examples=["0531-82071556"])


class DepartmentIn(BaseModel):
    """A new department."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"code": "water_affairs", "name_zh": "水务", "name_en": "Water affairs"}]
        },
    )
    code: str = Field(min_length=2, max_length=32)
    name_zh: str = Field(min_length=1, max_length=100)
    name_en: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, pattern=r"^[0-9+\- ]{5,20}$")


class ComponentClassOut(BaseModel):
    """A component class (CJ/T 214 or a city extension)."""

    model_config = ConfigDict(from_attributes=True)
    code: str = Field(examples=["0118"])
    major_code: str = Field(examples=["01"])
    minor_code: str = Field(examples=["18"])
    name_zh: str = Field(examples=["路灯"])
    name_en: str = Field(examples=["Street lamp"])
    default_department_code: str | None = Field(examples=["lighting"])
    geometry_kind: str = Field(examples=["point"])
    is_city_extension: bool
    snap_distance_m: float
    duplicate_radius_m: float


class ComponentClassIn(BaseModel):
    """A new city extension class."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "0392",
                    "name_zh": "大件垃圾投放点",
                    "name_en": "Bulky waste drop-off",
                    "default_department_code": "sanitation",
                    "geometry_kind": "point",
                }
            ]
        },
    )
    code: str
    name_zh: str
    name_en: str = ""
    default_department_code: str | None = None
    geometry_kind: str = "point"


class EventClassOut(BaseModel):
    """An event class."""

    model_config = ConfigDict(from_attributes=True)
    code: str = Field(examples=["0403"])
    major_code: str = Field(examples=["04"])
    major_name_zh: str = Field(examples=["街面秩序"])
    name_zh: str = Field(examples=["违章停车"])
    name_en: str = Field(examples=["Illegal parking"])
    default_department_code: str | None = Field(examples=["traffic"])
    duplicate_radius_m: float


@router.get(
    "/departments", dependencies=[PUBLIC], response_model=list[DepartmentOut], summary="List departments"
)
def list_departments(sessions: Sessions) -> list[DepartmentOut]:
    """Every department that owns or maintains components or handles cases."""
    return [DepartmentOut.model_validate(d) for d in reference.list_departments(sessions)]


@router.post(
    "/departments",
    dependencies=[allow("gis_staff")],
    response_model=DepartmentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a department (gis_staff)",
    responses={
        400: {"description": "the body cannot be read: not UTF-8 JSON"},
        401: {"description": "no or unknown API key"},
        403: {"description": "role is not gis_staff"},
        409: {"description": "a department with this code exists already"},
    },
)
def create_department(body: DepartmentIn, sessions: Sessions, caller: Caller) -> DepartmentOut:
    """Add a department; recorded in the audit log."""
    department = reference.create_department(
        sessions, code=body.code, name_zh=body.name_zh, name_en=body.name_en, phone=body.phone, actor=caller
    )
    return DepartmentOut.model_validate(department)


@router.get(
    "/component-classes",
    dependencies=[PUBLIC],
    response_model=list[ComponentClassOut],
    summary="List component classes",
)
def list_component_classes(sessions: Sessions) -> list[ComponentClassOut]:
    """The component classes: CJ/T 214 codes and the city's extension classes."""
    return [ComponentClassOut.model_validate(c) for c in reference.list_component_classes(sessions)]


@router.post(
    "/component-classes",
    dependencies=[allow("gis_staff")],
    response_model=ComponentClassOut,
    status_code=status.HTTP_201_CREATED,
    summary="Add a city extension component class (gis_staff)",
    responses={
        400: {"description": "the body cannot be read: not UTF-8 JSON"},
        401: {"description": "no or unknown API key"},
        403: {"description": "role is not gis_staff"},
        409: {"description": "a class with this code exists already"},
    },
)
def create_component_class(body: ComponentClassIn, sessions: Sessions, caller: Caller) -> ComponentClassOut:
    """Add an extension class (a city's own class with no national code)."""
    created = reference.create_component_class(
        sessions,
        code=body.code,
        name_zh=body.name_zh,
        name_en=body.name_en,
        default_department_code=body.default_department_code,
        geometry_kind=body.geometry_kind,
        actor=caller,
    )
    return ComponentClassOut.model_validate(created)


@router.get(
    "/event-classes", dependencies=[PUBLIC], response_model=list[EventClassOut], summary="List event classes"
)
def list_event_classes(sessions: Sessions) -> list[EventClassOut]:
    """The event classes (exposed garbage, illegal parking, ...)."""
    return [EventClassOut.model_validate(c) for c in reference.list_event_classes(sessions)]
