"""Domain errors raised by services; the API maps each class to one HTTP status."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class FieldProblem:
    """One thing wrong with one part of the input: where it is and why."""

    field: str
    message: str
    location: dict[str, Any] = dataclasses.field(default_factory=dict)


class GridsvcError(Exception):
    """Base of every error gridsvc raises on purpose."""

    title = "gridsvc error"

    def __init__(self, detail: str, *, problems: list[FieldProblem] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems or []
        # More members for the problem+json body (RFC 9457 extension members), e.g. a refused import's
        # "links" to its report.
        self.extensions: dict[str, Any] = {}


class InvalidInputError(GridsvcError):
    """The caller sent something that cannot be accepted as it is."""

    title = "Invalid input"


class ImportRefusedError(InvalidInputError):
    """An import refused its file after reading it all (strict mode, or a layer it would replace with
    rejected rows): nothing was written. ``held_report`` names its report when one was held for download
    (services/held_reports.py)."""

    def __init__(
        self,
        detail: str,
        *,
        problems: list[FieldProblem] | None = None,
        held_report: str | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        super().__init__(detail, problems=problems)
        self.held_report = held_report
        self.warnings = warnings or []


class NotFoundError(GridsvcError):
    """The thing asked for does not exist."""

    title = "Not found"


class ConflictError(GridsvcError):
    """The request collides with the current state (a duplicate, a concurrent change)."""

    title = "Conflict"


class AuthenticationError(GridsvcError):
    """No API key, or one that is unknown or revoked."""

    title = "Unauthorized"


class PermissionDeniedError(GridsvcError):
    """A valid API key whose role may not do this."""

    title = "Forbidden"


class SetupProblemError(GridsvcError):
    """The machine lacks something gridsvc needs (PostgreSQL, PostGIS, a free port)."""

    title = "Environment problem"
