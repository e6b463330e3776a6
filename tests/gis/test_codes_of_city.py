"""gis.codes.validate_county_of_city: a code's county must be one of the city's (issue 3, item 5)."""

from __future__ import annotations

import pytest

from gis import codes


@pytest.mark.parametrize("code", ["370102", "370102001", "370102001001", "3701020118000001"])
def test_codes_of_the_citys_counties_pass_unchanged(code: str) -> None:
    assert codes.validate_county_of_city(code, "370100", "济南市") == code


def test_a_county_of_another_city_is_named_with_the_city() -> None:
    with pytest.raises(ValueError) as county:
        codes.validate_county_of_city("110101", "370100", "济南市")
    assert (
        str(county.value)
        == "110101 is not a county of 济南市 (370100): the city's county codes start with 3701"
    )
    with pytest.raises(ValueError) as street:
        codes.validate_county_of_city("370201001", "370100")
    assert str(street.value) == (
        "370201001 starts with county 370201, which is not a county of 370100: the city's county codes start "
        "with 3701"
    )


@pytest.mark.parametrize("city", ["370000", "370102", "37010", "００００００"])
def test_the_city_must_be_a_prefecture_level_code(city: str) -> None:
    with pytest.raises(ValueError, match="city code"):
        codes.validate_county_of_city("370102", city)
