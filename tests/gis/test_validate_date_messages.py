"""What GIS staff are told of a date that is refused (issue 3's exploratory test)."""

from __future__ import annotations

import geopandas as gpd
import pytest

from gis.validate import ComponentRules, validate_components
from tests.gis.test_validate import CITY_BBOX, CLASSES, LIXIA, chunk, code


@pytest.fixture(scope="module")
def rules() -> ComponentRules:
    """The rules of tests/gis/test_validate.py; the components here lie in 历下区."""
    counties = gpd.GeoDataFrame({"code": ["370102"], "name": ["历下区"]}, geometry=[LIXIA], crs="EPSG:4490")
    return ComponentRules(classes=CLASSES, counties=counties, city_bbox=CITY_BBOX, metric_crs="EPSG:4548")


def _reasons(rules: ComponentRules, dates: list[str]) -> list[str]:
    mapped = chunk([{"code": code(i)} for i in range(1, len(dates) + 1)])
    mapped["initial_date"] = dates
    result = validate_components(mapped, rules)
    assert [p.value for p in result.problems] == dates
    return [p.reason for p in result.problems]


@pytest.mark.parametrize("empty", ["1899-12-30", "1899-12-30T00:00:00", "1899/12/31"])
def test_excel_s_empty_date_is_said_to_be_one(rules: ComponentRules, empty: str) -> None:
    # ADO and ODBC read an empty date cell of an Excel or Access table as day 0 of their serials.
    assert _reasons(rules, [empty]) == [
        f"initial_date {empty} is outside the years 1900–2100 a survey date may have: it is the date Excel "
        "and Access give an empty date cell; leave the cell blank if the date is not known"
    ]


def test_a_date_in_another_century_is_said_to_be_one(rules: ComponentRules) -> None:
    assert _reasons(rules, ["1850-06-01", "2123年5月1日", "21230501"]) == [
        "initial_date 1850-06-01: the year 1850 is outside the years 1900–2100 a survey date may have",
        "initial_date 2123年5月1日: the year 2123 is outside the years 1900–2100 a survey date may have",
        "initial_date 21230501: the year 2123 is outside the years 1900–2100 a survey date may have",
    ]


def test_a_day_the_month_does_not_have_is_said_so(rules: ComponentRules) -> None:
    assert _reasons(rules, ["2023-02-29", "2023/4/31"]) == [
        "initial_date 2023-02-29 is no day of the calendar: 2023-02 has 28 days",
        "initial_date 2023/4/31 is no day of the calendar: 2023-04 has 30 days",
    ]


def test_what_is_no_date_at_all_is_told_how_to_write_one(rules: ComponentRules) -> None:
    # A bare number out of the years, or a month 13, is no date written wrong: the forms that are read.
    forms = "write it as YYYY-MM-DD (2023/5/1, 20230501 and 2023年5月1日 are read too)"
    assert _reasons(rules, ["1234", "2023-13-01", "不详", "45047"]) == [
        f"initial_date 1234 is not a date: {forms}",
        f"initial_date 2023-13-01 is not a date: {forms}",
        f"initial_date 不详 is not a date: {forms}",
        f"initial_date 45047 is not a date: {forms}; a five-digit number is how Excel stores a date: format "
        "the column as a date before saving",
    ]
