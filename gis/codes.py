"""Code formats for places, grids, components and cases (DOMAIN.md §2 and §3).

All codes are text made of ASCII digits and are kept as ``str`` everywhere: they carry leading zeros
(``0118`` is a minor class) and are identifiers, not numbers.

* Admin codes (GB/T 2260 and the national statistics codes): county 6 digits, street (街道/镇/乡)
  9 = county + 3, community (社区/村) 12 = street + 3. Street sequences 001–099 are 街道, 100–199 镇,
  200–399 乡; community sequences 001–199 are residents' committees (社区), 200–399 villagers'
  committees (村).
* Unit grid (单元网格): community code + grid sequence, 2 digits in the older practice (14 digits in
  all) or 3 in the newer one (15).
* Responsibility grid: community code + ``R`` + 2-digit number (a gridsvc convention).
* Component (部件, CJ/T 214 practice): county 6 + major class 2 + minor class 2 or 3 + sequence 6,
  16 or 17 digits in all.
* Case request code: ``JN`` + local report date ``yyyymmdd`` + 7-digit sequence within that day.

Every ``validate_*`` function returns the code unchanged or raises ``ValueError`` naming it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ComponentCode",
    "UnitGridCode",
    "community_kind",
    "format_community_code",
    "format_component_code",
    "format_request_code",
    "format_responsibility_grid_code",
    "format_street_code",
    "format_unit_grid_code",
    "parse_component_code",
    "parse_unit_grid_code",
    "street_kind",
    "validate_community_code",
    "validate_component_code",
    "validate_county_code",
    "validate_county_of_city",
    "validate_request_code",
    "validate_responsibility_grid_code",
    "validate_street_code",
    "validate_unit_grid_code",
]

StreetKind = Literal["subdistrict", "town", "township", "other"]
CommunityKind = Literal["community", "village", "other"]


def _digits(code: object, lengths: tuple[int, ...], what: str) -> str:
    # isdigit() alone accepts non-ASCII digits such as "²" or full-width "１", which no code table uses.
    if not isinstance(code, str) or len(code) not in lengths or not (code.isascii() and code.isdigit()):
        want = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{what} must be a string of {want} ASCII digits, got {code!r}")
    return code


def _sequence(seq: int, width: int, what: str, low: int = 1) -> str:
    if isinstance(seq, bool) or not isinstance(seq, int) or not low <= seq < 10**width:
        raise ValueError(f"{what} must be an int in {low}..{10**width - 1}, got {seq!r}")
    return f"{seq:0{width}d}"


def validate_county_code(code: str) -> str:
    """Check a 6-digit county-level admin code such as ``"370102"``.

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If it is not 6 digits, or its prefecture or county part is ``00`` (a province or city code).
    """
    _digits(code, (6,), "county code")
    if code[2:4] == "00" or code[4:6] == "00":
        raise ValueError(f"county code must name a county-level unit, got {code!r}")
    return code


def validate_county_of_city(code: str, city_code: str, city_name: str = "") -> str:
    """Check that the county a code starts with (its first 6 digits) is a county of the city.

    A county's code starts with its prefecture's 4 digits (GB/T 2260): the counties of 济南市 (370100) are
    3701xx, so 110101 (东城区, Beijing) is none of them, nor is a street, community or component code
    that starts with it. A province-level municipality is named by its prefecture-level code (北京市辖区
    110100), whose counties are 1101xx.

    Parameters
    ----------
    code : str
        A county code, or a longer code whose first 6 digits are a county (street, community, unit grid,
        component), already checked for its format.
    city_code : str
        The city's 6-digit prefecture-level code, e.g. ``"370100"``.
    city_name : str, optional
        The city's name, for the message.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If ``city_code`` is not a prefecture-level code, or the code's county is not one of the city's.
    """
    _digits(city_code, (6,), "city code")
    if city_code[2:4] == "00" or city_code[4:6] != "00":
        raise ValueError(f"city code must be a prefecture-level code such as 370100, got {city_code!r}")
    county = code[:6]
    if county[:4] != city_code[:4]:
        city = f"{city_name} ({city_code})" if city_name else city_code
        lead = f"{county}" if len(code) == 6 else f"{code} starts with county {county}, which"
        raise ValueError(
            f"{lead} is not a county of {city}: the city's county codes start with {city_code[:4]}"
        )
    return code


def validate_street_code(code: str) -> str:
    """Check a 9-digit street/town code (county code + 3-digit sequence 001–999).

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the format is wrong or the sequence is ``000``.
    """
    _digits(code, (9,), "street code")
    validate_county_code(code[:6])
    if code[6:] == "000":
        raise ValueError(f"street sequence must not be 000, got {code!r}")
    return code


def street_kind(code: str) -> StreetKind:
    """Kind of a street-level unit from its sequence: 001–099 街道, 100–199 镇, 200–399 乡.

    Parameters
    ----------
    code : str
        A 9-digit street code.

    Returns
    -------
    {"subdistrict", "town", "township", "other"}
        ``"other"`` for sequences 400 and above (development zones and the like).
    """
    seq = int(validate_street_code(code)[6:])
    if seq < 100:
        return "subdistrict"
    if seq < 200:
        return "town"
    if seq < 400:
        return "township"
    return "other"


def format_street_code(county_code: str, seq: int) -> str:
    """Street code from its county code and sequence (1–999).

    Parameters
    ----------
    county_code : str
        6-digit county code.
    seq : int
        Street sequence within the county.

    Returns
    -------
    str
        9-digit street code.
    """
    return validate_county_code(county_code) + _sequence(seq, 3, "street sequence")


def validate_community_code(code: str) -> str:
    """Check a 12-digit community/village code (street code + 3-digit sequence 001–999).

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the format is wrong or the sequence is ``000``.
    """
    _digits(code, (12,), "community code")
    validate_street_code(code[:9])
    if code[9:] == "000":
        raise ValueError(f"community sequence must not be 000, got {code!r}")
    return code


def community_kind(code: str) -> CommunityKind:
    """Kind of a community-level unit from its sequence: 001–199 社区, 200–399 村.

    Parameters
    ----------
    code : str
        A 12-digit community code.

    Returns
    -------
    {"community", "village", "other"}
    """
    seq = int(validate_community_code(code)[9:])
    if seq < 200:
        return "community"
    if seq < 400:
        return "village"
    return "other"


def format_community_code(street_code: str, seq: int) -> str:
    """Community code from its street code and sequence (1–999).

    Parameters
    ----------
    street_code : str
        9-digit street code.
    seq : int
        Community sequence within the street.

    Returns
    -------
    str
        12-digit community code.
    """
    return validate_street_code(street_code) + _sequence(seq, 3, "community sequence")


@dataclass(frozen=True)
class UnitGridCode:
    """A parsed unit grid code."""

    county: str
    street: str
    community: str
    sequence: int
    digits: int  # 2 (14-digit codes) or 3 (15-digit codes)


def validate_unit_grid_code(code: str) -> str:
    """Check a unit grid code: 12-digit community code + 2- or 3-digit sequence (14 or 15 digits).

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the format is wrong or the sequence is all zeros.
    """
    _digits(code, (14, 15), "unit grid code")
    validate_community_code(code[:12])
    if int(code[12:]) == 0:
        raise ValueError(f"unit grid sequence must not be zero, got {code!r}")
    return code


def parse_unit_grid_code(code: str) -> UnitGridCode:
    """Split a 14- or 15-digit unit grid code into its parts.

    Parameters
    ----------
    code : str
        The unit grid code.

    Returns
    -------
    UnitGridCode
    """
    validate_unit_grid_code(code)
    return UnitGridCode(
        county=code[:6], street=code[:9], community=code[:12], sequence=int(code[12:]), digits=len(code) - 12
    )


def format_unit_grid_code(community_code: str, seq: int, digits: Literal[2, 3] = 3) -> str:
    """Unit grid code from its community code and sequence.

    Parameters
    ----------
    community_code : str
        12-digit community code.
    seq : int
        Sequence within the community, from 1.
    digits : {2, 3}
        Width of the sequence: 3 for the newer 15-digit codes, 2 for the older 14-digit ones.

    Returns
    -------
    str
    """
    if digits not in (2, 3):
        raise ValueError(f"unit grid sequence width must be 2 or 3, got {digits!r}")
    return validate_community_code(community_code) + _sequence(seq, digits, "unit grid sequence")


def format_responsibility_grid_code(community_code: str, number: int) -> str:
    """Responsibility grid code: community code + ``R`` + 2-digit number, e.g. ``370102001001R01``.

    Parameters
    ----------
    community_code : str
        12-digit community code.
    number : int
        Number of the grid within its community, 1–99.

    Returns
    -------
    str
    """
    return validate_community_code(community_code) + "R" + _sequence(number, 2, "responsibility grid number")


def validate_responsibility_grid_code(code: str) -> str:
    """Check a responsibility grid code (12-digit community code + ``R`` + 2 digits).

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the format is wrong.
    """
    if not isinstance(code, str) or len(code) != 15 or code[12] != "R":
        raise ValueError(f"responsibility grid code must look like 370102001001R01, got {code!r}")
    validate_community_code(code[:12])
    _digits(code[13:], (2,), "responsibility grid number")
    if code[13:] == "00":
        raise ValueError(f"responsibility grid number must not be 00, got {code!r}")
    return code


@dataclass(frozen=True)
class ComponentCode:
    """A parsed component code."""

    county: str
    class_code: str  # major + minor, 4 or 5 digits
    major: str
    minor: str
    sequence: int


def validate_component_code(code: str) -> str:
    """Check a component code: county 6 + major 2 + minor 2 or 3 + sequence 6 (16 or 17 digits).

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the format is wrong, the major class is ``00`` or the sequence is all zeros.
    """
    _digits(code, (16, 17), "component code")
    validate_county_code(code[:6])
    if code[6:8] == "00":
        raise ValueError(f"component major class must not be 00, got {code!r}")
    if int(code[-6:]) == 0:
        raise ValueError(f"component sequence must not be zero, got {code!r}")
    return code


def parse_component_code(code: str) -> ComponentCode:
    """Split a 16- or 17-digit component code into its parts.

    Parameters
    ----------
    code : str
        The component code.

    Returns
    -------
    ComponentCode
    """
    validate_component_code(code)
    class_code = code[6:-6]
    return ComponentCode(
        county=code[:6],
        class_code=class_code,
        major=class_code[:2],
        minor=class_code[2:],
        sequence=int(code[-6:]),
    )


def format_component_code(county_code: str, class_code: str, seq: int) -> str:
    """Component code from county, class (4 or 5 digits) and sequence (1–999999).

    Parameters
    ----------
    county_code : str
        6-digit county code.
    class_code : str
        Major + minor class, e.g. ``"0118"`` (16-digit codes) or ``"01018"`` (17-digit codes).
    seq : int
        Sequence within county and class.

    Returns
    -------
    str
    """
    _digits(class_code, (4, 5), "component class code")
    return validate_component_code(
        validate_county_code(county_code) + class_code + _sequence(seq, 6, "component sequence")
    )


def format_request_code(local_date: dt.date, seq: int) -> str:
    """Case request code ``JN`` + local report date + 7-digit sequence within the day.

    Parameters
    ----------
    local_date : datetime.date
        Date of the report in Beijing time.
    seq : int
        Sequence within that day, from 1.

    Returns
    -------
    str
    """
    return "JN" + local_date.strftime("%Y%m%d") + _sequence(seq, 7, "request sequence")


def validate_request_code(code: str) -> str:
    """Check a case request code such as ``JN202501010000001``.

    Parameters
    ----------
    code : str
        The code to check.

    Returns
    -------
    str
        ``code`` unchanged.

    Raises
    ------
    ValueError
        If the prefix, the date or the sequence is wrong.
    """
    if not isinstance(code, str) or not code.startswith("JN"):
        raise ValueError(f"request code must start with JN, got {code!r}")
    _digits(code[2:], (15,), "request code body")
    try:
        dt.datetime.strptime(code[2:10], "%Y%m%d")
    except ValueError:
        raise ValueError(f"request code carries no valid date, got {code!r}") from None
    if int(code[10:]) == 0:
        raise ValueError(f"request sequence must not be zero, got {code!r}")
    return code
