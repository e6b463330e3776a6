"""The embedded PostGIS, driven through the real `gridsvc` command as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from gridsvc.db.embedded import EmbeddedCluster, ensure_installation, find_installation
from gridsvc.errors import SetupProblemError
from tests.conftest import NEUTRAL_CWD, free_port, make_tmp_data_dir

GRIDSVC = [sys.executable, "-m", "gridsvc.cli"]


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*GRIDSVC, *args], env=env, cwd=NEUTRAL_CWD, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"gridsvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def own_env() -> Iterator[dict[str, str]]:
    """Environment for a gridsvc with its own data folder and port; the cluster is stopped afterwards."""
    data_dir = make_tmp_data_dir("gridsvc-cli-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATA_DIR=str(data_dir), GRIDSVC_PG_PORT=str(free_port()), COLUMNS="200")
    yield env
    run(["db", "down"], env, check=False)
    shutil.rmtree(data_dir, ignore_errors=True)


def test_up_twice_down_up_keeps_data(own_env: dict[str, str]) -> None:
    first = run(["db", "up"], own_env)
    assert "started" in first.stdout
    second = run(["db", "up"], own_env)
    assert "already running" in second.stdout

    status = json.loads(run(["db", "status", "--json"], own_env).stdout)
    assert status["mode"] == "embedded" and status["running"] is True
    assert status["port"] == int(own_env["GRIDSVC_PG_PORT"])
    assert status["migration"] == status["migration_head"]
    assert status["versions"]["postgis"].startswith("3.")
    assert "***" in status["url"]  # the password is never printed

    cluster = EmbeddedCluster(Path(own_env["GRIDSVC_DATA_DIR"]), port=int(own_env["GRIDSVC_PG_PORT"]))
    dsn = cluster.url().replace("postgresql+psycopg2", "postgresql")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO department (code, name_zh, name_en) VALUES ('kept', '保留', 'kept')")

    assert "stopped" in run(["db", "down"], own_env).stdout
    assert json.loads(run(["db", "status", "--json"], own_env).stdout)["running"] is False
    assert "not running" in run(["db", "down"], own_env).stdout
    # A stale postmaster.pid whose pid now belongs to another process (after a reboot) is not a server.
    pidfile = Path(own_env["GRIDSVC_DATA_DIR"], "pgdata", "postmaster.pid")
    pidfile.write_text(f"{os.getpid()}\n{pidfile.parent}\n0\n{own_env['GRIDSVC_PG_PORT']}\n")
    assert json.loads(run(["db", "status", "--json"], own_env).stdout)["running"] is False
    assert "started" in run(["db", "up"], own_env).stdout
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT name_zh FROM department WHERE code = 'kept'")
        assert cur.fetchone() == ("保留",)
    # The server runs as an unprivileged user even when the tests run as root.
    pgdata_owner = Path(own_env["GRIDSVC_DATA_DIR"], "pgdata").stat().st_uid
    if os.geteuid() == 0:
        assert pgdata_owner != 0


def test_external_url_starts_nothing(own_env: dict[str, str], database_url: str) -> None:
    env = {**own_env, "GRIDSVC_DATABASE_URL": database_url}
    result = run(["db", "up"], env)
    assert "external database" in result.stdout and "nothing started" in result.stdout
    assert not Path(own_env["GRIDSVC_DATA_DIR"], "pgdata").exists()
    status = json.loads(run(["db", "status", "--json"], env).stdout)
    assert status["mode"] == "external" and status["reachable"] is True
    refused = run(["db", "down"], env, check=False)
    assert refused.returncode == 1 and "does not stop it" in refused.stderr


def test_refuses_a_cluster_it_did_not_create(own_env: dict[str, str]) -> None:
    install = find_installation()
    assert install is not None
    pgdata = Path(own_env["GRIDSVC_DATA_DIR"], "pgdata")
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text(f"{install.major}\n")  # what any PostgreSQL cluster has
    for command in (["db", "up"], ["db", "down"], ["db", "status"]):
        result = run(command, own_env, check=False)
        assert result.returncode == 1, command
        assert "did not create" in result.stderr
    assert sorted(p.name for p in pgdata.iterdir()) == ["PG_VERSION"]  # untouched


def test_port_in_use_is_a_clear_error(own_env: dict[str, str], cluster: EmbeddedCluster) -> None:
    env = {**own_env, "GRIDSVC_PG_PORT": str(cluster.port)}
    result = run(["db", "up"], env, check=False)
    assert result.returncode == 1
    assert f"port {cluster.port}" in result.stderr and "GRIDSVC_PG_PORT" in result.stderr


def test_missing_postgis_names_the_packages(tmp_path: Path) -> None:
    with pytest.raises(SetupProblemError) as info:
        ensure_installation(tmp_path)  # a folder with no PostgreSQL in it
    message = str(info.value)
    assert "postgis-3" in message and "GRIDSVC_DATABASE_URL" in message


def test_data_folder_the_server_user_cannot_reach(tmp_path: Path) -> None:
    """A clone under /root (mode 0700) run as root: the server's files go where its user can reach them."""
    private = make_tmp_data_dir("gridsvc-private-")
    private.chmod(0o700)
    data_dir = private / "project" / ".gridsvc"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATA_DIR=str(data_dir), GRIDSVC_PG_PORT=str(free_port()), COLUMNS="200")
    cluster = EmbeddedCluster(data_dir, port=int(env["GRIDSVC_PG_PORT"]))
    try:
        assert "started" in run(["db", "up"], env).stdout
        status = json.loads(run(["db", "status", "--json"], env).stdout)
        assert status["running"] is True
        if os.geteuid() == 0:
            assert not str(cluster.server_dir).startswith(str(private))
            assert status["data_dir"] == str(cluster.server_dir)
        else:
            assert cluster.server_dir == data_dir
        assert "already running" in run(["db", "up"], env).stdout
    finally:
        run(["db", "down"], env, check=False)
        if cluster.server_dir != data_dir and cluster.server_dir.exists():
            shutil.rmtree(cluster.server_dir, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)
