"""Uploaded files: stream to a private temporary folder and unpack what GIS staff zip up.

Nothing an upload says about itself is trusted (issue 7, hostile input): its size is counted while it is
written, and a zip is checked by :func:`gis.io.check_archive` (member count, names, symlinks, nested
archives, declared and real unpacked sizes) before anything reads or unpacks it. A FileGDB is unpacked
member by member, each written under the upload's own folder and counted as it is written.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gis import io
from gridsvc.errors import FieldProblem, InvalidInputError
from gridsvc.settings import Settings

ACCEPTED_SUFFIXES = (".gpkg", ".zip", ".geojson", ".json", ".csv", ".kml", ".kmz", ".shp")
BLOCK_BYTES = 1 << 20

# The temporary folder an upload is saved (and a zip unpacked) in: never named to the uploader.
UPLOAD_FOLDER_PREFIX = "gridsvc-upload-"


def archive_limits(settings: Settings) -> io.ArchiveLimits:
    """The zip limits the settings give."""
    return io.ArchiveLimits(
        max_members=settings.max_zip_members,
        max_bytes=settings.max_unzipped_bytes,
        max_ratio=settings.max_zip_ratio,
    )


def size_text(count: int) -> str:
    """Bytes as people say them: 1 GiB, 512 MiB, 300 KiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.4g} {unit}"
    return f"{count} bytes"


def too_large(limit: int) -> str:
    """What to tell someone whose upload is over ``limit`` bytes."""
    return (
        f"the upload is larger than {size_text(limit)} (GRIDSVC_MAX_UPLOAD_BYTES): zip it, split the layer, "
        "or import it on the server with `gridsvc import`"
    )


# The file name as the form's bytes carry it (headers are read as Latin-1), when not given as filename*.
_QUOTED_FILENAME = re.compile(r'filename="([^"]*)"')


def upload_name(filename: str, disposition: str | None = None) -> str:
    """The file name an upload was sent with, as its sender reads it: without a path (``../../x.gpkg`` is
    ``x.gpkg``), and in Chinese when a GBK system sent it. The form parser decodes a name as UTF-8 and
    falls back to Latin-1 (路灯普查.gpkg would read Â·µÆÆÕ²é.gpkg); which one it did shows only in the
    part's Content-Disposition header, ``disposition``: its bytes not UTF-8 are read as GB18030."""
    name = filename
    found = _QUOTED_FILENAME.search(disposition or "") if "filename*" not in (disposition or "") else None
    if found is not None:
        try:
            raw = found.group(1).encode("latin-1")
            raw.decode("utf-8")
        except UnicodeEncodeError:
            pass  # not the bytes as sent: keep the parser's name
        except UnicodeDecodeError:
            with suppress(UnicodeDecodeError):
                name = raw.decode("gb18030")
    # A control character (a NUL, a tab) is no part of a name anyone reads, and PostgreSQL's text, which
    # records the name, cannot hold a NUL.
    return _CONTROL.sub(" ", PurePosixPath(name.replace("\\", "/")).name).strip()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Linux allows 255 bytes per name, 85 Chinese characters in UTF-8: a contractor's long name is cut to
# save it, keeping its suffix (the messages and the report name it as it was sent).
_SAVED_NAME_BYTES = 200


def _saved_name(name: str) -> str:
    """The name an upload is saved under: its own, cut to _SAVED_NAME_BYTES of UTF-8 before its suffix."""
    if len(name.encode("utf-8")) <= _SAVED_NAME_BYTES:
        return name
    suffix = PurePosixPath(name).suffix
    room = _SAVED_NAME_BYTES - len(suffix.encode("utf-8"))
    stem = name[: len(name) - len(suffix)].encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return stem + suffix


