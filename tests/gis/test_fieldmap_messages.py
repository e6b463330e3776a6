"""The messages gis.fieldmap gives GIS staff about profiles and field names (issue 3's exploratory test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gis.fieldmap import LAYER_ALIASES, LAYERS, MappingError, load_mapping, resolve_mapping

# ---------------------------------------------------------------------------- a number for a field name


def test_a_json_profile_giving_a_number_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"name": "名称", "code": 2023}', encoding="utf-8")
    with pytest.raises(MappingError) as refused:
        load_mapping(path)
    assert str(refused.value) == (
        f"mapping profile {path}: 'code' must name a file field as text, got the number 2023; "
        'write {"code": "2023"} if the field is called 2023'
    )


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ("2023", "2023"),
        ("0117", "0117"),  # YAML 1.1 would read the octal number 79
        ("NO", "NO"),  # and false
        ("1.50", "1.50"),  # and 1.5
        ("2023-05-01", "2023-05-01"),  # and a date, refused as no name
        ("'2023'", "2023"),
    ],
)
def test_a_yaml_profile_gives_the_field_name_as_written(tmp_path: Path, written: str, field: str) -> None:
    # In YAML an unquoted name is the usual way to write text, so it is the name, exactly as written.
    path = tmp_path / "p.yml"
    path.write_text(f"code: {written}\n", encoding="utf-8")
    assert load_mapping(path) == {"code": field}


@pytest.mark.parametrize("written", ["", " null", " ~"])
def test_a_yaml_profile_with_an_empty_value_is_refused(tmp_path: Path, written: str) -> None:
    path = tmp_path / "p.yml"
    path.write_text(f"code:{written}\n", encoding="utf-8")
    with pytest.raises(MappingError) as refused:
        load_mapping(path)
    assert str(refused.value) == f"mapping profile {path}: 'code' must name a file field, got None"


# ------------------------------------------------------------------------------ a profile's encoding


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "utf-16", "utf-8-sig"])
def test_a_profile_saved_by_notepad_is_read(tmp_path: Path, encoding: str) -> None:
    # "ANSI" on a Chinese Windows is GBK; "Unicode" is UTF-16 with its BOM.
    path = tmp_path / "gbk.yml"
    path.write_text("# 承包商甲的字段\ncode: 设施编号\nname: 设施名称\n", encoding=encoding)
    assert load_mapping(path) == {"code": "设施编号", "name": "设施名称"}


def test_a_profile_in_no_known_encoding_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b'{"code": "\xff\xfe\xff"}')
    with pytest.raises(MappingError) as refused:
        load_mapping(path)
    assert str(refused.value) == (
        f"mapping profile {path} is neither UTF-8 nor GBK text: open it in a text editor and save it as UTF-8"
    )


def test_a_missing_profile_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "none.yml"
    with pytest.raises(MappingError) as refused:
        load_mapping(path)
    assert str(refused.value) == f"mapping profile {path} cannot be read: No such file or directory"


# ------------------------------------------------------------------------------- boundaries' names


@pytest.mark.parametrize(
    ("columns", "code", "name"),
    [
        # A community file carries its street's and district's codes and names too: its own are the finest.
        (["区县代码", "街道代码", "街道名称", "社区代码", "社区名称"], "社区代码", "社区名称"),
        (["区县代码", "区县名称", "街道名称", "街道代码"], "街道代码", "街道名称"),
        (["区县名称", "区县代码"], "区县代码", "区县名称"),
        # A generic name is the file's own: the level's names beside it are its parents'.
        (["代码", "名称", "街道代码", "街道名称"], "代码", "名称"),
    ],
)
def test_boundaries_are_known_by_their_level_s_names(columns: list[str], code: str, name: str) -> None:
    assert resolve_mapping(columns, layer="boundaries") == {"code": code, "name": name}


@pytest.mark.parametrize("layer", LAYERS)
def test_no_built_in_name_stands_for_two_fields_of_a_layer(layer: str) -> None:
    fields_of: dict[str, set[str]] = {}
    for field, names in LAYER_ALIASES[layer].items():
        for name in names:
            fields_of.setdefault(name.strip().casefold(), set()).add(field)
    assert {name: fields for name, fields in fields_of.items() if len(fields) > 1} == {}
