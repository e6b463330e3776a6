"""Uploaded files: stream to a private temporary folder and unpack what GIS staff zip up."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from gridsvc.errors import FieldProblem, InvalidInputError

ACCEPTED_SUFFIXES = (".gpkg", ".zip", ".geojson", ".json", ".csv", ".kml", ".shp")
MAX_UPLOAD_BYTES = 4 << 30


@contextmanager
def saved_upload(filename: str, stream: BinaryIO) -> Iterator[Path]:
    """Save an upload under its own name in a temporary folder (removed afterwards); yield the path to read.

    A .zip holding a FileGDB (a folder ending in .gdb) is unpacked and the .gdb folder is yielded; any
    other .zip is yielded as it is (shapefiles are read straight from the zip).
    """
    name = PurePosixPath(filename.replace("\\", "/")).name
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
    folder = Path(tempfile.mkdtemp(prefix="gridsvc-upload-"))
    try:
        target = folder / name
        written = 0
        with target.open("wb") as out:
            for block in iter(lambda: stream.read(1 << 20), b""):
                written += len(block)
                if written > MAX_UPLOAD_BYTES:
                    raise InvalidInputError("upload too large", problems=[FieldProblem("file", "over 4 GiB")])
                out.write(block)
        yield _unpack_gdb(target) if target.suffix.lower() == ".zip" else target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unpack_gdb(archive: Path) -> Path:
    try:
        with zipfile.ZipFile(archive) as zipped:
            names = zipped.namelist()
            gdb_roots = sorted({n.split(".gdb/")[0] + ".gdb" for n in names if ".gdb/" in n})
            if not gdb_roots:
                return archive
            unpack_to = archive.parent / "unzipped"
            for member in names:
                # Refuse paths that would escape the folder (zip slip).
                if member.startswith("/") or ".." in PurePosixPath(member).parts:
                    raise InvalidInputError(
                        "unsafe zip", problems=[FieldProblem("file", f"bad path {member!r}")]
                    )
            zipped.extractall(unpack_to)
    except zipfile.BadZipFile as exc:
        raise InvalidInputError(
            "the upload is not a valid zip file", problems=[FieldProblem("file", "not a zip archive")]
        ) from exc
    return unpack_to / gdb_roots[0]
