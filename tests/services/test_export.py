"""Exporting layers back to the files GIS staff use, in their CRS and encoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from pyproj import Transformer
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gridsvc.errors import InvalidInputError, NotFoundError
from gridsvc.services.export import export_layer


def test_lamps_to_gbk_shapefile_in_zone_39(demo_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path, count = export_layer(
        demo_sessions,
        "components",
        tmp_path / "路灯.shp",
        crs="EPSG:4527",
        encoding="GBK",
        class_codes=("0118",),
    )
    with demo_sessions() as session:
        expected = session.execute(
            text("SELECT count(*) FROM component WHERE class_code = '0118' AND valid_to IS NULL AND in_use")
        ).scalar_one()
        first = session.execute(
            text(
                "SELECT code, ST_X(geom), ST_Y(geom) FROM component"
                " WHERE class_code = '0118' ORDER BY code LIMIT 1"
            )
        ).one()
    assert count == expected
    back = gpd.read_file(path, encoding="GBK")
    assert back.crs.to_epsg() == 4527
    row = back[back["code"] == first.code].iloc[0]
    x, y = Transformer.from_crs(4490, 4527, always_xy=True).transform(first[1], first[2])
    assert np.hypot(row.geometry.x - x, row.geometry.y - y) < 0.01
    assert "路灯" in set(back["class_name"])  # Chinese text survives GBK


def test_grids_and_boundaries(demo_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path, count = export_layer(demo_sessions, "grids", tmp_path / "grids.gpkg", kind="responsibility")
    grids = gpd.read_file(path)
    assert len(grids) == count and grids["code"].str.contains("R").all()
    path, count = export_layer(
        demo_sessions, "boundaries", tmp_path / "communities.geojson", level="community"
    )
    communities = gpd.read_file(path)
    assert len(communities) == count and communities["name"].str.endswith(("社区", "村")).all()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"path_name": "out.txt"}, "file"),
        ({"crs": "EPSG:999999"}, "crs"),
        ({"crs": "EPSG:2415"}, "crs"),  # Beijing 1954: PROJ knows no shift to it, and would leave it out
        ({"encoding": "GBK"}, "encoding"),  # GBK only for Shapefiles
        ({"path_name": "no-such-folder/out.gpkg"}, "file"),  # said before the layer is read
        ({"class_codes": ("0118", "9999")}, "class"),
    ],
)
def test_bad_export_options(
    demo_sessions: sessionmaker[Session], tmp_path: Path, kwargs: dict[str, str], field: str
) -> None:
    name = kwargs.pop("path_name", "out.gpkg")
    with pytest.raises(InvalidInputError) as info:
        export_layer(demo_sessions, "components", tmp_path / name, **kwargs)  # type: ignore[arg-type]
    assert info.value.problems[0].field == field


def test_utf8_spelled_any_way_is_utf8(demo_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    path, count = export_layer(
        demo_sessions, "boundaries", tmp_path / "街道.gpkg", level="street", encoding="utf8"
    )
    assert len(gpd.read_file(path)) == count > 0


def test_a_shapefile_written_again_in_another_crs_keeps_no_part_of_the_old_one(
    demo_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    target = tmp_path / "街道.shp"
    export_layer(demo_sessions, "boundaries", target, level="street", crs="EPSG:4527")
    assert target.with_suffix(".prj").exists()
    target.with_suffix(".qix").write_bytes(b"an old spatial index")  # as QGIS leaves one
    export_layer(demo_sessions, "boundaries", target, level="street", crs="gcj02")
    # GCJ-02 has no EPSG code, so the file has no .prj: the old one would have put it in zone 39.
    assert not target.with_suffix(".prj").exists() and not target.with_suffix(".qix").exists()
    back = gpd.read_file(target)
    assert back.crs is None and 116 < back.total_bounds[0] < 118


def test_unknown_plan(demo_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        export_layer(demo_sessions, "grids", tmp_path / "g.gpkg", plan="999")


@pytest.mark.parametrize(
    ("what", "options", "refused"),
    [
        (
            "components",
            {"plan": "99"},
            {
                "plan": "--plan chooses grids, not components: leave it out"
                " (choose components with --class, --at)"
            },
        ),
        (
            "components",
            {"kind": "unit", "level": "street"},
            {
                "kind": "--kind chooses grids, not components: leave it out"
                " (choose components with --class, --at)",
                "level": "--level chooses boundaries, not components: leave it out"
                " (choose components with --class, --at)",
            },
        ),
        (
            "grids",
            {"class_codes": ("0118",)},
            {
                "class": "--class chooses components, not grids: leave it out"
                " (choose grids with --plan, --kind)"
            },
        ),
        (
            "boundaries",
            {"plan": "active"},
            {"plan": "--plan chooses grids, not boundaries: leave it out (choose boundaries with --level)"},
        ),
    ],
)
def test_an_option_for_another_layer_is_refused_not_ignored(
    demo_sessions: sessionmaker[Session],
    tmp_path: Path,
    what: str,
    options: dict[str, Any],
    refused: dict[str, str],
) -> None:
    target = tmp_path / "out.gpkg"
    with pytest.raises(InvalidInputError) as info:
        export_layer(demo_sessions, what, target, **options)
    assert {p.field: p.message for p in info.value.problems} == refused
    assert not target.exists()


def test_a_plan_that_is_not_a_number_is_refused(demo_sessions: sessionmaker[Session], tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as info:
        export_layer(demo_sessions, "grids", tmp_path / "g.gpkg", plan="abc")
    assert info.value.problems[0].field == "plan"


def test_what_the_layer_holds_and_the_file_cannot_is_said_plainly(
    demo_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with demo_sessions.begin() as session:
        # Police manhole covers (0113 is none of the demo's classes): one named with an emoji GBK lacks.
        session.execute(
            text(
                "INSERT INTO component (code, class_code, name, geom)"
                " VALUES ('3701020113000001', '0113', '井盖🙂', ST_GeomFromText('POINT(117.02 36.66)', 4490))"
            )
        )
    with pytest.raises(InvalidInputError) as info:
        export_layer(
            demo_sessions, "components", tmp_path / "covers.shp", encoding="GBK", class_codes=("0113",)
        )
    assert info.value.problems[0].message == (
        "cannot write covers.shp in GBK: column name of code 3701020113000001 holds '井盖🙂', which GBK"
        " cannot represent; write the file in GB18030 or UTF-8"
    )
    path, count = export_layer(demo_sessions, "components", tmp_path / "covers.shp", class_codes=("0113",))
    assert count == 1 and gpd.read_file(path)["name"].tolist() == ["井盖🙂"]
