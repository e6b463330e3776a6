"""The `gridsvc` command as a user types it: keys, coordinates, help."""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pytest
import shapely
import sqlalchemy
import typer

from tests.conftest import NEUTRAL_CWD, free_port


def gridsvc(
    args: list[str], database_url: str | None = None, *, columns: int = 200
) -> subprocess.CompletedProcess[str]:
    """Run the command in a process of its own; ``columns`` is the terminal width rich sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env["COLUMNS"] = str(columns)
    if database_url:
        env["GRIDSVC_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "gridsvc.cli", *args],
        env=env,
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_list_revoke(database_url: str) -> None:
    made = gridsvc(["keys", "create", "--role", "dispatcher", "--name", "调度员-李四"], database_url)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("gs_")
    assert "not shown again" in made.stderr
    prefix = secret.split("_")[1]
    listed = gridsvc(["keys", "list"], database_url)
    assert prefix in listed.stdout and "调度员-李四" in listed.stdout and secret not in listed.stdout
    assert gridsvc(["keys", "revoke", prefix], database_url).returncode == 0
    missing = gridsvc(["keys", "revoke", "ffffffff"], database_url)
    assert missing.returncode == 1 and "no API key with prefix" in missing.stderr
    bad_role = gridsvc(["keys", "create", "--role", "admin", "--name", "x"], database_url)
    assert bad_role.returncode == 1 and "unknown role 'admin'" in bad_role.stderr


def test_crs_convert_known_point() -> None:
    result = gridsvc(["crs", "convert", "117.0195", "36.6617", "--from", "wgs84", "--to", "EPSG:4548"])
    assert result.returncode == 0, result.stderr
    easting, northing = (float(v) for v in result.stdout.split())
    assert easting == pytest.approx(501743.387, abs=0.01)
    assert northing == pytest.approx(4058968.487, abs=0.01)
    zoned = gridsvc(["crs", "convert", "117.0195", "36.6617", "--from", "wgs84", "--to", "EPSG:4527"])
    assert float(zoned.stdout.split()[0]) == pytest.approx(39_501_743.387, abs=0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["117", "36.6", "--from", "gcj03", "--to", "wgs84"], "unknown CRS 'gcj03'"),
        (["2.3522", "48.8566", "--from", "gcj02", "--to", "wgs84"], "outside China"),
        (["39501743.4", "4058968.5", "--from", "EPSG:4548", "--to", "wgs84"], "EPSG:4527"),
    ],
)
def test_crs_convert_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    result = gridsvc(["crs", "convert", *args])
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_teaches() -> None:
    result = gridsvc(["--help"])
    assert result.returncode == 0
    for command in ("db", "demo", "serve", "quickstart", "keys", "crs"):
        assert command in result.stdout
    assert "GRIDSVC_DATABASE_URL" in gridsvc(["db", "up", "--help"]).stdout


def test_a_ctrl_c_while_the_commands_load_is_one_line_and_exit_130() -> None:
    # A real SIGINT, sent as the installed command (gridsvc.console:main) starts loading the command line:
    # from an import hook, so that it lands inside the imports every time, not by a race with a timer.
    script = (
        "import builtins, os, signal\n"
        "real_import = builtins.__import__\n"
        "def interrupted(name, *args, **kwargs):\n"
        "    if name == 'gridsvc.cli':\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real_import(name, *args, **kwargs)\n"
        "builtins.__import__ = interrupted\n"
        "from gridsvc.console import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "keys", "list"],
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 130
    assert result.stderr == "interrupted (Ctrl+C) while starting: nothing was done\n"


def test_serve_without_database_says_what_to_do() -> None:
    env_dir = f"/tmp/gridsvc-nothing-{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATA_DIR=env_dir, GRIDSVC_PORT=str(free_port()))
    result = subprocess.run(
        [sys.executable, "-m", "gridsvc.cli", "serve"],
        env=env,
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "gridsvc db up" in result.stderr
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{env['GRIDSVC_PORT']}/health", timeout=1)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GRIDSVC_PG_PORT", "abc", "GRIDSVC_PG_PORT"),
        ("GRIDSVC_DATABASE_URL", "garbage", "is not a database URL"),
        ("GRIDSVC_DATABASE_URL", "postgresql+psycopg2://a:b@127.0.0.1:1/x", "cannot reach the database"),
    ],
)
def test_bad_settings_and_a_stopped_database_are_one_clear_line(
    variable: str, value: str, message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update({variable: value, "COLUMNS": "300"})
    result = subprocess.run(
        [sys.executable, "-m", "gridsvc.cli", "keys", "list"],
        env=env,
        cwd=NEUTRAL_CWD,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("ending", "said"),
    [
        ("pg_cancel_backend", "the database cancelled the statement"),
        ("pg_terminate_backend", "the database closed the connection during the operation"),
    ],
)
def test_a_statement_the_database_cancels_is_said_as_such_not_as_a_stopped_database(
    database_url: str, ending: str, said: str
) -> None:
    """An administrator cancels the statement of a running command (pg_cancel_backend, as one does with a
    query running for too long) or ends its session (pg_terminate_backend, as a server shutting down
    does): it said "cannot reach the database: is it running?", since psycopg2 raises the same
    OperationalError for all three. The command waits on a table this test holds locked, so the cancel
    lands on its statement every time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSVC_")}
    env.update(GRIDSVC_DATABASE_URL=database_url, COLUMNS="300")
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as holder:
            holder.execute(sqlalchemy.text("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE"))
            command = subprocess.Popen(
                [sys.executable, "-m", "gridsvc.cli", "keys", "list"],
                env=env,
                cwd=NEUTRAL_CWD,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                waiting = None
                for _ in range(600):  # up to 60 s for the command to start and reach the lock
                    # (pg_stat_activity is read once per transaction unless its snapshot is cleared)
                    holder.execute(sqlalchemy.text("SELECT pg_stat_clear_snapshot()"))
                    waiting = holder.execute(
                        sqlalchemy.text(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query ILIKE '%api_key%' AND pid <> pg_backend_pid()"
                        )
                    ).scalar()
                    if waiting is not None or command.poll() is not None:
                        break
                    time.sleep(0.1)
                assert waiting is not None, command.communicate(timeout=10)
                holder.execute(sqlalchemy.text(f"SELECT {ending}(:pid)"), {"pid": waiting})
                _, stderr = command.communicate(timeout=60)
            finally:
                command.kill()
            holder.rollback()
    finally:
        engine.dispose()
    assert command.returncode == 1
    assert said in stderr and (
        "nothing was changed" in stderr or "not committed was rolled back" in stderr
    ), stderr
    assert "cannot reach" not in stderr and "Traceback" not in stderr


def test_crs_convert_in_city_refuses_beijing() -> None:
    beijing = gridsvc(
        ["crs", "convert", "116.3975", "39.9087", "--from", "wgs84", "--to", "gcj02", "--in-city"]
    )
    assert beijing.returncode == 1 and "116.3975" in beijing.stderr and "济南市" in beijing.stderr
    jinan = gridsvc(
        ["crs", "convert", "117.0195", "36.6617", "--from", "wgs84", "--to", "gcj02", "--in-city"]
    )
    assert jinan.returncode == 0


def test_export_writes_the_file_and_refuses_bad_options_in_one_line(demo_url: str, tmp_path: Path) -> None:
    shapefile = tmp_path / "路灯.shp"
    done = gridsvc(
        [
            "export",
            "components",
            str(shapefile),
            "--class",
            "0118",
            "--crs",
            "EPSG:4527",
            "--encoding",
            "GBK",
        ],
        demo_url,
    )
    assert done.returncode == 0, done.stderr
    assert "components to" in done.stdout and shapefile.with_suffix(".cpg").read_text().strip() == "GBK"
    refused = gridsvc(["export", "grids", str(tmp_path / "g.gpkg"), "--plan", "abc"], demo_url)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "plan: 'abc': a plan id (a number) or 'active'" in refused.stderr
    # An option of another layer is refused, not ignored (this once wrote every component).
    misplaced = gridsvc(["export", "components", str(tmp_path / "c.gpkg"), "--plan", "99"], demo_url)
    assert misplaced.returncode == 1 and not (tmp_path / "c.gpkg").exists()
    assert "plan: --plan chooses grids, not components: leave it out" in misplaced.stderr
    # --at: a day is its end, in the city's time; before the demo's census nothing stood.
    early = gridsvc(["export", "components", str(tmp_path / "c.gpkg"), "--at", "2000-01-01"], demo_url)
    assert early.returncode == 1 and "no components match at 2000-01-01T23:59:59+08:00" in early.stderr
    no_day = gridsvc(["export", "components", str(tmp_path / "c.gpkg"), "--at", "2025-13-01"], demo_url)
    assert no_day.returncode == 2 and "a day (2025-06-01, 20250601 or 2025/6/1: its end)" in no_day.stderr


@pytest.mark.parametrize(
    ("written", "meant"),
    [
        # A day, however it is written, means its end in the city's time.
        ("2026-11-25", "2026-11-25T23:59:59.999999+08:00"),
        ("20261125", "2026-11-25T23:59:59.999999+08:00"),
        ("2026/11/25", "2026-11-25T23:59:59.999999+08:00"),
        ("2026/1/5", "2026-01-05T23:59:59.999999+08:00"),
        # A time is that instant: in the city's time unless it carries an offset.
        ("2026-11-25T14:30", "2026-11-25T14:30:00+08:00"),
        ("2026-11-25 14:30:15", "2026-11-25T14:30:15+08:00"),
        ("2026-11-25T06:30Z", "2026-11-25T06:30:00+00:00"),
        ("2026-11-25T14:30+09:00", "2026-11-25T14:30:00+09:00"),
        # Forms Python would read as something else than their end of day, or that are no day: refused.
        ("2026-W48-3", None),
        ("2026-329", None),
        ("20261125T1430", None),
        ("2026-11-31", None),
        ("2026/13/1", None),
        ("", None),
    ],
)
def test_export_at_reads_a_day_as_its_end_in_every_form_people_write_it(
    written: str, meant: str | None
) -> None:
    from gridsvc.cli.main import _instant
    from gridsvc.settings import Settings

    settings = Settings(timezone="Asia/Shanghai")
    if meant is None:
        with pytest.raises(
            typer.BadParameter, match=re.escape("a day (2025-06-01, 20250601 or 2025/6/1: its end)")
        ):
            _instant(written, settings)
    else:
        assert _instant(written, settings).isoformat() == meant


def test_a_refused_import_says_which_rows_and_says_it_once(demo_url: str, tmp_path: Path) -> None:
    census = tmp_path / "井盖.csv"
    census.write_text(
        "经度,纬度,标识码,状态\n117.05,36.65,3701020118900001,完好\n117.0°,36.65,3701020118900002,完好\n",
        encoding="utf-8",
    )
    strict = gridsvc(["import", "components", str(census), "--crs", "EPSG:4490", "--strict"], demo_url)
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert "1 row was rejected and strict mode refuses" in strict.stderr
    assert "see the report" not in strict.stderr  # no --report: the rows are listed right here
    assert (
        "  - row 3, geometry: 经度 117.0° is not a number: write the coordinate as a decimal" in strict.stderr
    )

    no_crs = gridsvc(["import", "components", str(census)], demo_url)
    assert no_crs.returncode == 1
    assert no_crs.stderr.count("has no coordinate reference system") == 1

    # One standard field mapped twice: neither is dropped unseen (as a profile with a duplicate key).
    twice = gridsvc(
        ["import", "components", str(census), "--map", "code=标识码", "--map", "code=状态"], demo_url
    )
    assert (
        twice.returncode == 2 and "code is mapped twice (code=标识码 and code=状态): give one" in twice.stderr
    )

    # --area takes codes repeated or comma-separated, as an upload's area= does.
    retire = ["--dry-run", "--retire-missing", "--area", "370102,999999999"]
    areas = gridsvc(["import", "components", str(census), "--crs", "EPSG:4490", *retire], demo_url)
    assert areas.returncode == 1 and "999999999: no loaded community lies in it" in areas.stderr
    assert "370102," not in areas.stderr and "  - --area: 999999999" in areas.stderr  # the option, as typed

    # The import that goes through is recorded as the login that ran it, not as "cli". It is taken out
    # again: the demo database is shared, and other tests import this code and read the latest batch.
    kept = gridsvc(["import", "components", str(census), "--crs", "EPSG:4490"], demo_url)
    engine = sqlalchemy.create_engine(demo_url)
    batches = "SELECT id FROM survey_batch WHERE source_file = '井盖.csv'"
    try:
        assert kept.returncode == 0, kept.stderr
        with engine.connect() as conn:
            by = conn.execute(
                sqlalchemy.text("SELECT imported_by FROM survey_batch WHERE source_file = '井盖.csv'")
            ).scalar_one()
        assert by == f"cli:{getpass.getuser()}"
    finally:
        _take_out_imports(engine, batches)
        engine.dispose()


def _take_out_imports(engine: sqlalchemy.Engine, batches: str) -> None:
    """Delete what the imports of the ``batches`` query wrote: the demo database is shared, and other tests
    import the same codes and read the latest batch."""
    with engine.begin() as conn:
        for table, column in (("import_problem", "survey_batch_id"), ("component", "survey_batch_id")):
            conn.execute(sqlalchemy.text(f"DELETE FROM {table} WHERE {column} IN ({batches})"))
        conn.execute(sqlalchemy.text(f"DELETE FROM survey_batch WHERE id IN ({batches})"))


def test_import_list_and_show_find_an_import_by_its_file_and_its_content(
    demo_url: str, tmp_path: Path
) -> None:
    """GIS staff ask whether a file they were sent again was imported already, and what that import did.
    A Shapefile's checksum covers its attributes too: the same points with a corrected .dbf are another file.
    """
    shapefile = tmp_path / "井盖.shp"
    covers = gpd.GeoDataFrame(
        {
            "标识码": ["3701020118900101", "3701020118900102"],
            "名称": ["井盖甲", "井盖乙"],
            "状态": ["完好"] * 2,
        },
        geometry=[shapely.Point(117.05, 36.65), shapely.Point(117.0505, 36.6505)],
        crs="EPSG:4490",
    )
    engine = sqlalchemy.create_engine(demo_url)
    batches = "SELECT id FROM survey_batch WHERE source_file = '井盖.shp'"
    try:
        covers.to_file(shapefile, encoding="GBK")
        points = shapefile.read_bytes()
        first = gridsvc(["import", "components", str(shapefile)], demo_url)
        assert first.returncode == 0, first.stderr
        covers.assign(名称=["井盖甲", "井盖丙"]).to_file(shapefile, encoding="GBK")
        assert shapefile.read_bytes() == points  # only the .dbf differs
        unseen = gridsvc(["import", "list", "--same-as", str(shapefile)], demo_url)
        assert unseen.returncode == 0 and unseen.stdout.strip() == "no import matches"
        second = gridsvc(["import", "components", str(shapefile)], demo_url)
        assert second.returncode == 0, second.stderr

        def listed(*options: str) -> list[dict[str, Any]]:
            done = gridsvc(["import", "list", *options, "--json"], demo_url)
            assert done.returncode == 0, done.stderr
            return list(json.loads(done.stdout))

        by_content = listed("--same-as", str(shapefile))
        by_name = listed("--file", "井盖.shp", "--layer", "components")
        assert [b["id"] for b in by_name] == [by_content[0]["id"], by_content[0]["id"] - 1]
        assert len(by_content) == 1 and by_content[0]["counts"]["changed"] == 1
        # Sent again zipped (in a folder, as Windows zips one), it is the same content: the same import.
        zipped = tmp_path / "井盖.zip"
        with zipfile.ZipFile(zipped, "w") as archive:
            for part in sorted(tmp_path.glob("井盖.*")):
                if part != zipped:
                    archive.write(part, f"井盖/{part.name}")
        assert [b["id"] for b in listed("--same-as", str(zipped))] == [by_content[0]["id"]]
        assert by_content[0]["imported_by"] == f"cli:{getpass.getuser()}"
        table = gridsvc(["import", "list", "--file", "井盖.shp"], demo_url)
        assert "1 changed, 1 unchanged" in table.stdout and "2 new" in table.stdout

        report = tmp_path / "问题.csv"
        shown = gridsvc(["import", "show", str(by_content[0]["id"]), "--report", str(report)], demo_url)
        assert shown.returncode == 0, shown.stderr
        assert by_content[0]["checksum_sha256"] in shown.stdout.replace("│", "").replace("\n", "")
        assert "井盖.shp" in shown.stdout and report.exists()
        missing = gridsvc(["import", "show", "999999"], demo_url)
        assert missing.returncode == 1 and "no import 999999" in missing.stderr
        wrong = gridsvc(["import", "list", "--layer", "lamps"], demo_url)
        assert wrong.returncode == 1 and "layer: 'lamps': one of components, boundaries" in wrong.stderr
    finally:
        _take_out_imports(engine, batches)
        engine.dispose()