@contextmanager
def saved_upload(filename: str, stream: BinaryIO, settings: Settings) -> Iterator[Path]:
    """Save an upload under its own name in a temporary folder (removed afterwards); yield the path to read.

    A .zip is checked whole first. One holding a FileGDB (a folder ending in .gdb), or nothing but one file
    of a one-file format (a GeoPackage zipped to send it), is unpacked and the .gdb folder or the file is
    yielded; any other .zip is yielded as it is (shapefiles are read straight from the zip).
    """
    name = upload_name(filename)
    if not name or not name.lower().endswith(ACCEPTED_SUFFIXES):
        raise InvalidInputError(
            "unsupported upload",
            problems=[
                FieldProblem(
                    "file",
                    f"{filename!r}: upload a {', '.join(ACCEPTED_SUFFIXES)} (zip a Shapefile or a .gdb)",
                )
            ],
        )
    folder = Path(tempfile.mkdtemp(prefix=UPLOAD_FOLDER_PREFIX))
    try:
        target = folder / _saved_name(name)
        written = 0
        with target.open("wb") as out:
            for block in iter(lambda: stream.read(BLOCK_BYTES), b""):
                written += len(block)
                if written > settings.max_upload_bytes:
                    message = too_large(settings.max_upload_bytes)
                    raise InvalidInputError(message, problems=[FieldProblem("file", message)])
                out.write(block)
        if target.suffix.lower() == ".zip":
            limits = archive_limits(settings)
            _check_zip(target, limits)
            yield _unpacked(target, limits)
        else:
            yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _refused(message: str) -> InvalidInputError:
    return InvalidInputError(message, problems=[FieldProblem("file", message)])


def _check_zip(archive: Path, limits: io.ArchiveLimits) -> None:
    try:
        io.check_archive(archive, limits)
    except io.LayerError as exc:
        # Named as it was sent: the temporary folder the server saved it in is nobody's business.
        raise _refused(str(exc).replace(str(archive), archive.name)) from exc


def _unpacked(archive: Path, limits: io.ArchiveLimits) -> Path:
    """Unpack a zipped FileGDB under the archive's folder and return the .gdb, or a zip of one GeoPackage,
    GeoJSON, CSV or KML and return that file; another zip as it is (gis.io reads it or says why not)."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            names = [m.filename for m in members]
            gdb_roots = sorted({n.split(".gdb/")[0] + ".gdb" for n in names if ".gdb/" in n})
            files = [m for m in members if not m.is_dir() and not io.is_resource_fork(m.filename)]
            if len(files) == 1 and files[0].filename.lower().endswith(io.ONE_FILE_SUFFIXES):
                unpack_to = (archive.parent / "unzipped").resolve()
                _unpack_member(zipped, files[0], unpack_to, archive, already=0, limit=limits.max_bytes)
                return unpack_to / files[0].filename
            if not gdb_roots or any(n.lower().endswith(".shp") for n in names):
                # A zipped Shapefile is read in place, as `gridsvc import` reads it; gis.io says what is
                # wrong with a zip holding a Shapefile and a FileGDB, or several of either.
                return archive
            if len(gdb_roots) > 1:
                raise _refused(
                    f"{archive.name} holds {len(gdb_roots)} FileGDBs ({', '.join(gdb_roots)}): zip only "
                    "the one to import"
                )
            unpack_to = (archive.parent / "unzipped").resolve()
            written = 0
            for member in members:
                written += _unpack_member(
                    zipped, member, unpack_to, archive, already=written, limit=limits.max_bytes
                )
    except zipfile.BadZipFile as exc:
        raise _refused(f"{archive.name} is not a valid zip file ({exc})") from exc
    return unpack_to / gdb_roots[0]


def _unpack_member(
    zipped: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    unpack_to: Path,
    archive: Path,
    *,
    already: int,
    limit: int,
) -> int:
    """Write one member under ``unpack_to`` counting its bytes; refuse a path outside it or a total over
    ``limit`` (``already`` written by the members before)."""
    target = (unpack_to / member.filename).resolve()
    # check_archive refused ../ and absolute names already; this holds whatever a name turns out to mean.
    if not target.is_relative_to(unpack_to):
        raise _refused(f"{archive.name}: member {member.filename!r} would be unpacked outside the upload")
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zipped.open(member) as source, target.open("wb") as out:
        for block in iter(lambda: source.read(BLOCK_BYTES), b""):
            written += len(block)
            if already + written > limit:
                raise _refused(
                    f"{archive.name} unpacks to more than {size_text(limit)} (GRIDSVC_MAX_UNZIPPED_BYTES)"
                )
            out.write(block)
    return written
