"""Exports and problem reports as GIS staff open them: long Shapefile text, report value types, dates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyogrio
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis.export import SHAPEFILE_TEXT_BYTES
from gridsvc.services.export import export_layer

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
