"""Tests for gis.validate: every rule, with the exact Problem a GIS staffer sees.

Counties are two boxes sharing the meridian 117°E: 市中区 370103 west of it, 历下区 370102 east of it.
Rows are numbered from 2, as in a spreadsheet whose row 1 is the header.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon, box
from shapely.affinity import translate

from gis import codes
from gis.fieldmap import map_fields, map_layer_fields
from gis.validate import (
    ComponentRules,
    Problem,
    SeenCodes,
    ValidationResult,
    iso_date,
    validate_boundaries,
    validate_components,
    validate_net_polygons,
    validate_roads,
    validate_stations,
)

LIXIA = box(117.0, 36.6, 117.1, 36.7)
SHIZHONG = box(116.9, 36.6, 117.0, 36.7)
CITY_BBOX = (116.1, 35.9, 118.1, 37.65)
CLASSES = {"0118": "point", "0305": "point", "0290": "line", "0490": "polygon", "01018": "point"}
KNOWN = "01018, 0118, 0290, 0305, 0490"
STATUSES = "完好 intact, 破损 damaged, 丢失 missing, 占用 occupied, 废弃 abandoned, 移除 removed"

LAMP_AT = Point(117.05, 36.65)
BOWTIE = Polygon([(117.05, 36.65), (117.051, 36.651), (117.051, 36.65), (117.05, 36.651)])
BOWTIE_WKT = "POLYGON ((117.05 36.65, 117.051 36.651, 117.051 36.65, 117.05 36.651, 117.05 36.65))"
BOWTIE_REASON = (
    "self-intersection at (117.050500 36.650500); not safely repairable: the repair splits it into 2 parts"
)
SQUARE = box(117.05, 36.65, 117.051, 36.651)
# The square with a 1 m spike out of its east side: GEOS calls it a self-intersection, and dropping the
# spike changes nothing the surveyor meant.
SPIKE = Polygon(
    [
        (117.05, 36.65),
        (117.051, 36.65),
        (117.051, 36.6505),
        (117.05101, 36.6505),
        (117.051, 36.6505),
        (117.051, 36.651),
        (117.05, 36.651),
    ]
)
# WKT is cut to 100 characters in the report.
SPIKE_WKT = (
    "POLYGON ((117.05 36.65, 117.051 36.65, 117.051 36.6505, 117.05101 36.6505, 117.051 36.6505, 117.0..."
)
SPIKE_REASON = "self-intersection at (117.051010 36.650500); repaired (area change 0.00 %)"
# A 1 km square whose ring loops back through a 200 m triangle inside it: the repair fills the loop,
# which changes the area by several per cent, so it is not safe.
LOOP = Polygon(
    [
        (117.05, 36.65),
        (117.06, 36.65),
        (117.06, 36.66),
        (117.055, 36.66),
        (117.054, 36.656),
        (117.056, 36.656),
        (117.055, 36.66),
        (117.05, 36.66),
    ]
)


def duplicate(what: str, value: str, rows: str) -> str:
    return f"{what} {value} is also used by {rows} of this file; every row with a duplicated code is rejected"


def code(seq: int, county: str = "370102", cls: str = "0118") -> str:
    return codes.format_component_code(county, cls, seq)


@pytest.fixture(scope="module")
def rules() -> ComponentRules:
    counties = gpd.GeoDataFrame(
        {"code": ["370102", "370103"], "name": ["历下区", "市中区"]},
        geometry=[LIXIA, SHIZHONG],
        crs="EPSG:4490",
    )
    return ComponentRules(classes=CLASSES, counties=counties, city_bbox=CITY_BBOX, metric_crs="EPSG:4548")


def chunk(rows: list[dict[str, Any]], first_row: int = 2) -> gpd.GeoDataFrame:
    """A mapped chunk from rows with keys code, class_code, status, geometry; the file names are Chinese."""
    raw = gpd.GeoDataFrame(
        {
            "标识码": [r.get("code") for r in rows],
            "小类代码": [r.get("class_code") for r in rows],
            "状态": [r.get("status") for r in rows],
            "灯杆材质": [r.get("material", "钢") for r in rows],
            "source_row": np.arange(first_row, first_row + len(rows), dtype=np.int64),
        },
        geometry=[r.get("geometry", LAMP_AT) for r in rows],
        crs="EPSG:4490",
    )
    return map_fields(raw)


def only(result: ValidationResult) -> Problem:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


# ------------------------------------------------------------------------------------ clean rows


def test_clean_rows_are_accepted_with_normalised_values(rules: ComponentRules) -> None:
    rows = [
        {"code": code(1), "status": "破损"},
        {"code": code(2, cls="0290"), "geometry": LineString([(117.05, 36.65), (117.06, 36.66)])},
        {"code": code(3, cls="0490"), "class_code": "0490", "geometry": SQUARE, "status": "Occupied"},
        {"code": code(4, cls="0290"), "geometry": MultiLineString([[(117.05, 36.65), (117.06, 36.66)]])},
        {"code": code(5, cls="0490"), "geometry": MultiPolygon([SQUARE])},
        # Inside the city box, in neither test county, and coded for a county not loaded (历城区): boundaries
        # may be loaded for part of the city only, so there is nothing to compare the prefix with.
        {"code": code(6, county="370112"), "geometry": Point(117.5, 36.5)},
    ]
    result = validate_components(chunk(rows), rules)
    assert result.problems == []
    assert result.rejected.empty
    assert result.repaired.empty
    accepted = result.accepted
    assert accepted["source_row"].tolist() == [2, 3, 4, 5, 6, 7]
    assert accepted["class_code"].tolist() == ["0118", "0290", "0490", "0290", "0490", "0118"]
    # A missing status means the surveyor found the component intact.
    assert accepted["status"].tolist() == ["damaged", "intact", "occupied", "intact", "intact", "intact"]
    assert accepted.crs == "EPSG:4490"
    assert accepted.geometry.tolist() == [r.get("geometry", LAMP_AT) for r in rows]
    assert accepted["attributes"].tolist() == [{"灯杆材质": "钢"}] * 6


# ------------------------------------------------------------------------------------------ dates


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2023-05-01", "2023-05-01"),
        ("2023/5/1", "2023-05-01"),
        ("2023.05.01", "2023-05-01"),
        ("20230501", "2023-05-01"),
        ("2023年5月1日", "2023-05-01"),
        (" 2023年05月01 ", "2023-05-01"),
        ("2023-05-01T00:00:00Z", "2023-05-01"),  # a FileGDB date, as GDAL reads it
        ("2023-05-01 00:00:00", "2023-05-01"),  # a GeoPackage DATETIME at midnight
        ("2023/5/1 14:30", "2023-05-01T14:30:00"),
        ("2023-05-01T14:30:05.250+08:00", "2023-05-01T14:30:05+08:00"),
        ("2023-05-01T01:30:00Z", "2023-05-01T01:30:00+00:00"),  # a GeoPackage DATETIME is UTC
        ("2023-05-01 10:00:00+08", "2023-05-01T10:00:00+08:00"),  # a psql export
        ("2023-05-01 10:00 UTC", "2023-05-01T10:00:00+00:00"),
        ("2023-05-01 00:00:00+08", "2023-05-01"),
        ("2019", "2019"),  # old components: a year, or a month, is all a survey knows
        ("2019年", "2019"),
        ("2019-06", "2019-06"),
        ("2023年5月", "2023-05"),
        ("2019-13", None),
        ("1234", None),
        ("2019 10:00", None),
        ("2023-13-45", None),
        ("2023-02-29", None),
        ("45047", None),  # an Excel serial number
        ("明天", None),
        ("2023-05-01T25:00", None),
    ],
)
def test_iso_date(text: str, iso: str | None) -> None:
    assert iso_date(text) == iso


def test_dates_are_written_as_iso_and_text_that_is_no_date_is_rejected(rules: ComponentRules) -> None:
    mapped = chunk([{"code": code(i)} for i in range(1, 5)])
    mapped["initial_date"] = ["2023/5/1", "45047", None, "2023年5月1日"]
    mapped["change_date"] = [None, None, "不详", "2024-01-02T00:00:00Z"]
    result = validate_components(mapped, rules)
    assert [(p.source_row, p.field, p.value) for p in result.problems] == [
        (3, "initial_date", "45047"),
        (4, "change_date", "不详"),
    ]
    assert "Excel" in result.problems[0].reason and "Excel" not in result.problems[1].reason
    assert result.accepted["initial_date"].tolist() == ["2023-05-01", "2023-05-01"]
    assert [None if pd.isna(v) else v for v in result.accepted["change_date"]] == [None, "2024-01-02"]


# -------------------------------------------------------------------------------------- geometry


def test_missing_and_empty_geometry(rules: ComponentRules) -> None:
    result = validate_components(
        chunk([{"code": code(1), "geometry": None}, {"code": code(2), "geometry": Point()}]), rules
    )
    assert result.problems == [
        Problem(2, "geometry", None, "geometry is missing", "rejected"),
        Problem(3, "geometry", "POINT EMPTY", "geometry is empty", "rejected"),
    ]
    assert result.accepted.empty


def test_nan_and_infinite_coordinates_name_the_coordinate(rules: ComponentRules) -> None:
    with np.errstate(invalid="ignore"):
        fence = LineString([(117.05, 36.65), (np.nan, 36.66), (117.06, np.nan)])
        lamp = Point(np.inf, 36.6)
    rows = [
        {"code": code(1, cls="0290"), "geometry": fence},
        {"code": code(2), "geometry": lamp},
        # Gauss-Kruger metres where degrees belong.
        {"code": code(3), "geometry": Point(39500000.0, 4057000.0)},
    ]
    assert validate_components(chunk(rows), rules).problems == [
        Problem(
            2,
            "geometry",
            "(nan 36.66)",
            "vertex 2 of 3: x is not a finite number: (nan 36.66); 2 vertices of this geometry are bad",
            "rejected",
        ),
        Problem(
            3,
            "geometry",
            "(inf 36.6)",
            "x is not a finite number: (inf 36.6)",
            "rejected",
        ),
        Problem(
            4,
            "geometry",
            "(39500000.0 4057000.0)",
            "(39500000.0 4057000.0) is not a longitude/latitude in degrees",
            "rejected",
        ),
    ]


def test_bowtie_is_rejected(rules: ComponentRules) -> None:
    result = validate_components(chunk([{"code": code(1, cls="0490"), "geometry": BOWTIE}]), rules)
    assert only(result) == Problem(
        2,
        "geometry",
        BOWTIE_WKT,
        BOWTIE_REASON,
        "rejected",
    )
    # The report gets the row as it came, bowtie and all.
    assert result.rejected.geometry.tolist() == [BOWTIE]
    assert result.rejected["attributes"].tolist() == [{"灯杆材质": "钢"}]


def test_spike_is_repaired(rules: ComponentRules) -> None:
    result = validate_components(chunk([{"code": code(1, cls="0490"), "geometry": SPIKE}]), rules)
    assert only(result) == Problem(
        2,
        "geometry",
        SPIKE_WKT,
        SPIKE_REASON,
        "repaired",
    )
    repaired = result.accepted.geometry.iloc[0]
    assert repaired.is_valid
    assert repaired.geom_type == "Polygon"
    assert repaired.equals(SQUARE)
    assert result.rejected.empty
    assert result.repaired.geometry.tolist() == [SPIKE]


def test_a_polygon_whose_repair_leaves_a_crumb_beside_it_is_that_polygon(rules: ComponentRules) -> None:
    """A ring that crosses itself by 2e-7 degrees at a corner (as a polygon valid in its Gauss-Krüger
    zone can, once turned into lon/lat) repairs into the square and a crumb of 0.0002 m²: it was refused
    as "the repair splits it into 2 parts". The crumb is dropped, and said so; a real second lobe (the
    bow-tie) is still refused."""
    e = 2e-7
    twisted = Polygon(
        [(117.05, 36.65), (117.051, 36.65), (117.051, 36.651), (117.05, 36.651), (117.05 + e, 36.65 - e)]
    )
    result = validate_components(chunk([{"code": code(1, cls="0490"), "geometry": twisted}]), rules)
    problem = only(result)
    assert problem.action == "repaired", problem
    assert problem.reason.startswith(
        "self-intersection at (117.050000 36.650000); repaired (area change 0.00 %)"
    )
    assert problem.reason.endswith("a crumb of 0.0002 m² it left beside the polygon was dropped")
    kept = result.accepted.geometry.iloc[0]
    assert kept.geom_type == "Polygon" and kept.is_valid
    # The outline as drawn, less the crumb (2e-14 square degrees, the 0.0002 m²)
    assert abs(kept.area - twisted.area) < 1e-13 and kept.within(SQUARE.buffer(1e-9))
    bowtie = only(validate_components(chunk([{"code": code(1, cls="0490"), "geometry": BOWTIE}]), rules))
    assert bowtie.action == "rejected"


def test_repair_that_changes_the_area_is_rejected(rules: ComponentRules) -> None:
    problem = only(validate_components(chunk([{"code": code(1, cls="0490"), "geometry": LOOP}]), rules))
    assert problem.action == "rejected"
    assert problem.field == "geometry"
    assert problem.reason.startswith(
        "ring self-intersection at (117.055000 36.660000); not safely repairable: "
        "the repair changes the area by "
    )
    change = float(problem.reason.rsplit(" by ", 1)[1].removesuffix(" %"))
    assert 0.5 < change < 10


def test_a_class_code_that_lost_its_leading_zero_is_said_so(rules: ComponentRules) -> None:
    result = validate_components(
        chunk(
            [
                {"code": code(1), "class_code": "118"},
                {"code": "370102" + "118" + "000002", "class_code": "118"},
            ]
        ),
        rules,
    )
    reasons = [p.reason for p in result.problems]
    assert reasons[0] == (
        f"code {code(1)} carries class 0118 but class_code is 118 (0118, with the leading zero a spreadsheet "
        "drops? store the column as text)"
    )
    assert any(
        r.startswith("class 118 is not a known component class (0118, with the leading zero") for r in reasons
    )


def test_a_bowtie_whose_lobes_cancel_is_said_so(rules: ComponentRules) -> None:
    # In a MultiPolygon the repair's two parts are no split; its area, near zero as drawn, is what changes.
    belt = MultiPolygon([BOWTIE])
    problem = only(validate_components(chunk([{"code": code(1, cls="0490"), "geometry": belt}]), rules))
    assert problem.action == "rejected"
    assert "its outline crosses itself so that its parts cancel out" in problem.reason
    assert problem.reason.endswith("m² repaired): redraw it") and " %" not in problem.reason


def test_wrong_geometry_kind_for_the_class(rules: ComponentRules) -> None:
    rows = [
        {"code": code(1), "geometry": SQUARE},
        {"code": code(2, cls="0490"), "geometry": LAMP_AT},
        {"code": code(3, cls="0490"), "geometry": LineString([(117.05, 36.65), (117.06, 36.66)])},
        {"code": code(4), "geometry": MultiPoint([(117.05, 36.65), (117.06, 36.66)])},
    ]
    assert validate_components(chunk(rows), rules).problems == [
        Problem(
            2,
            "geometry",
            "POLYGON ((117.051 36.65, 117.051 36.651, 117.05 36.651, 117.05 36.65, 117.051 36.65))",
            "class 0118 needs a point, but the geometry is a Polygon",
            "rejected",
        ),
        Problem(
            3,
            "geometry",
            "POINT (117.05 36.65)",
            "class 0490 needs a polygon, but the geometry is a Point",
            "rejected",
        ),
        Problem(
            4,
            "geometry",
            "LINESTRING (117.05 36.65, 117.06 36.66)",
            "class 0490 needs a polygon, but the geometry is a LineString",
            "rejected",
        ),
        Problem(
            5,
            "geometry",
            "MULTIPOINT ((117.05 36.65), (117.06 36.66))",
            "class 0118 needs a single point, but the geometry is a MultiPoint of 2 points",
            "rejected",
        ),
    ]


def test_multipoint_of_one_point_becomes_a_point(rules: ComponentRules) -> None:
    result = validate_components(chunk([{"code": code(1), "geometry": MultiPoint([(117.05, 36.65)])}]), rules)
    assert only(result) == Problem(
        2,
        "geometry",
        "MULTIPOINT ((117.05 36.65))",
        "a MultiPoint of one point; stored as a Point",
        "repaired",
    )
    assert result.accepted.geometry.tolist() == [LAMP_AT]


def test_outside_the_city(rules: ComponentRules) -> None:
    rows = [{"code": code(1), "geometry": Point(116.4074, 39.9042)}]
    assert only(validate_components(chunk(rows), rules)) == Problem(
        2,
        "geometry",
        "POINT (116.4074 39.9042)",
        "the component lies at (116.407400 39.904200), outside the city: in none of its counties and outside "
        "the city box (116.1, 35.9, 118.1, 37.65)",
        "rejected",
    )


# ------------------------------------------------------------------------------------------ codes


def test_code_missing(rules: ComponentRules) -> None:
    assert only(validate_components(chunk([{"code": None, "class_code": "0118"}]), rules)) == Problem(
        2, "code", None, "code is missing", "rejected"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("37010201180001", "code 37010201180001 has 14 digits; it must have 16 or 17"),
        ("37010201180001２３", "code 37010201180001２３ must contain only the digits 0-9 (16 or 17 of them)"),
        ("370102O118000123", "code 370102O118000123 must contain only the digits 0-9 (16 or 17 of them)"),
        (
            "3.70102E+15",  # the code column of a CSV saved by Excel once it was a number
            "code 3.70102E+15 is a number as Excel writes it once a code column is not text: its digits are "
            "lost (16 or 17 needed). Take the codes from the original file, or in Excel set the column to "
            "Text before pasting them, and save again",
        ),
        ("3701020118000000", "component sequence must not be zero, got '3701020118000000'"),
        ("3701000118000001", "county code must name a county-level unit, got '370100'"),
        ("3701020018000001", "component major class must not be 00, got '3701020018000001'"),
    ],
)
def test_code_format(rules: ComponentRules, value: str, reason: str) -> None:
    assert only(validate_components(chunk([{"code": value}]), rules)) == Problem(
        2, "code", value, reason, "rejected"
    )


def test_code_lengths_follow_the_rules(rules: ComponentRules) -> None:
    seventeen = "37010201018000001"  # minor class 018 of major 01: class 01018
    result = validate_components(chunk([{"code": seventeen}]), rules)
    assert result.problems == []
    assert result.accepted["class_code"].tolist() == ["01018"]
    only16 = ComponentRules(
        classes=CLASSES,
        counties=rules.counties,
        city_bbox=CITY_BBOX,
        metric_crs="EPSG:4548",
        code_digits=(16,),
    )
    assert only(validate_components(chunk([{"code": seventeen}]), only16)) == Problem(
        2, "code", seventeen, "code 37010201018000001 has 17 digits; it must have 16", "rejected"
    )


def test_code_screen_agrees_with_gis_codes(rules: ComponentRules) -> None:
    candidates = [
        "3701020118000123",
        "37010201180000123",
        "3701029918000001",
        "3700020118000001",
        "3701000118000001",
        "3701020018000001",
        "3701020118000000",
        "37010200180000001",
        "37010201180000000",
        "370102011800012",
        "370102011800012345",
        "37010201180001a3",
        "３７01020118000123",
    ]
    # No geometry: then the only code problems are the format ones.
    result = validate_components(chunk([{"code": c, "geometry": None} for c in candidates]), rules)
    rejected = {p.value for p in result.problems if p.field == "code"}

    def valid(value: str) -> bool:
        try:
            codes.validate_component_code(value)
        except ValueError:
            return False
        return True

    assert rejected == {c for c in candidates if not valid(c)}


def test_duplicate_codes_in_a_chunk_reject_every_occurrence(rules: ComponentRules) -> None:
    lamp = code(7)
    rows = [{"code": lamp}, {"code": code(8)}, {"code": lamp}, {"code": lamp}]
    result = validate_components(chunk(rows), rules)
    reason = (
        "code 3701020118000007 is also used by {} of this file; every row with a duplicated code is rejected"
    )
    assert result.problems == [
        Problem(2, "code", lamp, reason.format("rows 4, 5"), "rejected"),
        Problem(4, "code", lamp, reason.format("rows 2, 5"), "rejected"),
        Problem(5, "code", lamp, reason.format("rows 2, 4"), "rejected"),
    ]
    assert result.accepted["source_row"].tolist() == [3]
    assert result.rejected["source_row"].tolist() == [2, 4, 5]


def test_duplicate_codes_across_chunks(rules: ComponentRules) -> None:
    seen = SeenCodes()
    first = validate_components(chunk([{"code": code(1)}, {"code": code(2)}]), rules, seen_codes=seen)
    assert first.problems == []
    assert seen.first_row == {code(1): 2, code(2): 3}
    second = validate_components(
        chunk([{"code": code(2)}, {"code": code(3)}], first_row=4), rules, seen_codes=seen
    )
    assert only(second) == Problem(4, "code", code(2), duplicate("code", code(2), "row 3"), "rejected")
    assert second.accepted["code"].tolist() == [code(3)]
    # Row 3 was accepted with the first chunk: it is handed back to be taken out, as rejected as row 4.
    assert seen.taken_back == [Problem(3, "code", code(2), duplicate("code", code(2), "row 4"), "rejected")]
    third = validate_components(chunk([{"code": code(2)}], first_row=6), rules, seen_codes=seen)
    assert only(third).source_row == 6 and len(seen.taken_back) == 1  # row 3 is taken back once
    assert set(seen.first_row) == {code(1), code(2), code(3)}


def test_wrong_county_prefix(rules: ComponentRules) -> None:
    wrong = code(1, county="370103")
    assert only(validate_components(chunk([{"code": wrong}]), rules)) == Problem(
        2, "code", wrong, "code county 370103 but the component lies in 370102 历下区", "rejected"
    )


def test_a_code_of_a_loaded_county_outside_every_loaded_county(rules: ComponentRules) -> None:
    # 历下区 is loaded and does not hold these points, which lie in no loaded county but in the city box.
    rows = [
        {"code": code(1), "geometry": Point(117.5, 36.5)},  # some 40 km away
        {"code": code(2), "geometry": Point(117.1002, 36.65)},  # 18 m east of its edge: taken as in it
        {"code": code(3), "geometry": Point(117.101, 36.65)},  # 89 m east
    ]
    problems = validate_components(chunk(rows), rules).problems
    assert [(p.source_row, p.field, p.value) for p in problems] == [
        (2, "code", code(1)),
        (4, "code", code(3)),
    ]
    assert problems[1].reason == (
        "code county 370102 历下区 but the component lies at (117.101000 36.650000), 89 m outside it and in "
        "no other loaded county"
    )
    assert problems[0].reason.startswith("code county 370102 历下区 but the component lies at (117.500000")


def test_wrong_county_prefix_without_county_names(rules: ComponentRules) -> None:
    plain = ComponentRules(
        classes=CLASSES,
        counties=rules.counties.drop(columns="name"),
        city_bbox=CITY_BBOX,
        metric_crs="EPSG:4548",
    )
    assert only(validate_components(chunk([{"code": code(1, county="370103")}]), plain)).reason == (
        "code county 370103 but the component lies in 370102"
    )


def test_a_point_on_a_county_boundary_belongs_to_both(rules: ComponentRules) -> None:
    on_boundary = Point(117.0, 36.65)
    rows = [
        {"code": code(1, county="370102"), "geometry": on_boundary},
        {"code": code(1, county="370103"), "geometry": on_boundary},
    ]
    assert validate_components(chunk(rows), rules).problems == []


# ------------------------------------------------------------------------------------ class, status


def test_class_digits_disagree_with_class_code(rules: ComponentRules) -> None:
    lamp = code(123)
    assert only(validate_components(chunk([{"code": lamp, "class_code": "0305"}]), rules)) == Problem(
        2, "class_code", "0305", "code 3701020118000123 carries class 0118 but class_code is 0305", "rejected"
    )


def test_unknown_class(rules: ComponentRules) -> None:
    assert only(validate_components(chunk([{"code": code(1, cls="0999")}]), rules)) == Problem(
        2, "class_code", "0999", f"class 0999 is not a known component class (known: {KNOWN})", "rejected"
    )


def test_class_code_from_the_field_when_the_code_is_bad(rules: ComponentRules) -> None:
    result = validate_components(chunk([{"code": "bad", "class_code": "0999"}]), rules)
    assert [(p.field, p.value) for p in result.problems] == [("class_code", "0999"), ("code", "bad")]


def test_unknown_status(rules: ComponentRules) -> None:
    assert only(validate_components(chunk([{"code": code(1), "status": "坏了"}]), rules)) == Problem(
        2, "status", "坏了", f"status 坏了 is not known; use one of: {STATUSES}", "rejected"
    )


def test_several_problems_of_a_row_are_sorted_by_field(rules: ComponentRules) -> None:
    rows: list[dict[str, Any]] = [{"code": code(1)}, {"code": None, "status": "坏了", "geometry": None}]
    result = validate_components(chunk(rows), rules)
    assert [(p.source_row, p.field) for p in result.problems] == [(3, "code"), (3, "geometry"), (3, "status")]
    assert result.accepted["source_row"].tolist() == [2]
    assert result.rejected["source_row"].tolist() == [3]


def test_frame_in_another_crs_is_refused(rules: ComponentRules) -> None:
    mapped = chunk([{"code": code(1)}]).set_crs("EPSG:4326", allow_override=True)
    with pytest.raises(ValueError, match="must be in EPSG:4490"):
        validate_components(mapped, rules)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"classes": {"0118": "area"}}, "kinds must be point, line or polygon"),
        ({"code_digits": (15,)}, "code_digits must be 16, 17 or both"),
        ({"metric_crs": "EPSG:4490"}, "geographic"),
        ({"city_bbox": (118.1, 35.9, 116.1, 37.65)}, "city_bbox"),
    ],
)
def test_bad_rules(rules: ComponentRules, change: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "classes": CLASSES,
        "counties": rules.counties,
        "city_bbox": CITY_BBOX,
        "metric_crs": "EPSG:4548",
        **change,
    }
    with pytest.raises(ValueError, match=message):
        ComponentRules(**arguments)


# ---------------------------------------------------------------------------------- other layers


def layer(name: str, columns: dict[str, list[Any]], geometry: list[Any]) -> gpd.GeoDataFrame:
    n = len(geometry)
    raw = gpd.GeoDataFrame(
        {**columns, "source_row": np.arange(2, n + 2, dtype=np.int64)}, geometry=geometry, crs="EPSG:4490"
    )
    return map_layer_fields(raw, name)


def test_validate_district_boundaries() -> None:
    mapped = layer(
        "boundaries",
        {
            "行政区划代码": ["370102", "370100", "370103", "370104", "37010", "370105", "370105"],
            "名称": ["历下区", "济南市", None, "槐荫区", "某区", "天桥区", "天桥区"],
        },
        [LIXIA, LIXIA, SHIZHONG, LAMP_AT, LIXIA, LIXIA, LIXIA],
    )
    result = validate_boundaries(mapped, "district")
    assert result.problems == [
        Problem(3, "code", "370100", "county code must name a county-level unit, got '370100'", "rejected"),
        Problem(4, "name", None, "name is missing", "rejected"),
        Problem(
            5,
            "geometry",
            "POINT (117.05 36.65)",
            "a district boundary needs a polygon, but the geometry is a Point",
            "rejected",
        ),
        Problem(6, "code", "37010", "district code 37010 has 5 digits; it must have 6", "rejected"),
        Problem(7, "code", "370105", duplicate("district code", "370105", "row 8"), "rejected"),
        Problem(8, "code", "370105", duplicate("district code", "370105", "row 7"), "rejected"),
    ]
    assert result.accepted["code"].tolist() == ["370102"]
    assert result.accepted["name"].tolist() == ["历下区"]


def test_validate_street_and_community_boundaries() -> None:
    streets = layer(
        "boundaries", {"代码": ["370102001", "370102000"], "名称": ["解放路街道", "无"]}, [LIXIA, LIXIA]
    )
    assert only(validate_boundaries(streets, "street")) == Problem(
        3, "code", "370102000", "street sequence must not be 000, got '370102000'", "rejected"
    )
    communities = layer(
        "boundaries",
        {
            "区划代码": ["370102001001", "370102001002", "370102001000"],
            "名称": ["甲", "乙", "丙"],
            "户数": [3200, 12.5, 10],
        },
        [SQUARE, SPIKE, BOWTIE],
    )
    result = validate_boundaries(communities, "community")
    assert result.problems == [
        Problem(
            3,
            "geometry",
            SPIKE_WKT,
            SPIKE_REASON,
            "repaired",
        ),
        Problem(
            3,
            "households",
            "12.5",
            "households 12.5 is not a whole number of households (0 or more)",
            "rejected",
        ),
        Problem(
            4,
            "code",
            "370102001000",
            "community sequence must not be 000, got '370102001000'",
            "rejected",
        ),
        Problem(
            4,
            "geometry",
            BOWTIE_WKT,
            BOWTIE_REASON,
            "rejected",
        ),
    ]
    assert result.accepted["households"].tolist() == [3200]
    assert str(result.accepted["households"].dtype) == "Int64"


def test_validate_boundaries_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown boundary level 'city'"):
        validate_boundaries(layer("boundaries", {"代码": ["370102"]}, [LIXIA]), "city")  # type: ignore[arg-type]


def test_validate_stations() -> None:
    mapped = layer(
        "stations",
        {
            "编码": ["ZD001", "ZD002", "ZD003", "ZD004", "ZD005", "ZD001"],
            "工作站名称": ["泉城路站", "大明湖站", None, "趵突泉站", "芙蓉街站", "重复站"],
            "社区代码": [
                "370102001001",
                "370102001002",
                "370102001003",
                "37010200100",
                "370102001005",
                "370102001006",
            ],
            "联系电话": [
                "0531-86000000",
                "０５３１－８６０００００１",
                "86000000",
                "86000000分机1",
                None,
                None,
            ],
        },
        [LAMP_AT, LAMP_AT, LAMP_AT, LAMP_AT, SQUARE, LAMP_AT],
    )
    result = validate_stations(mapped)
    assert result.problems == [
        Problem(
            2,
            "code",
            "ZD001",
            duplicate("station code", "ZD001", "row 7"),
            "rejected",
        ),
        Problem(4, "name", None, "name is missing", "rejected"),
        Problem(
            5,
            "community_code",
            "37010200100",
            "community code 37010200100 has 11 digits; it must have 12",
            "rejected",
        ),
        Problem(
            5,
            "phone",
            "86000000分机1",
            "phone may hold only digits, spaces, brackets, + and -, 5 to 20 characters, then an extension "
            "after 转 (0531-86001234转8001)",
            "rejected",
        ),
        Problem(
            6,
            "geometry",
            "POLYGON ((117.051 36.65, 117.051 36.651, 117.05 36.651, 117.05 36.65, 117.051 36.65))",
            "a station needs a point, but the geometry is a Polygon",
            "rejected",
        ),
        Problem(
            7,
            "code",
            "ZD001",
            duplicate("station code", "ZD001", "row 2"),
            "rejected",
        ),
    ]
    # Full-width digits and dash folded to ASCII.
    assert result.accepted["phone"].tolist() == ["0531-86000001"]


def test_station_phones_as_the_bureau_writes_them() -> None:
    """An area code in brackets and a switchboard extension after 转 are phones; 分机, or 转 with nothing
    after it, are not. Full-width brackets fold to ASCII like the digits."""
    phones = ["（0531）86000000", "0531-86000000转8001", "0531-86000000转", "86000000分机1"]
    mapped = layer(
        "stations",
        {
            "编码": [f"ZD00{i}" for i in range(1, 5)],
            "工作站名称": [f"{i}号站" for i in range(1, 5)],
            "社区代码": ["370102001001"] * 4,
            "联系电话": phones,
        },
        [LAMP_AT] * 4,
    )
    result = validate_stations(mapped)
    assert result.accepted["phone"].tolist() == ["(0531)86000000", "0531-86000000转8001"]
    assert [(p.source_row, p.field) for p in result.problems] == [(4, "phone"), (5, "phone")]


def test_stations_without_codes_are_their_communitys_first_and_one_community_has_one() -> None:
    mapped = layer(
        "stations",
        {
            "工作站名称": ["甲站", "乙站", "丙站"],
            "社区代码": ["370102001001", "370102001002", "370102001001"],
        },
        [LAMP_AT, LAMP_AT, LAMP_AT],
    )
    result = validate_stations(mapped)
    assert result.accepted["code"].tolist() == ["37010200100201"]
    assert result.problems == [
        Problem(
            2, "code", "37010200100101", duplicate("station code", "37010200100101", "row 4"), "rejected"
        ),
        Problem(
            4, "code", "37010200100101", duplicate("station code", "37010200100101", "row 2"), "rejected"
        ),
    ]


def test_a_station_code_in_a_column_not_read_as_the_code_is_not_taken_for_the_first_station() -> None:
    """站点编号 is no name the import knows: without it the second station would overwrite the first."""
    mapped = layer(
        "stations",
        {
            "名称": ["甲社区第二工作站", "乙社区工作站"],
            "社区代码": ["370102001001", "370102001002"],
            "站点编号": ["37010200100102", "37010200100201"],
        },
        [LAMP_AT, LAMP_AT],
    )
    result = validate_stations(mapped)
    assert result.accepted["code"].tolist() == ["37010200100201"]  # the first's own code: no harm
    assert result.problems == [
        Problem(
            2,
            "code",
            "37010200100102",
            "column 站点编号 holds 37010200100102, a station code of community 370102001001, but no column is"
            " read as the station code, so this row would be taken for the community's first station"
            " 37010200100101: give --map code=站点编号",
            "rejected",
        )
    ]
    # Under a name it knows (站点编码), the column is the code.
    known = layer(
        "stations",
        {"名称": ["甲社区第二工作站"], "社区代码": ["370102001001"], "站点编码": ["37010200100102"]},
        [LAMP_AT],
    )
    assert validate_stations(known).accepted["code"].tolist() == ["37010200100102"]


def test_validate_net_polygons() -> None:
    mapped = layer(
        "net",
        {
            "网格编码": ["ZZ-01", None, "ZZ-03", "ZZ-03", "ZZ-05"],
            "网格名称": ["一网格", "二网格", "三网格", "三网格", "五网格"],
        },
        [SQUARE, SQUARE, SQUARE, SQUARE, LineString([(117.05, 36.65), (117.06, 36.66)])],
    )
    seen = SeenCodes()
    seen.first_row["ZZ-05"] = 1
    result = validate_net_polygons(mapped, seen_codes=seen)
    assert result.problems == [
        Problem(3, "code", None, "net polygon code is missing", "rejected"),
        Problem(4, "code", "ZZ-03", duplicate("net polygon code", "ZZ-03", "row 5"), "rejected"),
        Problem(5, "code", "ZZ-03", duplicate("net polygon code", "ZZ-03", "row 4"), "rejected"),
        Problem(6, "code", "ZZ-05", duplicate("net polygon code", "ZZ-05", "row 1"), "rejected"),
        Problem(
            6,
            "geometry",
            "LINESTRING (117.05 36.65, 117.06 36.66)",
            "a net cell needs a polygon, but the geometry is a LineString",
            "rejected",
        ),
    ]
    assert result.accepted["code"].tolist() == ["ZZ-01"]


def test_validate_roads() -> None:
    line = LineString([(117.05, 36.65), (117.06, 36.66)])
    mapped = layer(
        "roads",
        {
            "道路名称": ["泉城路", "无名路", "经十路", "小路", "断路"],
            "道路等级": ["主干路", None, "高速", "支路", "支路"],
        },
        [line, MultiLineString([line.coords]), line, LAMP_AT, LineString([(117.05, 36.65), (117.05, 36.65)])],
    )
    result = validate_roads(mapped)
    assert result.problems == [
        Problem(
            4,
            "road_class",
            "高速",
            "road class 高速 is not known; use one of: "
            "主干路 arterial, 次干路 secondary, 支路 branch, 乡村道路 rural",
            "rejected",
        ),
        Problem(
            5,
            "geometry",
            "POINT (117.05 36.65)",
            "a road needs a line, but the geometry is a Point",
            "rejected",
        ),
        Problem(
            6,
            "geometry",
            "LINESTRING (117.05 36.65, 117.05 36.65)",
            "too few points in geometry component at (117.050000 36.650000); not safely repairable: "
            "the repair leaves nothing",
            "rejected",
        ),
    ]
    classes = result.accepted["road_class"]
    assert classes[0] == "arterial" and classes.isna()[1]  # the store decides: the stored class, or branch
    assert result.accepted["name"].tolist() == ["泉城路", "无名路"]


def test_empty_chunk(rules: ComponentRules) -> None:
    result = validate_components(chunk([{"code": code(1)}]).iloc[:0], rules)
    assert result.problems == []
    assert result.accepted.empty
    assert result.rejected.empty
    assert list(result.accepted.columns) == list(chunk([{"code": code(1)}]).columns)


def test_repaired_geometry_is_kept_in_place_of_the_original(rules: ComponentRules) -> None:
    rows = [
        {"code": code(1, cls="0490"), "geometry": SPIKE},
        {"code": code(2, cls="0490"), "geometry": SQUARE},
    ]
    accepted = validate_components(chunk(rows), rules).accepted
    assert shapely.equals(accepted.geometry.to_numpy(), np.array([SQUARE, SQUARE], dtype=object)).all()


def test_other_layers_outside_the_city_box_are_rejected_with_their_position() -> None:
    """A community moved 3° east, a station or road of another city: not stored without a word."""
    jinan = (116.1, 35.9, 118.1, 37.65)
    far = translate(SQUARE, xoff=3.0)
    boundaries = validate_boundaries(
        layer(
            "boundaries",
            {"代码": ["370102001001", "370102001002"], "名称": ["甲社区", "乙社区"]},
            [SQUARE, far],
        ),
        "community",
        city_bbox=jinan,
    )
    assert boundaries.accepted["code"].tolist() == ["370102001001"]
    [problem] = boundaries.problems
    assert (problem.source_row, problem.field, problem.action) == (3, "geometry", "rejected")
    assert problem.reason.startswith("the community lies at (120.05")
    assert problem.reason.endswith("outside the city box (116.1, 35.9, 118.1, 37.65)")

    stations = validate_stations(
        layer(
            "stations",
            {"工作站名称": ["甲站", "乙站"], "社区代码": ["370102001001", "370102001002"]},
            [LAMP_AT, Point(116.0, 36.0)],
        ),
        city_bbox=jinan,
    )
    assert [p.reason.split(",")[0] for p in stations.problems] == [
        "the station lies at (116.000000 36.000000)"
    ]
    road = LineString([(117.05, 36.65), (117.06, 36.65)])
    roads = validate_roads(
        layer("roads", {"道路名称": ["经十路", "远路"]}, [road, translate(road, xoff=3.0)]), city_bbox=jinan
    )
    assert [(p.source_row, p.field) for p in roads.problems] == [(3, "geometry")]
    cells = validate_net_polygons(layer("net", {"编码": ["DJ01", "DJ02"]}, [SQUARE, far]), city_bbox=jinan)
    assert cells.accepted["code"].tolist() == ["DJ01"] and "the net cell lies at" in cells.problems[0].reason
    # Without a box (a caller that checks elsewhere) nothing is rejected for where it lies.
    assert not validate_net_polygons(layer("net", {"编码": ["DJ03"]}, [far])).problems
