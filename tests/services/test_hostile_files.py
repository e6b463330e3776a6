"""Hostile import files (issue 7): each is refused with an error saying what and where, the database is left
as it was, and memory stays bounded (peak RSS measured; no timing assertions).

Zip bombs (one member of zeros, declared sizes that lie, many GB declared, a million-file listing, a zip
inside the zip), path traversal inside a zipped Shapefile or FileGDB, a polygon of a million vertices, and
SQL in layer and field names.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pytest
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from gis.io import LayerError, inspect_layer
from gridsvc.errors import InvalidInputError
from gridsvc.services.access import LOCAL_OPERATOR
from gridsvc.services.imports import ImportReport, ImportRequest, import_layer
from gridsvc.services.uploads import saved_upload
from gridsvc.settings import Settings

MiB = 1 << 20
# Tables an import may write; a refused file must leave every one as it was.
WRITTEN_TABLES = ("component", "community", "street", "survey_batch", "import_problem", "audit_log")


def peak_rss_growth(work: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``work``; return its result and how far the process's peak RSS rose above the RSS before it.

    Linux resets the high-water mark on writing 5 to /proc/self/clear_refs, so the peak is this call's.
    """

    def status(field: str) -> int:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        assert found is not None
        return int(found.group(1)) * 1024

    before = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    result = work()
    return result, status("VmHWM") - before


def table_counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            t: int(session.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in WRITTEN_TABLES
        }


def run_import(
    sessions: sessionmaker[Session], settings: Settings, path: Path, **kwargs: Any
) -> ImportReport:
    return import_layer(sessions, ImportRequest(path=path, **kwargs), settings=settings, actor=LOCAL_OPERATOR)


def refused(
    sessions: sessionmaker[Session], settings: Settings, path: Path, field: str = "file", **kwargs: Any
) -> str:
    """Import ``path``, expect a refusal (about ``field``) that leaves every table as it was; return its
    message."""
    before = table_counts(sessions)
    with pytest.raises(InvalidInputError) as info:
        run_import(sessions, settings, path, **kwargs)
    assert table_counts(sessions) == before
    assert info.value.problems and info.value.problems[0].field == field
    return str(info.value)


def community_point(sessions: sessionmaker[Session]) -> shapely.Point:
    with sessions() as session:
        x, y = session.execute(
            text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM community LIMIT 1) c")
        ).one()
    return shapely.Point(x, y)


def shapefile_parts(folder: Path, sessions: sessionmaker[Session]) -> dict[str, bytes]:
    """The parts of a one-lamp component Shapefile: {".shp": bytes, ".shx": ..., ".dbf": ..., ".prj": ...}."""
    at = community_point(sessions)
    lamps = gpd.GeoDataFrame({"标识码": ["3701020118990001"], "名称": ["路灯"]}, geometry=[at], crs=4490)
    lamps.to_file(folder / "lamps.shp", encoding="UTF-8")
    return {p.suffix: p.read_bytes() for p in folder.iterdir() if p.stem == "lamps"}


