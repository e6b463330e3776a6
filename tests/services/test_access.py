"""Keys in the service: hashed, expiring, never served from the key cache past their expiry."""

from __future__ import annotations

import datetime as dt
import secrets
import time

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.db.models import ApiKey
from gridsvc.errors import AuthenticationError, InvalidInputError
from gridsvc.services import access
from gridsvc.services.access import LOCAL_OPERATOR, authenticate, create_key, hash_key, key_expiry


def test_only_the_hash_is_stored_and_the_expiry_with_it(sessions: sessionmaker[Session]) -> None:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    issued = create_key(sessions, name="巡查-孙七", role="field", actor=LOCAL_OPERATOR, expires_at=expires)
    with sessions() as session:
        stored = session.execute(
            text("SELECT key_sha256, expires_at FROM api_key WHERE prefix = :p"), {"p": issued.prefix}
        ).one()
        everything = session.execute(
            text("SELECT api_key::text FROM api_key WHERE prefix = :p"), {"p": issued.prefix}
        )
        row_text = everything.scalar_one()
    assert stored.key_sha256 == hash_key(issued.secret) and issued.secret not in row_text
    assert stored.expires_at == expires
    assert authenticate(sessions, issued.secret).expires_at == expires


def test_an_expiry_is_in_the_future_and_within_ten_years() -> None:
    now = dt.datetime.now(dt.UTC)
    assert abs(key_expiry() - (now + dt.timedelta(days=365))) < dt.timedelta(minutes=1)
    # --expires DATE: the key works up to that local day.
    assert key_expiry(until=dt.date(2030, 6, 30)) == dt.datetime(2030, 6, 29, 16, 0, tzinfo=dt.UTC)
    for wrong in (
        {"days": 0},
        {"days": 3651},
        {"until": dt.date(2020, 1, 1)},
        {"days": 1, "until": now.date()},
    ):
        with pytest.raises(InvalidInputError):
            key_expiry(**wrong)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="future"):
        create_key(None, name="x", role="field", actor=LOCAL_OPERATOR, expires_at=now)  # type: ignore[arg-type]


def test_a_cached_key_is_not_served_past_its_expiry(sessions: sessionmaker[Session]) -> None:
    """The key cache keeps a key for KEY_CACHE_SECONDS; expiry inside that window still ends it."""
    secret = f"gs_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
    now = dt.datetime.now(dt.UTC)
    expires = now + dt.timedelta(seconds=2)  # time to read it once and remember it, even on a busy machine
    with sessions.begin() as session:
        session.add(
            ApiKey(
                name="快过期",
                prefix=secret.split("_")[1],
                key_sha256=hash_key(secret),
                role="field",
                created_at=now - dt.timedelta(days=1),
                expires_at=expires,
            )
        )
    assert authenticate(sessions, secret).name == "快过期"
    assert access.cached_principal(sessions, secret) is not None  # remembered, no query needed
    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)
    assert access.KEY_CACHE_SECONDS > 1  # still inside the cache window
    with pytest.raises(AuthenticationError, match="expired on"):
        access.cached_principal(sessions, secret)
    with pytest.raises(AuthenticationError, match="expired on"):
        authenticate(sessions, secret)
