"""One entry point for every splat file: ``read_scene`` picks the reader by content, then by extension.

| format | recognized by | reader |
| --- | --- | --- |
| float 3DGS PLY | ``ply`` magic, no ``packed_position`` | ``codec.ply.read_ply`` |
| PlayCanvas compressed PLY | ``ply`` magic and a ``packed_position`` vertex property | ``compressed_ply.read_compressed_ply`` |
| SPZ v2-v4 | ``NGSP`` magic (v4) or a gzip stream (v2, v3) | ``spz.read_spz`` |
| SOG | a zip (``PK``), a ``meta.json``, or a folder holding one | ``sog.read_sog`` |
| antimatter15 .splat | the ``.splat`` extension (it has no magic) | ``splat.read_splat`` |

Anything else is a ``SceneFileError`` naming the formats known. SPZ files
without a coordinate-system extension are read in ``spz_frame`` ("raw": the
PLY frame, as splat-transform and the SPZ reference tools write them).
``write_scene`` writes .ply, .spz or .splat by the output name's extension.
"""
from __future__ import annotations

import os

import numpy as np

from ..attributes import Gaussians
from ..ply import read_ply_with_ids, write_ply
from .compressed_ply import read_compressed_ply
from .sog import read_sog, sog_bytes
from .splat import read_splat, write_splat
from .spz import read_spz, write_spz

READ_FORMATS = ("ply", "compressed.ply", "spz", "splat", "sog")
WRITE_FORMATS = ("ply", "spz", "splat")
KNOWN = ".ply, .compressed.ply, .spz, .splat, .sog or a SOG folder/meta.json"


class SceneFileError(ValueError):
    """A scene file of an unknown format, or one its reader rejects."""


def _head(path: str, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def detect_format(path) -> str:
    """The format of a scene file or folder, one of READ_FORMATS; SceneFileError when none fits."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "meta.json")):
            return "sog"
        raise SceneFileError(f"{path}: a folder without meta.json is not a SOG scene (expected {KNOWN})")
    head = _head(path)
    if head[:4] in (b"ply\n", b"ply\r"):
        end = head.find(b"end_header")
        text = head if end < 0 else head[:end]
        if end < 0 and len(head) == 4096:    # a long header: read up to the PLY reader's header limit
            text = _head(path, 1 << 20)
        return "compressed.ply" if b"packed_position" in text.split(b"end_header")[0] else "ply"
    if head[:4] == b"NGSP" or head[:2] == b"\x1f\x8b":
        return "spz"
    if head[:4] == b"PK\x03\x04":
        return "sog"
    lower = path.lower()
    if lower.endswith(".json") and head.lstrip()[:1] == b"{":
        return "sog"
    if lower.endswith(".splat"):
        return "splat"
    what = "an empty file" if not head else "not a scene file"
    for ext, name, sign in ((".ply", "PLY", "no 'ply' magic"), (".spz", "SPZ", "neither the NGSP magic nor gzip"),
                            (".sog", "SOG", "not a zip archive")):
        if lower.endswith(ext):
            what = f"{what if not head else f'not a {name} file ({sign})'}"
    raise SceneFileError(f"{path}: {what}: unknown or corrupt (expected {KNOWN})")


def read_scene(path, spz_frame: str = "raw") -> tuple[Gaussians, str]:
    """(Gaussians in PLY conventions, format name) of any READ_FORMATS file; SceneFileError on bad input."""
    return read_scene_with_ids(path, spz_frame)[:2]


def read_scene_with_ids(path, spz_frame: str = "raw") -> tuple[Gaussians, str, np.ndarray | None]:
    """``read_scene`` and the Gaussians' ids carried by the file: a float PLY's vertex property ``id``
    (as stored), None for a file without one and for the other formats (they have no such field)."""
    path = os.fspath(path)
    fmt = detect_format(path)
    ids = None
    try:
        if fmt == "ply":
            g, ids = read_ply_with_ids(path)
        elif fmt == "compressed.ply":
            g = read_compressed_ply(path)
        elif fmt == "spz":
            g = read_spz(path, frame=spz_frame)
        elif fmt == "sog":
            g = read_sog(path)
        else:
            g = read_splat(path, allow_nonfinite=True)
    except SceneFileError:
        raise
    except (ValueError, EOFError) as e:
        msg = str(e)
        raise SceneFileError(msg if msg.startswith(path) else f"{path}: corrupt {fmt} file: {msg}") from None
    return g, fmt, ids


def scene_bytes(path) -> int:
    """Bytes the scene takes on disk (a SOG folder: meta.json and the images it names)."""
    path = os.fspath(path)
    return sog_bytes(path) if os.path.isdir(path) or path.lower().endswith(".json") else os.path.getsize(path)


def output_format(path) -> str:
    """The WRITE_FORMATS entry an output name asks for; SceneFileError for others."""
    lower = os.fspath(path).lower()
    if lower.endswith(".compressed.ply"):
        raise SceneFileError(f"{path}: writing compressed PLY is not supported (write .ply, .spz or .splat)")
    for fmt in WRITE_FORMATS:
        if lower.endswith("." + fmt):
            return fmt
    raise SceneFileError(f"{path}: unknown output format (the name must end in .ply, .spz or .splat)")


def write_scene(path, g: Gaussians, spz_frame: str = "raw", spz_version: int = 3) -> str:
    """Write ``g`` in the format of the output name's extension; returns the format."""
    fmt = output_format(path)
    if fmt == "ply":
        write_ply(path, g)
    elif fmt == "spz":
        write_spz(path, g, version=spz_version, frame=spz_frame)
    else:
        write_splat(path, g)
    return fmt
