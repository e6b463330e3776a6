"""Departments and the component and event class tables."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridsvc.db.models import ComponentClass, Department, EventClass


def list_departments(session: Session) -> list[Department]:
    """All departments by code."""
    return list(session.execute(select(Department).order_by(Department.code)).scalars())


def get_department(session: Session, code: str) -> Department | None:
    """One department."""
    return session.get(Department, code)


def add_department(session: Session, department: Department) -> Department:
    """Insert a department."""
    session.add(department)
    session.flush()
    return department


def list_component_classes(session: Session) -> list[ComponentClass]:
    """All component classes by code."""
    return list(session.execute(select(ComponentClass).order_by(ComponentClass.code)).scalars())


def get_component_class(session: Session, code: str) -> ComponentClass | None:
    """One component class."""
    return session.get(ComponentClass, code)


def add_component_class(session: Session, component_class: ComponentClass) -> ComponentClass:
    """Insert a component class."""
    session.add(component_class)
    session.flush()
    return component_class


def list_event_classes(session: Session) -> list[EventClass]:
    """All event classes by code."""
    return list(session.execute(select(EventClass).order_by(EventClass.code)).scalars())


def get_event_class(session: Session, code: str) -> EventClass | None:
    """One event class."""
    return session.get(EventClass, code)