def zip_with(path: Path, members: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return path


def zeros_member(size: int) -> Iterator[bytes]:
    block = bytes(MiB)
    for _ in range(size // MiB):
        yield block


def deflated(chunks: Iterator[bytes]) -> tuple[bytes, int, int]:
    """Raw deflate of a stream: (compressed bytes, uncompressed size, CRC-32)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out, size, crc = io.BytesIO(), 0, 0
    for chunk in chunks:
        out.write(packer.compress(chunk))
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
    out.write(packer.flush())
    return out.getvalue(), size, crc


def lying_zip(path: Path, name: str, data: bytes, declared_size: int, crc: int) -> Path:
    """A zip of one deflated member whose headers declare ``declared_size`` and ``crc``, whatever it holds."""
    encoded = name.encode()
    local = struct.pack(
        "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), declared_size, len(encoded), 0
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(data),
        declared_size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    offset = len(local) + len(encoded) + len(data)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(encoded), offset, 0)
    path.write_bytes(local + encoded + data + central + encoded + end)
    return path


# --- zip bombs --------------------------------------------------------------------------------------------


def test_a_member_of_zeros_is_refused_by_its_ratio_before_anything_reads_it(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    parts = shapefile_parts(tmp_path, demo_sessions)
    archive = zip_with(tmp_path / "路灯.zip", {f"lamps{ext}": data for ext, data in parts.items()})
    # 256 MiB of zeros, packed into some 250 KB
    with (
        zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zipped,
        zipped.open("lamps.qix", "w", force_zip64=True) as member,
    ):
        for block in zeros_member(256 * MiB):
            member.write(block)
    message, growth = peak_rss_growth(lambda: refused(demo_sessions, test_settings, archive))
    assert (
        "member 'lamps.qix' would unpack" in message and "times larger" in message and "zip bomb" in message
    )
    assert growth < 64 * MiB, f"peak RSS rose {growth / MiB:.0f} MiB"


def test_declared_sizes_that_lie_are_caught_by_counting(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # GDAL inflates a member's whole stream whatever the archive declares: 200 MiB declared as 100 bytes.
    data, _, _ = deflated(zeros_member(200 * MiB))
    archive = lying_zip(tmp_path / "survey.zip", "lamps.dbf", data, declared_size=100, crc=0)
    message, growth = peak_rss_growth(lambda: refused(demo_sessions, test_settings, archive))
    assert "member 'lamps.dbf' declares 100 bytes but unpacks to more" in message
    assert growth < 64 * MiB, f"peak RSS rose {growth / MiB:.0f} MiB"


def test_more_unpacked_bytes_than_allowed_are_refused_from_the_listing(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Incompressible members, so no ratio gives them away: only their declared total does.
    small = test_settings.model_copy(update={"max_unzipped_bytes": 8 * MiB})
    noise = {f"part{i}.bin": random.randbytes(3 * MiB) for i in range(3)}
    archive = zip_with(tmp_path / "survey.zip", noise, compression=zipfile.ZIP_STORED)
    message = refused(demo_sessions, small, archive)
    assert "survey.zip would unpack to 9,437,184 bytes, more than the 8,388,608 allowed" in message


def test_an_archive_listing_too_many_files_is_refused_before_they_are_listed(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zipped:
        for i in range(test_settings.max_zip_members + 1):
            zipped.writestr(f"f{i}", b"")
    message = refused(demo_sessions, test_settings, archive)
    assert f"holds {test_settings.max_zip_members + 1:,} files, more than the 10,000 allowed" in message


def test_a_zip_inside_the_zip_is_refused(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    parts = shapefile_parts(tmp_path, demo_sessions)
    inner = zip_with(tmp_path / "inner.zip", {f"lamps{ext}": data for ext, data in parts.items()})
    outer = zip_with(tmp_path / "outer.zip", {"data/inner.zip": inner.read_bytes(), "readme.txt": b"x"})
    message = refused(demo_sessions, test_settings, outer)
    assert "member 'data/inner.zip' is an archive inside the archive" in message


def test_an_honest_zipped_shapefile_still_imports(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    parts = shapefile_parts(tmp_path, demo_sessions)
    archive = zip_with(tmp_path / "路灯.zip", {f"普查/lamps{ext}": data for ext, data in parts.items()})
    report = run_import(demo_sessions, test_settings, archive)
    assert (report.accepted, report.rejected, report.new) == (1, 0, 1)


# --- path traversal ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../../outside/lamps", "a path that climbs out of the archive (..)"),
        ("{tmp}/outside/lamps", "an absolute path"),
        ("..\\..\\outside\\lamps", "a path that climbs out of the archive (..)"),
    ],
)
def test_a_zipped_shapefile_naming_a_path_outside_is_refused(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path, name: str, why: str
) -> None:
    parts = shapefile_parts(tmp_path, demo_sessions)
    stem = name.format(tmp=tmp_path)
    archive = zip_with(tmp_path / "survey.zip", {f"{stem}{ext}": data for ext, data in parts.items()})
    message = refused(demo_sessions, test_settings, archive)
    # The first part listed is named, e.g. member '../../outside/lamps.cpg' is a path that climbs out ...
    assert re.search(re.escape(f"member {stem + '.'!r}"[:-1]) + r"\w+' is " + re.escape(why), message)
    assert not (tmp_path / "outside").exists() and not (tmp_path.parent / "outside").exists()


def test_a_symlink_in_a_zip_is_refused(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    parts = shapefile_parts(tmp_path, demo_sessions)
    archive = zip_with(tmp_path / "survey.zip", {f"lamps{ext}": data for ext, data in parts.items()})
    link = zipfile.ZipInfo("lamps.sbn")
    link.create_system = 3  # Unix, whose mode bits say "symbolic link"
    link.external_attr = (0o120777 << 16) | 0
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr(link, "/etc/passwd")
    message = refused(demo_sessions, test_settings, archive)
    assert "member 'lamps.sbn' is a symbolic link" in message


def test_an_uploaded_filegdb_climbing_out_is_refused_and_nothing_is_written_outside(
    test_settings: Settings, tmp_path: Path
) -> None:
    evil = zip_with(
        tmp_path / "upload.zip",
        {"survey.gdb/a00000001.gdbtable": b"x", "survey.gdb/../../../escaped.txt": b"pwned"},
    )
    with (
        evil.open("rb") as stream,
        pytest.raises(InvalidInputError) as info,
        saved_upload("survey.zip", stream, test_settings),
    ):
        pytest.fail("the upload was accepted")
    assert "member 'survey.gdb/../../../escaped.txt' is a path that climbs out" in str(info.value)
    # Unpacked under /tmp/gridsvc-upload-*/unzipped/, the member would have landed in /tmp itself.
    assert not Path("/tmp/escaped.txt").exists()


@pytest.mark.parametrize("door", ["upload", "file on the server"])
def test_a_zip_of_two_filegdbs_is_refused_alike_through_both_doors(
    test_settings: Settings, tmp_path: Path, door: str
) -> None:
    archive = zip_with(
        tmp_path / "两库.zip", {"甲.gdb/a00000001.gdbtable": b"x", "乙.gdb/a00000001.gdbtable": b"x"}
    )
    with pytest.raises((InvalidInputError, LayerError)) as info:
        if door == "upload":
            with archive.open("rb") as stream, saved_upload("两库.zip", stream, test_settings):
                pytest.fail("the upload was accepted")
        else:
            inspect_layer(archive)
    assert "holds 2 FileGDBs (乙.gdb, 甲.gdb): zip only the one to import" in str(info.value)


def test_an_upload_over_the_limit_is_refused_while_it_is_written(test_settings: Settings) -> None:
    small = test_settings.model_copy(update={"max_upload_bytes": 3 * MiB})

    def endless() -> Iterator[bytes]:
        while True:
            yield bytes(MiB)

    class Stream(io.RawIOBase):
        def __init__(self) -> None:
            self.blocks = endless()
            self.read_bytes = 0

        def read(self, size: int = -1) -> bytes:
            block = next(self.blocks)
            self.read_bytes += len(block)
            return block

    stream = Stream()
    with pytest.raises(InvalidInputError) as info, saved_upload("big.gpkg", stream, small):  # type: ignore[arg-type]
        pytest.fail("the upload was accepted")
    assert "larger than 3 MiB" in str(info.value) and stream.read_bytes == 4 * MiB


# --- a polygon of a million vertices ----------------------------------------------------------------------


def many_vertex_polygon(centre: shapely.Point, vertices: int) -> shapely.Polygon:
    """A circle of ``vertices`` vertices, 300 m across, around ``centre``."""
    import numpy as np

    angles = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
    ring = np.column_stack([centre.x + 0.0015 * np.cos(angles), centre.y + 0.0015 * np.sin(angles)])
    return shapely.Polygon(ring)


def test_a_community_of_a_million_vertices_is_rejected_row_by_row(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    # Where no community is yet (a community may not overlap a loaded one): a new street of a new district.
    street = "370103001"
    for level, code, square in [
        ("district", "370103", shapely.box(117.20, 36.60, 117.24, 36.64)),
        ("street", street, shapely.box(117.20, 36.60, 117.21, 36.61)),
    ]:
        gpd.GeoDataFrame({"代码": [code], "名称": ["市中"]}, geometry=[square], crs=4490).to_file(
            tmp_path / f"{level}.gpkg"
        )
        run_import(demo_sessions, test_settings, tmp_path / f"{level}.gpkg", layer="boundaries", level=level)
    centre = shapely.Point(117.205, 36.605)
    communities = gpd.GeoDataFrame(
        {"代码": [f"{street}981", f"{street}982"], "名称": ["千万点社区", "正常社区"]},
        geometry=[many_vertex_polygon(centre, 1_000_000), many_vertex_polygon(centre, 64)],
        crs=4490,
    )
    path = tmp_path / "社区.gpkg"
    communities.to_file(path, driver="GPKG")
    report, growth = peak_rss_growth(
        lambda: run_import(demo_sessions, test_settings, path, layer="boundaries", level="community")
    )
    assert (report.rows_read, report.accepted, report.rejected, report.new) == (2, 1, 1, 1)
    problem = report.problems[0]
    assert (problem.source_row, problem.field, problem.value) == (
        1,
        "geometry",
        "Polygon of 1,000,001 vertices",
    )
    assert "more than the 250,000 allowed (GRIDSVC_MAX_GEOMETRY_VERTICES): simplify it" in problem.reason
    with demo_sessions() as session:
        codes = session.execute(text("SELECT code FROM community WHERE code LIKE :s"), {"s": f"{street}98_"})
        assert codes.scalars().all() == [f"{street}982"]
        stored = session.execute(
            text("SELECT geom IS NULL FROM import_problem WHERE survey_batch_id = :b"), {"b": report.batch_id}
        ).scalar_one()
    assert stored, "the monster polygon is not kept in the problem report"
    assert growth < 512 * MiB, f"peak RSS rose {growth / MiB:.0f} MiB"


def test_a_polygon_component_of_a_million_vertices_is_rejected_row_by_row(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    centre = community_point(demo_sessions)
    belts = gpd.GeoDataFrame(
        {"标识码": ["3701020490990001", "3701020490990002"], "名称": ["绿化带", "绿化带"]},
        geometry=[many_vertex_polygon(centre, 1_000_000), many_vertex_polygon(centre, 32)],
        crs=4490,
    )
    path = tmp_path / "绿化带.gpkg"
    belts.to_file(path, driver="GPKG")
    report = run_import(demo_sessions, test_settings, path)
    assert (report.accepted, report.rejected) == (1, 1)
    assert report.problems[0].source_row == 1 and "1,000,001 vertices" in report.problems[0].reason


# --- SQL in layer and field names -------------------------------------------------------------------------

INJECTED_LAYER = 'x"; DROP TABLE component; --'
INJECTED_FIELDS = ("备注'); DROP TABLE survey_batch; --", 'a"b', "c;d")


def test_sql_in_layer_and_field_names_is_only_ever_data(
    demo_sessions: sessionmaker[Session], test_settings: Settings, tmp_path: Path
) -> None:
    at = community_point(demo_sessions)
    lamps = gpd.GeoDataFrame(
        {"标识码": ["3701020118990011"], **{name: [f"值{i}"] for i, name in enumerate(INJECTED_FIELDS)}},
        geometry=[at],
        crs=4490,
    )
    path = tmp_path / "injected.gpkg"
    pyogrio.write_dataframe(lamps, path, layer=INJECTED_LAYER, driver="GPKG")
    pyogrio.write_dataframe(lamps, path, layer="other", driver="GPKG", append=False)
    assert set(pyogrio.list_layers(path)[:, 0]) == {INJECTED_LAYER, "other"}

    unknown = refused(
        demo_sessions, test_settings, path, "layer", source_layer="x'; DELETE FROM component; --"
    )
    assert 'has no layer "x\'; DELETE FROM component; --"' in unknown

    report = run_import(demo_sessions, test_settings, path, source_layer=INJECTED_LAYER)
    assert (report.accepted, report.new, report.source_layer) == (1, 1, INJECTED_LAYER)
    with demo_sessions() as session:
        attributes = session.execute(
            text("SELECT attributes FROM component WHERE code = '3701020118990011'")
        ).scalar_one()
        assert session.execute(text("SELECT count(*) FROM survey_batch")).scalar_one() > 0
    assert {name: attributes[name] for name in INJECTED_FIELDS} == {
        name: f"值{i}" for i, name in enumerate(INJECTED_FIELDS)
    }
