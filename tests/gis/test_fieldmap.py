"""Tests for gis.fieldmap: aliases, saved profiles, mapping frames, and status/road-class normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis.fieldmap import (
    BUILTIN_ALIASES,
    LAYER_FIELDS,
    STANDARD_FIELDS,
    MappingError,
    clean_text,
    load_mapping,
    map_fields,
    map_layer_fields,
    normalise_road_class,
    normalise_status,
    resolve_mapping,
)

LAMP = shapely.Point(117.0201, 36.6602)


def survey(columns: dict[str, Any], geometry: list[object] | None = None) -> gpd.GeoDataFrame:
    """A chunk shaped like gis.io's: the file's columns, source_row from 2 (row 1 is the header), geometry."""
    n = len(next(iter(columns.values())))
    data = {**columns, "source_row": np.arange(2, n + 2, dtype=np.int64)}
    return gpd.GeoDataFrame(data, geometry=geometry or [LAMP] * n, crs="EPSG:4490")


# ------------------------------------------------------------------------------------ resolve_mapping


def test_builtin_aliases_cover_every_standard_field() -> None:
    assert tuple(BUILTIN_ALIASES) == STANDARD_FIELDS
    assert "部件标识码" in BUILTIN_ALIASES["code"]
    assert "OBJCODE" in BUILTIN_ALIASES["code"]


def test_chinese_aliases_resolve() -> None:
    columns = [
        "部件标识码",
        "部件名称",
        "小类代码",
        "部件状态",
        "权属单位",
        "主管部门",
        "养护单位",
        "初始日期",
    ]
    columns += ["变更日期", "数据来源", "备注", "照片", "所在单元网格", "source_row", "geometry"]
    assert resolve_mapping(columns) == {
        "code": "部件标识码",
        "name": "部件名称",
        "class_code": "小类代码",
        "status": "部件状态",
        "owner": "权属单位",
        "supervisor": "主管部门",
        "maintainer": "养护单位",
        "initial_date": "初始日期",
        "change_date": "变更日期",
        "data_source": "数据来源",
        "remarks": "备注",
        "photo": "照片",
    }


def test_latin_aliases_match_case_insensitively() -> None:
    columns = ["objcode", "ObjName", "classcode", " OBJSTATE ", "DeptName1", "deptname3", "ordate", "Note"]
    assert resolve_mapping(columns) == {
        "code": "objcode",
        "name": "ObjName",
        "class_code": "classcode",
        "status": " OBJSTATE ",
        "supervisor": "DeptName1",
        "maintainer": "deptname3",
        "initial_date": "ordate",
        "remarks": "Note",
    }


def test_first_alias_wins_and_the_other_column_stays_free() -> None:
    # CODE comes after 标识码 in the alias order, whatever the order of the file's columns.
    assert resolve_mapping(["CODE", "标识码"]) == {"code": "标识码"}


def test_explicit_entries_win_over_aliases() -> None:
    mapping = resolve_mapping(["编号", "OBJCODE", "名称"], {"code": "编号"})
    assert mapping == {"code": "编号", "name": "名称"}


def test_explicit_entry_matches_case_insensitively_when_unambiguous() -> None:
    assert resolve_mapping(["ObjCode"], {"code": "OBJCODE"}) == {"code": "ObjCode"}


def test_explicit_entry_of_two_fields_in_other_cases_asks_for_the_one_meant() -> None:
    # Once "which the file does not have", of a file that has two.
    with pytest.raises(MappingError) as info:
        resolve_mapping(["Note", "NOTE", "名称"], {"remarks": "note"})
    assert str(info.value) == (
        "the mapping gives remarks from field 'note', and the file has 2 fields of that name in other letter "
        "cases (Note, NOTE): give the one meant as written"
    )


def test_explicit_field_missing_from_the_file_lists_the_file_fields() -> None:
    with pytest.raises(MappingError) as info:
        resolve_mapping(["部件编码", "名称", "source_row", "geometry"], {"code": "标识码"})
    assert str(info.value) == (
        "the mapping gives code from field '标识码', which the file does not have; "
        "the file's fields are: 部件编码, 名称"
    )


def test_explicit_unknown_standard_field() -> None:
    with pytest.raises(MappingError, match="'height' is not a standard field"):
        resolve_mapping(["高度"], {"height": "高度"})


def test_explicit_entries_may_not_share_a_column() -> None:
    with pytest.raises(MappingError, match="both code and name from field '编号'"):
        resolve_mapping(["编号"], {"code": "编号", "name": "编号"})


# ---------------------------------------------------------------------------------------- profiles


def test_yaml_profile(tmp_path: Path) -> None:
    path = tmp_path / "承包商A.yaml"
    path.write_text("code: 设施编号\nname: 设施名称\nstatus: 现状\n", encoding="utf-8")
    assert load_mapping(path) == {"code": "设施编号", "name": "设施名称", "status": "现状"}


def test_yml_profile_with_bom_and_numeric_field_name(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("remarks: 2023\n", encoding="utf-8-sig")
    assert load_mapping(path) == {"remarks": "2023"}


def test_json_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"code": "BSM", "class_code": "LB"}, ensure_ascii=False), encoding="utf-8")
    assert load_mapping(path) == {"code": "BSM", "class_code": "LB"}


def test_profile_for_another_layer(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"community_code": "所属社区"}', encoding="utf-8")
    assert load_mapping(path, layer="stations") == {"community_code": "所属社区"}
    with pytest.raises(MappingError, match="'community_code' is not a standard field"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.yaml", "code: [a\n", "is malformed"),
        ("p.yaml", "- code\n- name\n", "must be a mapping of standard field to file field"),
        ("p.yaml", "code: 编号\ncode: 标识码\n", "duplicate key 'code'"),
        ("p.json", '{"code": "编号",', "is malformed"),
        ("p.json", '{"code": "编号", "code": "BSM"}', "duplicate key"),
        ("p.json", '{"height": "高度"}', "'height' is not a standard field; use one of code, name"),
        ("p.json", '{"code": null}', "'code' must name a file field, got None"),
        ("p.yaml", "code: ''\n", "'code' must name a file field"),
        ("p.txt", "code: 编号\n", "unknown format '.txt'"),
    ],
)
def test_bad_profiles(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=message):
        load_mapping(path)


def test_missing_profile(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="cannot be read"):
        load_mapping(tmp_path / "none.yaml")


# -------------------------------------------------------------------------------------- map_fields


def test_map_fields_with_chinese_aliases_keeps_unknown_fields_in_attributes() -> None:
    frame = survey(
        {
            "部件标识码": [" 3701020118000123 ", "3701020118000124"],
            "部件名称": ["泉城路路灯", "  "],
            "小类代码": ["0118", None],
            "状态": ["完好", "破损"],
            "初始日期": pd.to_datetime(["2023-05-01", None]),
            "所在单元网格": ["370102001001001", None],
            "灯高(米)": [8.5, np.nan],
            "灯头数": np.array([2, 3], dtype=np.int32),
            "巡查时间": pd.to_datetime(["2024-01-02 08:30:00", "2024-01-03"], format="ISO8601"),
            "是否亮灯": [True, False],
        }
    )
    mapped = map_fields(frame)
    assert list(mapped.columns) == ["source_row", *STANDARD_FIELDS, "attributes", "geometry"]
    assert mapped["source_row"].tolist() == [2, 3]
    assert mapped["code"].tolist() == ["3701020118000123", "3701020118000124"]
    assert mapped["name"].tolist() == ["泉城路路灯", None]
    assert mapped["class_code"].tolist() == ["0118", None]
    assert mapped["status"].tolist() == ["完好", "破损"]
    assert mapped["initial_date"].tolist() == ["2023-05-01", None]
    assert mapped["owner"].tolist() == [None, None]
    assert mapped.crs == "EPSG:4490"
    assert mapped.geometry.tolist() == [LAMP, LAMP]
    first, second = mapped["attributes"]
    assert first == {
        "所在单元网格": "370102001001001",
        "灯高(米)": 8.5,
        "灯头数": 2,
        "巡查时间": "2024-01-02T08:30:00",
        "是否亮灯": True,
    }
    assert second == {
        "所在单元网格": None,
        "灯高(米)": None,
        "灯头数": 3,
        "巡查时间": "2024-01-03",
        "是否亮灯": False,
    }
    # Plain Python values only, so the dicts go straight to JSON (and jsonb) with the Chinese keys intact.
    assert type(first["灯头数"]) is int
    assert type(first["灯高(米)"]) is float
    assert type(first["是否亮灯"]) is bool
    assert json.loads(json.dumps(first, ensure_ascii=False)) == first


def test_map_fields_with_an_explicit_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("code: 设施编号\nstatus: 现状\n", encoding="utf-8")
    frame = survey({"设施编号": ["3701020118000123"], "现状": ["损坏"], "NAME": ["路灯"], "BSM": ["x"]})
    mapped = map_fields(frame, load_mapping(path))
    assert mapped.loc[0, "code"] == "3701020118000123"
    assert mapped.loc[0, "status"] == "损坏"
    assert mapped.loc[0, "name"] == "路灯"
    # BSM is a code alias, but the profile gave code from 设施编号: BSM stays a free attribute.
    assert mapped.loc[0, "attributes"] == {"BSM": "x"}


def test_map_fields_with_a_json_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"class_code": "类型", "remarks": "说明文字"}', encoding="utf-8")
    frame = survey({"OBJCODE": ["3701020305000001"], "类型": ["0305"], "说明文字": ["新增"]})
    mapped = map_fields(frame, load_mapping(path))
    assert mapped.loc[0, ["code", "class_code", "remarks"]].tolist() == ["3701020305000001", "0305", "新增"]
    assert mapped.loc[0, "attributes"] == {}


def test_map_fields_with_a_mapping_naming_a_missing_field() -> None:
    frame = survey({"OBJCODE": ["3701020118000123"]})
    with pytest.raises(
        MappingError, match="field '部件编码', which the file does not have; the file's fields are: OBJCODE"
    ):
        map_fields(frame, {"code": "部件编码"})


def test_numeric_columns_keep_their_digits() -> None:
    # Excel and DBF readers turn codes into numbers: 3701020118000123.0 and class 118 (leading zero lost).
    frame = survey({"CODE": [3701020118000123.0, np.nan], "CLASSCODE": [118, 305], "NOTE": [1.5, 2.0]})
    mapped = map_fields(frame)
    assert mapped["code"].tolist() == ["3701020118000123", None]
    assert mapped["class_code"].tolist() == ["0118", "0305"]
    assert mapped["remarks"].tolist() == ["1.5", "2"]


def test_pandas_string_dtype_columns() -> None:
    frame = survey({"名称": pd.Series([" 路灯 ", None, ""], dtype="string")})
    assert map_fields(frame)["name"].tolist() == ["路灯", None, None]


def test_map_fields_needs_source_row() -> None:
    frame = gpd.GeoDataFrame({"CODE": ["1"]}, geometry=[LAMP], crs="EPSG:4490")
    with pytest.raises(MappingError, match="no source_row column"):
        map_fields(frame)


def test_clean_text_mixed_object_column() -> None:
    values = pd.Series([" a ", 3, 2.5, None, np.nan, ""], dtype=object)
    assert clean_text(values).tolist() == ["a", "3", "2.5", None, None, None]


def test_clean_text_string_column_strips_every_kind_of_blank() -> None:
    # pandas' own string dtype (what pyogrio reads text into) with NaN for missing; the ideographic space
    # (U+3000) of Chinese forms is whitespace to str.strip as well.
    values = pd.Series(["\u3000泉城路\t", "  ", None, "\n", "3701"], dtype="str")
    cleaned = clean_text(values)
    assert cleaned.dtype == object
    assert cleaned.tolist() == ["泉城路", None, None, None, "3701"]
    assert cleaned.index.equals(values.index)


# --------------------------------------------------------------------------------- other layers


def test_map_layer_fields_boundaries() -> None:
    frame = survey({"行政区划代码": ["370102001"], "名称": ["解放路街道"], "户数": [12000], "面积": [3.2]})
    mapped = map_layer_fields(frame, "boundaries")
    assert list(mapped.columns) == ["source_row", *LAYER_FIELDS["boundaries"], "attributes", "geometry"]
    assert mapped.loc[0, ["code", "name", "households"]].tolist() == ["370102001", "解放路街道", "12000"]
    assert mapped.loc[0, "attributes"] == {"面积": 3.2}


def test_map_layer_fields_stations_and_roads() -> None:
    stations = survey(
        {"工作站名称": ["泉城路站"], "社区代码": ["370102001001"], "联系电话": ["0531-86000000"]}
    )
    mapped = map_layer_fields(stations, "stations")
    assert mapped.loc[0, ["code", "name", "community_code", "phone"]].tolist() == [
        None,
        "泉城路站",
        "370102001001",
        "0531-86000000",
    ]
    roads = survey({"道路名称": ["泉城路"], "道路等级": ["主干路"]})
    assert map_layer_fields(roads, "roads").loc[0, ["name", "road_class"]].tolist() == ["泉城路", "主干路"]


def test_unknown_layer() -> None:
    with pytest.raises(MappingError, match="unknown layer 'lamps'"):
        map_layer_fields(survey({"a": [1]}), "lamps")


# ---------------------------------------------------------------------------------- normalisation


def test_normalise_status() -> None:
    values = pd.Series(
        [
            "完好",
            "正常",
            " 破损 ",
            "损坏",
            "丢失",
            "占用",
            "废弃",
            "移除",
            "Intact",
            "DAMAGED",
            None,
            "",
            "坏了",
        ]
    )
    normalised, unknown = normalise_status(values)
    assert normalised.tolist() == [
        "intact",
        "intact",
        "damaged",
        "damaged",
        "missing",
        "occupied",
        "abandoned",
        "removed",
        "intact",
        "damaged",
        None,
        None,
        "坏了",
    ]
    assert unknown.tolist() == [False] * 12 + [True]


def test_normalise_status_answers_every_row_of_a_repeated_value() -> None:
    # Text is normalised once per distinct value and spread back over the rows, keeping the index.
    values = pd.Series([" 破损 ", "完好", None, "坏了", "完好"] * 3, index=range(100, 115))
    normalised, unknown = normalise_status(values)
    assert normalised.index.equals(values.index) and unknown.index.equals(values.index)
    assert normalised.tolist() == ["damaged", "intact", None, "坏了", "intact"] * 3
    assert unknown.tolist() == [False, False, False, True, False] * 3
    # Values of mixed types go row by row: hashed together, 1, 1.0 and True would be one value.
    normalised, unknown = normalise_status(pd.Series([1, 1.0, True, "1", ["x"]], dtype=object))
    assert normalised.tolist() == ["1", "1.0", "true", "1", '["x"]']
    assert unknown.all()


def test_normalise_road_class() -> None:
    normalised, unknown = normalise_road_class(
        pd.Series(["快速路", "次干路", "支路", "村道", "Arterial", "高速", None])
    )
    assert normalised.tolist() == ["arterial", "secondary", "branch", "rural", "arterial", "高速", None]
    assert unknown.tolist() == [False, False, False, False, False, True, False]


def test_names_cut_at_the_shapefile_limit_still_map() -> None:
    from gis.fieldmap import resolve_mapping

    # GDAL cuts UTF-8 names at 10 bytes: 主管部门 (12 bytes) arrives as 主管部, 养护单位 as 养护单.
    mapping = resolve_mapping(["标识码", "主管部", "养护单", "名称"])
    assert mapping["supervisor"] == "主管部" and mapping["maintainer"] == "养护单"
    assert mapping["code"] == "标识码" and mapping["name"] == "名称"
