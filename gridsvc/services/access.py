"""API keys, roles and the audit trail.

Keys are 256-bit random secrets of which only the SHA-256 is stored; they can be revoked and they expire
(``expires_at``; keys made before expiry existed have none and keep working). Who may call which route
is declared per route in gridsvc/api/roles.py; the services check the roles again (``require``), and
the finer rules that depend on the data (which step of the case loop, which plan) live only here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import ROLES as ROLES  # re-exported: the API declares routes' roles from it
from gridsvc.db.models import ApiKey
from gridsvc.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from gridsvc.repositories import access as repo

KEY_PREFIX = "gs"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, id and role, and when the key stops working (None: never)."""

    name: str
    role: str
    api_key_id: int | None = None
    expires_at: dt.datetime | None = None

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


# Keys made on the command line stop working after a year unless told otherwise: a key nobody renews (a
# lost phone, a contractor who left, an app retired) ends by itself, and a yearly renewal matches the
# bureau's yearly evaluation cycle without being a chore. Integrations may ask for up to ten years.
DEFAULT_KEY_DAYS = 365
MAX_KEY_DAYS = 3650


@dataclass(frozen=True)
class IssuedKey:
    """A newly made key: the secret is only ever shown here."""

    id: int
    name: str
    role: str
    prefix: str
    secret: str
    expires_at: dt.datetime | None = None


def hash_key(raw_key: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is enough and lookups stay O(1)."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def key_expiry(
    *, days: int | None = None, until: dt.date | None = None, timezone: str = "Asia/Shanghai"
) -> dt.datetime:
    """When a new key should stop working: ``days`` from now, or at the start of the local day ``until``
    (the key works up to that date); neither: DEFAULT_KEY_DAYS from now."""
    now = dt.datetime.now(dt.UTC)
    if days is not None and until is not None:
        raise InvalidInputError("give the key a lifetime in days or an end date, not both")
    if until is not None:
        expires = dt.datetime.combine(until, dt.time(), tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)
    else:
        chosen = DEFAULT_KEY_DAYS if days is None else days
        if not 1 <= chosen <= MAX_KEY_DAYS:
            raise InvalidInputError(f"a key lives 1 to {MAX_KEY_DAYS} days, not {chosen}")
        expires = now + dt.timedelta(days=chosen)
    if expires <= now:
        raise InvalidInputError(f"{until} has begun or passed: a key must expire in the future")
    if expires > now + dt.timedelta(days=MAX_KEY_DAYS):
        raise InvalidInputError(f"a key lives at most {MAX_KEY_DAYS} days: make a new one before then")
    return expires


def create_key(
    sessions: sessionmaker[Session],
    *,
    name: str,
    role: str,
    actor: Principal,
    expires_at: dt.datetime | None = None,
) -> IssuedKey:
    """Make a key with a role, expiring at ``expires_at`` (None: never); only its hash is stored."""
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip():
        raise InvalidInputError("a key needs a name that says who or what uses it")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.UTC):
        raise InvalidInputError("a key must expire in the future")
    prefix = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with sessions.begin() as session:
        key = repo.add_key(
            session,
            name=name.strip(),
            prefix=prefix,
            key_sha256=hash_key(secret),
            role=role,
            expires_at=expires_at,
        )
        repo.record_audit(
            session,
            actor=actor.name,
            api_key_id=actor.api_key_id,
            action="create",
            entity="api_key",
            entity_id=prefix,
            details={
                "name": key.name,
                "role": role,
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
        return IssuedKey(
            id=key.id, name=key.name, role=role, prefix=prefix, secret=secret, expires_at=expires_at
        )


def list_keys(sessions: sessionmaker[Session]) -> list[ApiKey]:
    """All keys (hashes only)."""
    with sessions() as session:
        return repo.list_keys(session)


def revoke_key(sessions: sessionmaker[Session], *, prefix: str, actor: Principal) -> ApiKey:
    """Revoke a key by its prefix; a revoked key authenticates no more. The prefix may be given as the key
    begins (``gs_7d2f709e``), or as the whole key."""
    if prefix.startswith(f"{KEY_PREFIX}_"):
        prefix = prefix.removeprefix(f"{KEY_PREFIX}_").split("_", 1)[0]
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
# honoured within this many seconds. Expiry is checked on every use, cached or not: a remembered key is
# never served past its expires_at.
KEY_CACHE_SECONDS = 5.0
_known_keys: dict[tuple[int, str], tuple[float, Principal]] = {}
_known_keys_lock = threading.Lock()

UNKNOWN_KEY = "the API key is unknown or revoked"


def _expired(principal: Principal, timezone: str) -> AuthenticationError | None:
    """The error for a key past its expiry, or None while it is valid."""
    expires = principal.expires_at
    if expires is None or expires > dt.datetime.now(dt.UTC):
        return None
    local = expires.astimezone(ZoneInfo(timezone))
    return AuthenticationError(
        f"the API key {principal.name!r} expired on {local:%Y-%m-%d} at {local:%H:%M} ({timezone}): "
        "ask the operator for a new one (gridsvc keys create)"
    )


def cached_principal(
    sessions: sessionmaker[Session], raw_key: str, *, timezone: str = "Asia/Shanghai"
) -> Principal | None:
    """The caller behind a key this process has seen in the last KEY_CACHE_SECONDS, without asking the
    database; None when it has to be asked. AuthenticationError for a remembered key that has expired."""
    return _remembered(sessions, hash_key(raw_key.strip()), timezone)


def _remembered(sessions: sessionmaker[Session], digest: str, timezone: str) -> Principal | None:
    cache_key = (id(sessions), digest)
    with _known_keys_lock:
        known = _known_keys.get(cache_key)
        if known is None or time.monotonic() - known[0] >= KEY_CACHE_SECONDS:
            return None
        expired = _expired(known[1], timezone)
        if expired is not None:
            del _known_keys[cache_key]
    if expired is not None:
        raise expired
    return known[1]


def authenticate(
    sessions: sessionmaker[Session], raw_key: str | None, *, timezone: str = "Asia/Shanghai"
) -> Principal:
    """The caller behind an API key, or AuthenticationError (none, unknown, revoked or expired).

    ``timezone`` is the city's, for the date an expired key names.
    """
    if not raw_key or not raw_key.strip():
        raise AuthenticationError("this action needs an API key (header X-API-Key or Authorization: Bearer)")
    digest = hash_key(raw_key.strip())
    known = _remembered(sessions, digest, timezone)
    if known is not None:
        return known
    with sessions() as session:
        key = repo.find_key_by_hash(session, digest)
    if key is None or key.revoked_at is not None:
        raise AuthenticationError(UNKNOWN_KEY)
    principal = Principal(name=key.name, role=key.role, api_key_id=key.id, expires_at=key.expires_at)
    expired = _expired(principal, timezone)
    if expired is not None:
        raise expired
    with _known_keys_lock:
        if len(_known_keys) > 10_000:
            _known_keys.clear()
        _known_keys[(id(sessions), digest)] = (time.monotonic(), principal)
    return principal
