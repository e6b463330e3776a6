"""API keys and the audit log, which is only ever appended to (a trigger refuses the rest)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gridsvc.db.models import ApiKey, AuditLog


def add_key(
    session: Session,
    *,
    name: str,
    prefix: str,
    key_sha256: str,
    role: str,
    expires_at: dt.datetime | None = None,
) -> ApiKey:
    """Store a new key's hash."""
    key = ApiKey(name=name, prefix=prefix, key_sha256=key_sha256, role=role, expires_at=expires_at)
    session.add(key)
    session.flush()
    return key


def find_key_by_hash(session: Session, key_sha256: str) -> ApiKey | None:
    """The key with this hash, revoked and expired ones included (the caller says which it is)."""
    return session.execute(select(ApiKey).where(ApiKey.key_sha256 == key_sha256)).scalar_one_or_none()


def find_key_by_prefix(session: Session, prefix: str) -> ApiKey | None:
    """A key by its public prefix (revoked or not)."""
    return session.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none()


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first."""
    return list(session.execute(select(ApiKey).order_by(ApiKey.id.desc())).scalars())


def revoke_key(session: Session, key: ApiKey) -> None:
    """Mark a key revoked now."""
    key.revoked_at = session.execute(select(func.now())).scalar_one()
    session.flush()


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | None,
    details: dict[str, Any] | None = None,
    api_key_id: int | None = None,
) -> AuditLog:
    """Append one entry to the audit log, in the caller's transaction."""
    entry = AuditLog(
        actor=actor,
        api_key_id=api_key_id,
        action=action,
        entity=entity,
        entity_id=entity_id,
        details=details or {},
    )
    session.add(entry)
    session.flush()
    return entry


def recent_audit(session: Session, limit: int = 50) -> list[AuditLog]:
    """The newest audit entries."""
    return list(session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).scalars())
