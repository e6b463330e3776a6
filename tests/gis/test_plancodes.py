"""Plan codes: reading order west→east then north→south, survivors keep codes, numbers never reused."""

from __future__ import annotations

import pytest
import shapely
from shapely.geometry import box

from gis.plancodes import code_responsibility_grids, code_unit_grids, match_survivors, reading_order

COMMUNITY = "370102001001"


def grid(cols: int, rows: int, size: float = 100.0) -> list[shapely.Polygon]:
    """Cells of a regular grid, listed in a scrambled order (so the order comes from the shapes)."""
    cells = [
        box(c * size, r * size, (c + 1) * size, (r + 1) * size) for r in range(rows) for c in range(cols)
    ]
    return cells[::-1][1::2] + cells[::-1][0::2]


def test_reading_order_is_rows_from_the_north_then_west_to_east() -> None:
    cells = grid(3, 2)
    order = reading_order(cells)
    points = [(cells[i].bounds[0], cells[i].bounds[1]) for i in order]
    assert points == [(0, 100), (100, 100), (200, 100), (0, 0), (100, 0), (200, 0)]


def test_a_slightly_lower_neighbour_stays_in_the_same_row() -> None:
    cells = [box(0, 0, 100, 100), box(100, -20, 200, 80), box(0, -100, 100, 0)]
    assert reading_order(cells).tolist() == [0, 1, 2]


def test_first_plan_numbers_in_reading_order() -> None:
    cells = grid(2, 2)
    coded = code_unit_grids(COMMUNITY, cells)
    by_code = sorted(zip(coded.codes, cells, strict=True))
    assert [c for c, _ in by_code] == [f"{COMMUNITY}00{n}" for n in range(1, 5)]
    assert [g.bounds[:2] for _, g in by_code] == [(0, 100), (100, 100), (0, 0), (100, 0)]
    assert not coded.kept.any()
    assert (
        code_unit_grids(COMMUNITY, cells, digits=2).codes[0].startswith(COMMUNITY)
        and len(code_unit_grids(COMMUNITY, cells, digits=2).codes[0]) == 14
    )


def test_survivors_keep_their_codes_and_new_grids_never_take_a_retired_number() -> None:
    old_cells = grid(2, 2)
    first = code_unit_grids(COMMUNITY, old_cells)
    old = list(zip(first.codes, old_cells, strict=True))
    # Redraw: the two northern cells survive (one moved by 20 cm), the southern two become one.
    north = [g for g in old_cells if g.bounds[1] == 100]
    moved = shapely.affinity.translate(north[0], 0.2, 0)
    south = box(0, 0, 200, 100)
    new = [south, moved, north[1]]
    coded = code_unit_grids(COMMUNITY, new, old, ever_used=[f"{COMMUNITY}009"])
    assert coded.kept.tolist() == [False, True, True]
    assert coded.codes[1] == dict((g.wkt, c) for c, g in old)[north[0].wkt]
    assert coded.codes[2] == dict((g.wkt, c) for c, g in old)[north[1].wkt]
    assert coded.codes[0] == f"{COMMUNITY}010"  # after the highest ever used (009), not a freed 003/004
    assert code_unit_grids(COMMUNITY, new, old, ever_used=[f"{COMMUNITY}009"]).codes == coded.codes


def test_a_reshaped_grid_is_new() -> None:
    old = [(f"{COMMUNITY}001", box(0, 0, 100, 100))]
    grown = box(0, 0, 110, 100)
    assert match_survivors([grown], [old[0][1]]).tolist() == [-1]
    assert code_unit_grids(COMMUNITY, [grown], old).codes == [f"{COMMUNITY}002"]


def test_responsibility_grid_codes_and_running_out() -> None:
    cells = grid(2, 1)
    coded = code_responsibility_grids(COMMUNITY, cells, ever_used=[f"{COMMUNITY}R07"])
    assert sorted(coded.codes) == [f"{COMMUNITY}R08", f"{COMMUNITY}R09"]
    with pytest.raises(ValueError, match="no code is left"):
        code_responsibility_grids(COMMUNITY, cells, ever_used=[f"{COMMUNITY}R99"])
    with pytest.raises(ValueError, match="no code is left"):
        code_unit_grids(COMMUNITY, cells, ever_used=[f"{COMMUNITY}99"], digits=2)


def test_14_digit_codes_do_not_count_the_numbers_of_15_digit_ones() -> None:
    # A city moving back to the older 14-digit practice: 15-digit numbers up to 120 are another width.
    grids = [box(0, 0, 100, 100), box(100, 0, 200, 100)]
    coded = code_unit_grids("370102001001", grids, ever_used=["370102001001120", "37010200100107"], digits=2)
    assert coded.codes == ["37010200100108", "37010200100109"]
