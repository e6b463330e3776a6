"""Reference data: departments, component classes, event classes."""

from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import GEOMETRY_KINDS, ComponentClass, Department, EventClass
from gridsvc.errors import ConflictError, FieldProblem, InvalidInputError
from gridsvc.repositories import access as audit
from gridsvc.repositories import reference as repo
from gridsvc.services.access import Principal

DEPARTMENT_CODE = re.compile(r"[a-z][a-z0-9_]{1,31}")
CLASS_CODE = re.compile(r"\d{4,5}")


def list_departments(sessions: sessionmaker[Session]) -> list[Department]:
    """All departments."""
    with sessions() as session:
        return repo.list_departments(session)


def create_department(
    sessions: sessionmaker[Session],
    *,
    code: str,
    name_zh: str,
    name_en: str,
    phone: str | None,
    actor: Principal,
) -> Department:
    """Add a department (gis_staff)."""
    actor.require("gis_staff")
    problems = []
    if not DEPARTMENT_CODE.fullmatch(code):
        problems.append(
            FieldProblem("code", "lower-case letters, digits and _, starting with a letter (2-32)")
        )
    if not name_zh.strip():
        problems.append(FieldProblem("name_zh", "must not be empty"))
    if problems:
        raise InvalidInputError("the department is not valid", problems=problems)
    with sessions.begin() as session:
        if repo.get_department(session, code) is not None:
            raise ConflictError(f"department {code!r} exists already")
        try:
            department = repo.add_department(
                session, Department(code=code, name_zh=name_zh.strip(), name_en=name_en.strip(), phone=phone)
            )
        except IntegrityError as exc:  # a concurrent request added it between our check and insert
            raise ConflictError(f"department {code!r} exists already") from exc
        audit.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="create",
            entity="department",
            entity_id=code,
            details={"name_zh": name_zh, "name_en": name_en},
        )
        return department


def list_component_classes(sessions: sessionmaker[Session]) -> list[ComponentClass]:
    """All component classes."""
    with sessions() as session:
        return repo.list_component_classes(session)


def create_component_class(
    sessions: sessionmaker[Session],
    *,
    code: str,
    name_zh: str,
    name_en: str,
    default_department_code: str | None,
    geometry_kind: str,
    actor: Principal,
) -> ComponentClass:
    """Add a city extension class (gis_staff): the class list is data, not an enum."""
    actor.require("gis_staff")
    problems = []
    if not CLASS_CODE.fullmatch(code):
        problems.append(FieldProblem("code", "4 digits (2 major + 2 minor) or 5 (2 + 3), e.g. 0392"))
    if geometry_kind not in GEOMETRY_KINDS:
        problems.append(FieldProblem("geometry_kind", f"one of {', '.join(GEOMETRY_KINDS)}"))
    if not name_zh.strip():
        problems.append(FieldProblem("name_zh", "must not be empty"))
    if problems:
        raise InvalidInputError("the component class is not valid", problems=problems)
    with sessions.begin() as session:
        if repo.get_component_class(session, code) is not None:
            raise ConflictError(f"component class {code!r} exists already")
        if default_department_code and repo.get_department(session, default_department_code) is None:
            raise InvalidInputError(
                "unknown department",
                problems=[
                    FieldProblem("default_department_code", f"no department {default_department_code!r}")
                ],
            )
        minor_len = len(code) - 2
        component_class = ComponentClass(
            code=code,
            major_code=code[:2],
            minor_code=code[2 : 2 + minor_len],
            name_zh=name_zh.strip(),
            name_en=name_en.strip(),
            default_department_code=default_department_code,
            geometry_kind=geometry_kind,
            is_city_extension=True,
        )
        try:
            repo.add_component_class(session, component_class)
        except IntegrityError as exc:
            raise ConflictError(f"component class {code!r} could not be stored") from exc
        audit.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="create",
            entity="component_class",
            entity_id=code,
            details={"name_zh": name_zh, "geometry_kind": geometry_kind},
        )
        return component_class


def list_event_classes(sessions: sessionmaker[Session]) -> list[EventClass]:
    """All event classes."""
    with sessions() as session:
        return repo.list_event_classes(session)
