"""API keys, roles and the audit trail."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import ROLES, ApiKey
from gridsvc.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from gridsvc.repositories import access as repo

KEY_PREFIX = "gs"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, id and role."""

    name: str
    role: str
    api_key_id: int | None = None

    def require(self, *roles: str) -> None:
        """Raise PermissionDeniedError unless this caller has one of ``roles``."""
        if self.role not in roles:
            allowed = ", ".join(roles)
            raise PermissionDeniedError(
                f"this action needs the role {allowed}; the API key {self.name!r} is {self.role}"
            )


# The command line acts with the rights of whoever can run it on the server.
LOCAL_OPERATOR = Principal(name="cli", role="gis_staff")
# Case commands (hotline loads, escalation runs) act as the dispatch centre.
LOCAL_DISPATCHER = Principal(name="cli", role="dispatcher")


@dataclass(frozen=True)
class IssuedKey:
    """A newly made key: the secret is only ever shown here."""

    id: int
    name: str
    role: str
    prefix: str
    secret: str


def hash_key(raw_key: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is enough and lookups stay O(1)."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def create_key(sessions: sessionmaker[Session], *, name: str, role: str, actor: Principal) -> IssuedKey:
    """Make a key with a role; only its hash is stored."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip():
        raise InvalidInputError("a key needs a name that says who or what uses it")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with sessions.begin() as session:
        key = repo.add_key(session, name=name.strip(), prefix=prefix, key_sha256=hash_key(secret), role=role)
        repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="create",
            entity="api_key",
            entity_id=prefix,
            details={"name": key.name, "role": role},
        )
        return IssuedKey(id=key.id, name=key.name, role=role, prefix=prefix, secret=secret)


def list_keys(sessions: sessionmaker[Session]) -> list[ApiKey]:
    """All keys (hashes only)."""
    with sessions() as session:
        return repo.list_keys(session)


def revoke_key(sessions: sessionmaker[Session], *, prefix: str, actor: Principal) -> ApiKey:
    """Revoke a key by its prefix; a revoked key authenticates no more."""
    with sessions.begin() as session:
        key = repo.find_key_by_prefix(session, prefix)
        if key is None:
            raise NotFoundError(f"no API key with prefix {prefix!r}")
        if key.revoked_at is None:
            repo.revoke_key(session, key)
            with _known_keys_lock:
                for cached in [k for k in _known_keys if k[1] == key.key_sha256]:
                    del _known_keys[cached]
            repo.record_audit(
                session,
                actor=actor.name,
                api_key_id=actor.api_key_id,
                action="revoke",
                entity="api_key",
                entity_id=prefix,
            )
        return key


# Known keys are remembered this long, to spare a query per request under load (the field app locates
# many times a second). A revocation in this process forgets at once; one made elsewhere (the CLI) is
# honoured within this many seconds.
KEY_CACHE_SECONDS = 5.0
_known_keys: dict[tuple[int, str], tuple[float, Principal]] = {}
_known_keys_lock = threading.Lock()


def authenticate(sessions: sessionmaker[Session], raw_key: str | None) -> Principal:
    """The caller behind an API key, or AuthenticationError."""
    if not raw_key:
        raise AuthenticationError("this action needs an API key (header X-API-Key or Authorization: Bearer)")
    digest = hash_key(raw_key.strip())
    cache_key = (id(sessions), digest)
    now = time.monotonic()
    with _known_keys_lock:
        known = _known_keys.get(cache_key)
    if known is not None and now - known[0] < KEY_CACHE_SECONDS:
        return known[1]
    with sessions() as session:
        key = repo.find_active_key(session, digest)
    if key is None:
        raise AuthenticationError("the API key is unknown or revoked")
    principal = Principal(name=key.name, role=key.role, api_key_id=key.id)
    with _known_keys_lock:
        if len(_known_keys) > 10_000:
            _known_keys.clear()
        _known_keys[cache_key] = (now, principal)
    return principal
