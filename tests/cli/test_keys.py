"""API keys as the operator makes them: they expire, `keys list` says when, and a served gridsvc refuses a
revoked or expired key over HTTP."""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy.orm import sessionmaker

from gridsvc.db.engine import make_engine
from gridsvc.services.access import KEY_CACHE_SECONDS
from tests.api.test_access_table import add_expired_key
from tests.cli.test_commands import gridsvc
from tests.conftest import served_gridsvc

CITY = ZoneInfo("Asia/Shanghai")


def _listed(database_url: str, prefix: str) -> str:
    listed = gridsvc(["keys", "list"], database_url)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if prefix in line]
    assert len(rows) == 1, listed.stdout
    return rows[0]


def test_keys_expire_after_a_year_unless_told_and_the_list_says_when(database_url: str) -> None:
    made = gridsvc(["keys", "create", "--role", "field", "--name", "网格员-王五"], database_url)
    assert made.returncode == 0, made.stderr
    prefix = made.stdout.strip().split("_")[1]
    in_a_year = (dt.datetime.now(CITY) + dt.timedelta(days=365)).date().isoformat()
    assert f"valid until {in_a_year}" in made.stderr
    assert in_a_year in _listed(database_url, prefix)

    dated = gridsvc(
        ["keys", "create", "--role", "reporter", "--name", "12345热线", "--expires", "2030-06-30"],
        database_url,
    )
    assert dated.returncode == 0, dated.stderr
    assert "valid until 2030-06-30 00:00 (Asia/Shanghai)" in dated.stderr
    assert "2030-06-30 00:00" in _listed(database_url, dated.stdout.strip().split("_")[1])

    short = gridsvc(
        ["keys", "create", "--role", "field", "--name", "临时", "--expires-days", "7"], database_url
    )
    in_a_week = (dt.datetime.now(CITY) + dt.timedelta(days=7)).date().isoformat()
    assert short.returncode == 0 and f"valid until {in_a_week}" in short.stderr


def test_keys_refuse_an_expiry_in_the_past_or_given_twice(database_url: str) -> None:
    past = gridsvc(
        ["keys", "create", "--role", "field", "--name", "x", "--expires", "2020-01-01"], database_url
    )
    assert past.returncode == 1 and "must expire in the future" in past.stderr
    both = ["--expires", "2030-01-01", "--expires-days", "30"]
    twice = gridsvc(["keys", "create", "--role", "field", "--name", "x", *both], database_url)
    assert twice.returncode == 1 and "not both" in twice.stderr
    forever = gridsvc(
        ["keys", "create", "--role", "field", "--name", "x", "--expires-days", "99999"], database_url
    )
    assert forever.returncode == 1 and "1 to 3650 days" in forever.stderr


def test_a_served_gridsvc_refuses_revoked_and_expired_keys(database_url: str) -> None:
    made = gridsvc(["keys", "create", "--role", "dispatcher", "--name", "调度员-赵六"], database_url)
    secret = made.stdout.strip()
    prefix = secret.split("_")[1]
    engine = make_engine(database_url)
    expired = add_expired_key(sessionmaker(bind=engine), role="dispatcher", name="去年的钥匙")
    engine.dispose()
    yesterday = (dt.datetime.now(CITY) - dt.timedelta(days=1)).date().isoformat()
    with served_gridsvc(database_url) as base:
        assert httpx.get(f"{base}/v1/me", headers={"X-API-Key": secret}).json() == {
            "name": "调度员-赵六",
            "role": "dispatcher",
        }
        old = httpx.get(f"{base}/v1/me", headers={"X-API-Key": expired})
        assert old.status_code == 401 and f"expired on {yesterday}" in old.json()["detail"]
        assert "(expired)" in _listed(database_url, expired.split("_")[1])

        assert gridsvc(["keys", "revoke", prefix], database_url).returncode == 0
        # The server remembers a key for KEY_CACHE_SECONDS: a revocation made by another process (this
        # command line) is honoured within that time.
        deadline = time.monotonic() + KEY_CACHE_SECONDS + 5
        while (answer := httpx.get(f"{base}/v1/me", headers={"X-API-Key": secret})).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.25)
        assert answer.status_code == 401 and "unknown or revoked" in answer.json()["detail"]
