"""The tile store: seeded ahead of time, answered from while the data is unchanged, never stale or filtered.

All on the case city (tests/factories.py) in the test's rolled-back transaction, through the tile service
as the HTTP route calls it; the in-process tile cache is emptied before every request that must reach
the store, as for a process that has just started.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bench.tiles import decode_mvt
from gridsvc.db.engine import make_engine
from gridsvc.errors import InvalidInputError, PermissionDeniedError
from gridsvc.repositories import tiles as tiles_repo
from gridsvc.services import plans, tiles
from gridsvc.services.access import LOCAL_OPERATOR, Principal
from gridsvc.services.imports import ImportRequest, import_components
from gridsvc.settings import Settings
from tests.api.test_tiles import tile_of
from tests.factories import GRID_ORIGIN, LAMP
from tests.services.test_plans import WEST_EAST, add_draft

DISPATCHER = Principal(name="调度员", role="dispatcher")
PLANNER = Principal(name="规划员", role="gis_staff")
# The lamps' tile at zoom 16, and the unit grids' at 13.
LAMPS_16 = tile_of(LAMP[0], LAMP[1], 16)
GRIDS_13 = tile_of(GRID_ORIGIN[0] + 0.001, GRID_ORIGIN[1] + 0.001, 13)


@pytest.fixture(autouse=True)
def fresh_tile_cache() -> Iterator[None]:
    tiles.clear_cache()
    yield
    tiles.clear_cache()


def _stored(sessions: sessionmaker[Session], layer: str | None = None) -> list[Any]:
    with sessions() as session:
        return list(
            session.execute(
                text(
                    "SELECT layer, z, x, y, stamp, features FROM tile_store "
                    "WHERE :layer IS NULL OR layer = :layer ORDER BY layer, z, x, y"
                ),
                {"layer": layer},
            ).all()
        )


def _answer(
    sessions: sessionmaker[Session], settings: Settings, layer: str, z: int, xy: tuple[int, int], **query: Any
) -> tiles.TileAnswer:
    tiles.clear_cache()  # a process that just started: nothing in memory
    return tiles.tile(
        sessions, settings, layer, z, *xy, tiles.TileQuery(**query), actor=Principal("planner", "gis_staff")
    )


def _codes(answer: tiles.TileAnswer) -> set[str]:
    if answer.status == 204:
        return set()
    return {str(f.properties["code"]) for layer in decode_mvt(answer.content).values() for f in layer}


def test_a_seed_stores_every_tile_with_data_once_and_the_service_answers_from_it(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    results = tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, max_zoom=16, workers=1)
    by_layer = {r.layer: r for r in results}
    assert set(by_layer) == set(tiles.seedable_layers()) and "cases" not in by_layer
    for layer in ("unit_grids", "responsibility_grids", "components", "stations", "communities"):
        result = by_layer[layer]
        assert result.min_zoom == tiles.LAYERS[layer].minzoom and result.max_zoom == 16
        assert result.rendered == result.tiles > 0, result
        assert result.features > 0 and result.stored_bytes > 0
    # Four unit grids of about 440 m x 330 m: at zoom 16 (about 490 m tiles here) they meet a few tiles.
    unit_rows = _stored(sessions, "unit_grids")
    assert {z for _, z, *_ in unit_rows} == {13, 14, 15, 16}
    assert sum(features for *_, features in unit_rows if _[1] == 13) == 4
    assert len({stamp for *_, stamp, _f in unit_rows}) == 1

    # What the store holds is what rendering gives: the same codes.
    rendered = tiles.tile(
        sessions,
        test_settings,
        "components",
        16,
        *LAMPS_16,
        tiles.TileQuery(),
        actor=DISPATCHER,
        revalidate=True,
    )
    assert _codes(rendered) == {"3701020118000001", "3701020118000002"}
    assert _codes(_answer(sessions, test_settings, "components", 16, LAMPS_16)) == _codes(rendered)

    # And the answer does come from the store: a marked row is what a cold process serves.
    with sessions.begin() as session:
        session.execute(
            text(
                "UPDATE tile_store SET content = :marked "
                "WHERE layer = 'components' AND z = 16 AND x = :x AND y = :y"
            ),
            {"marked": b"\x1a\x00", "x": LAMPS_16[0], "y": LAMPS_16[1]},
        )
    assert _answer(sessions, test_settings, "components", 16, LAMPS_16).content == b"\x1a\x00"

    # A second seed finds every tile current and renders none; `status` says all are current.
    again = tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, max_zoom=16, workers=1)
    assert all(r.rendered == 0 and r.tiles > 0 for r in again)
    status = tiles.store_status(sessions, test_settings)
    assert status and all(row.current == row.tiles for row in status)


def test_after_an_activation_or_an_import_stored_tiles_are_not_used_and_a_seed_redraws_only_what_changed(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, max_zoom=16, workers=1)
    old_grids = _codes(_answer(sessions, test_settings, "unit_grids", 13, GRIDS_13))
    assert old_grids == {f"37010200100100{i}" for i in range(1, 5)}

    with sessions.begin() as session:
        station_id = session.execute(text("SELECT id FROM station")).scalar_one()
        draft = add_draft(session, station_id, halves=WEST_EAST)
    # A draft's tiles are drawn on demand and never stored.
    draft_tile = _answer(sessions, test_settings, "unit_grids", 13, GRIDS_13, plan=draft)
    assert _codes(draft_tile) == {"370102001001101", "370102001001102"}
    assert len({stamp for *_, stamp, _f in _stored(sessions, "unit_grids")}) == 1
    plans.activate_plan(sessions, draft, dt.date(2026, 12, 1), settings=test_settings, actor=PLANNER)
    # The stored tiles were drawn for the plan before: the answer is the new plan, rendered and stored.
    assert _codes(_answer(sessions, test_settings, "unit_grids", 13, GRIDS_13)) == {
        "370102001001101",
        "370102001001102",
    }
    assert (
        len({stamp for *_, stamp, _f in _stored(sessions, "unit_grids")}) == 2
    )  # one new tile, the rest old

    lon, lat = LAMP[0] + 0.0002, LAMP[1]
    path = tmp_path / "lamps.geojson"
    gpd.GeoDataFrame(
        {"标识码": ["3701020118000777"], "名称": ["新路灯"]},
        geometry=[shapely.Point(lon, lat)],
        crs="EPSG:4490",
    ).to_file(path, driver="GeoJSON")
    assert import_components(
        sessions, ImportRequest(path=path), settings=test_settings, actor=LOCAL_OPERATOR
    ).accepted
    assert "3701020118000777" in _codes(_answer(sessions, test_settings, "components", 16, LAMPS_16))

    redrawn = {r.layer: r for r in tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, workers=1)}
    # The plan changed (both grid layers) and components were imported: those are redrawn, bar the tiles
    # the requests above already drew at the new stamps; stations and communities were not touched.
    assert 0 < redrawn["unit_grids"].rendered < redrawn["unit_grids"].tiles
    assert redrawn["unit_grids"].stale_forgotten > 0
    assert redrawn["responsibility_grids"].rendered == redrawn["responsibility_grids"].tiles > 0
    assert 0 < redrawn["components"].rendered < redrawn["components"].tiles
    assert redrawn["stations"].rendered == redrawn["communities"].rendered == 0
    again = tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, workers=1)
    assert all(r.rendered == 0 for r in again)
    assert len({stamp for *_, stamp, _f in _stored(sessions, "unit_grids")}) == 1


def test_filtered_case_and_draft_tiles_are_never_stored_and_a_miss_is_kept(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    assert _stored(sessions) == []
    _answer(sessions, test_settings, "components", 16, LAMPS_16, classes=("0118",))
    _answer(sessions, test_settings, "cases", 16, LAMPS_16)
    assert _stored(sessions) == []
    # An unfiltered tile asked before any seed is rendered and kept for the next process.
    _answer(sessions, test_settings, "components", 16, LAMPS_16)
    assert [(layer, z, x, y) for layer, z, x, y, *_ in _stored(sessions)] == [("components", 16, *LAMPS_16)]
    # No-cache renders anew and leaves the store as it was.
    tiles.tile(
        sessions,
        test_settings,
        "stations",
        16,
        *LAMPS_16,
        tiles.TileQuery(),
        actor=DISPATCHER,
        revalidate=True,
    )
    assert len(_stored(sessions)) == 1
    # With the store off nothing is written.
    off = test_settings.model_copy(update={"tile_store": False})
    _answer(sessions, off, "communities", 16, LAMPS_16)
    assert len(_stored(sessions)) == 1


def test_seeding_refuses_what_it_cannot_do_and_only_gis_staff_may(
    case_city: dict[str, Any], sessions: sessionmaker[Session], test_settings: Settings
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        tiles.seed(sessions, test_settings, actor=LOCAL_OPERATOR, layers=("cases", "roads"), max_zoom=25)
    fields = [(p.field, p.message) for p in refused.value.problems]
    assert [f for f, _ in fields] == ["layer", "layer", "max_zoom"]
    assert "'cases' is not kept in the tile store" in fields[0][1] and "25 is outside 0-18" in fields[2][1]
    off = test_settings.model_copy(update={"tile_store": False})
    with pytest.raises(InvalidInputError, match="the tile store is off"):
        tiles.seed(sessions, off, actor=LOCAL_OPERATOR)
    with pytest.raises(PermissionDeniedError):
        tiles.seed(sessions, test_settings, actor=DISPATCHER)
    with pytest.raises(PermissionDeniedError):
        tiles.clear_store(sessions, actor=DISPATCHER)
    assert _stored(sessions) == []


def test_the_autocommit_look_up_hands_its_connection_back_to_the_pool_transactional(
    database_url: str,
) -> None:
    """The store is read on a pooled connection in autocommit; the pool must get it back as it lent it,
    or the next session's writes would each commit on their own."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        found = tiles_repo.look_up_stored(sessionmaker(bind=engine), "communities", z=8, x=0, y=0, stamp="-")
        assert found is None
        lent = engine.raw_connection()  # the only connection of the pool: the one just used
        try:
            assert lent.driver_connection is not None and lent.driver_connection.autocommit is False
        finally:
            lent.close()
    finally:
        engine.dispose()
