"""Exports and problem reports as GIS staff open them: long Shapefile text, report value types, dates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis.export import SHAPEFILE_TEXT_BYTES
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.export import export_layer
from gridsvc.services.imports import ImportRequest, import_components
from gridsvc.settings import Settings
from tests.services.test_imports import _grid_points, _lamps

LONG_REMARK = "很长的说明" * 30  # 150 characters: 450 bytes in UTF-8, 300 in GBK


@pytest.mark.parametrize("encoding", ["UTF-8", "GBK"])
def test_a_street_with_a_long_free_attribute_is_written_to_a_shapefile_cut_at_a_character(
    demo_sessions: sessionmaker[Session], tmp_path: Path, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    with demo_sessions.begin() as session:
        street = session.execute(
            text(
                "UPDATE street SET attributes = jsonb_build_object('备注', CAST(:remark AS text))"
                " WHERE code = (SELECT min(code) FROM street) RETURNING code"
            ),
            {"remark": LONG_REMARK},
        ).scalar_one()
    target = tmp_path / "街道.shp"
    with caplog.at_level(logging.WARNING, logger="gis.export"):
        path, count = export_layer(demo_sessions, "boundaries", target, level="street", encoding=encoding)
    assert "1 value(s) of field attributes are longer than the 254 bytes" in caplog.text
    back = pyogrio.read_dataframe(path, encoding=encoding)
    assert len(back) == count
    cut = back.loc[back["code"] == street, "attributes"].item()
    expected = '{"备注": "' + LONG_REMARK
    assert len(cut.encode(encoding)) <= SHAPEFILE_TEXT_BYTES
    # As many whole characters as fit: one more would not.
    assert expected.startswith(cut)
    assert len(expected[: len(cut) + 1].encode(encoding)) > SHAPEFILE_TEXT_BYTES
    # The other streets are written whole.
    others = back.loc[back["code"] != street, "attributes"].dropna()
    assert all(isinstance(json.loads(a), dict) for a in others)


def test_a_geopackage_report_keeps_its_numbers_numbers_through_a_correction(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    """灯杆高度 12.5 (REAL) and 灯杆数 2 (INTEGER) of a rejected lamp: the report holds them as numbers, so
    the lamp imported from the corrected report has the numbers an import of the census itself would."""
    lamps = _lamps(_grid_points(demo_sessions, 2, offset=300), first_seq=973_001)
    lamps["灯杆数"] = np.array([2, 3], dtype=np.int64)
    lamps["灯型"] = ["钠灯", "LED"]  # text stays text
    lamps.loc[1, "状态"] = "良"  # no such status: the row is rejected
    lamps.to_file(tmp_path / "base.gpkg", driver="GPKG")

    def run(path: Path, **kwargs: object) -> None:
        request = ImportRequest(path=path, **kwargs)  # type: ignore[arg-type]
        import_components(demo_sessions, request, settings=test_settings, actor=LOCAL_OPERATOR)

    report = tmp_path / "rep.gpkg"
    run(tmp_path / "base.gpkg", dry_run=True, report_path=report)
    info = pyogrio.read_info(report)
    types = dict(zip(info["fields"], info["dtypes"], strict=True))
    assert (types["灯杆高度"], types["灯杆数"], types["灯型"]) == ("float64", "int64", "object")

    fixed = gpd.read_file(report)  # corrected in QGIS: the status
    assert fixed["status"].tolist() == ["良"]
    fixed["status"] = "破损"
    fixed.to_file(report, layer="problems", driver="GPKG")
    run(tmp_path / "base.gpkg")
    run(report)
    with demo_sessions() as session:
        kinds = session.execute(
            text(
                "SELECT code, jsonb_typeof(attributes->'灯杆高度'), attributes->>'灯杆高度',"
                " jsonb_typeof(attributes->'灯杆数'), attributes->>'灯杆数', status"
                " FROM component WHERE code = ANY(:codes) AND valid_to IS NULL ORDER BY code"
            ),
            {"codes": list(lamps["标识码"])},
        ).all()
    assert [tuple(k)[1:] for k in kinds] == [
        ("number", "12.5", "number", "2", "intact"),
        ("number", "12.5", "number", "3", "damaged"),
    ]


ONE_FORM = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00"


@pytest.mark.parametrize("suffix", [".csv", ".shp", ".geojson"])
def test_valid_from_is_written_in_one_iso_form_in_every_row_and_text_format(
    demo_sessions: sessionmaker[Session], tmp_path: Path, suffix: str
) -> None:
    with demo_sessions.begin() as session:
        codes = (
            session.execute(
                text(
                    "SELECT code FROM component WHERE class_code = '0118' AND valid_to IS NULL AND in_use"
                    " ORDER BY code LIMIT 2"
                )
            )
            .scalars()
            .all()
        )
        for code, stamp in zip(codes, ["2024-12-01 00:00:00+00", "2026-11-24 09:15:30.25+08"], strict=True):
            session.execute(
                text("UPDATE component SET valid_from = CAST(:stamp AS timestamptz) WHERE code = :code"),
                {"code": code, "stamp": stamp},
            )
    path, count = export_layer(demo_sessions, "components", tmp_path / f"路灯{suffix}", class_codes=("0118",))
    if suffix == ".csv":
        back = pd.read_csv(path, encoding="utf-8-sig", dtype=str)
    elif suffix == ".shp":
        back = pyogrio.read_dataframe(path)
    else:
        features = json.loads(path.read_text(encoding="utf-8"))["features"]
        back = pd.DataFrame([f["properties"] for f in features])
    assert len(back) == count
    stamps = back.set_index("code")["valid_from"]
    assert stamps.str.fullmatch(ONE_FORM).all(), stamps[~stamps.str.fullmatch(ONE_FORM)].head()
    assert stamps[codes].tolist() == ["2024-12-01T00:00:00.000000+00:00", "2026-11-24T01:15:30.250000+00:00"]
