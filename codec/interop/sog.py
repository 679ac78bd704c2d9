"""PlayCanvas SOG (``.sog``: a zip of ``meta.json`` and lossless WebP images, or a folder of them) read.

Every image holds one Gaussian per pixel, in row-major order (pixel i is
Gaussian i; width x height >= count). ``meta.json`` version 2:

| meta key | image(s) | per Gaussian |
| --- | --- | --- |
| ``count`` | | number of Gaussians |
| ``means`` {mins, maxs, files} | means_l, means_u (RGB) | 16-bit code u = l + 256 h per axis; v = min + (max - min) u / 65535; position = sign(v) (e^abs(v) - 1) |
| ``scales`` {codebook[256], files} | scales (RGB) | log scale = codebook[byte] per axis |
| ``quats`` {files} | quats (RGBA) | A = 252 + index of the largest component (w x y z); RGB the other three in order, each (b / 255 * 2 - 1) / sqrt(2); the largest sqrt(1 - sum of squares) |
| ``sh0`` {codebook[256], files} | sh0 (RGBA) | f_dc = codebook[RGB byte]; opacity = logit(A / 255) (A / 255 clamped to [1e-6, 1 - 1e-6]) |
| ``shN`` {count, bands, codebook[256], files} | centroids, labels | label = R + 256 G; palette entry ``label`` is the texels (label % 64) * K + j, row label // 64 (j < K = 3, 8, 15); f_rest (channel-major) = codebook[texel RGB]; a label >= count gives zeros |

Version 1 (no ``version`` key) stores min/max lerps instead of codebooks:
scales and sh0 (whose A is the opacity logit itself) per channel, shN one scalar
range, and the palette size from the centroid image (width 64 K).

Pillow decodes the WebP images. Sizes are checked before anything is decoded:
zip members and image pixel counts against ``count`` (bounded by the file size).
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile

import numpy as np

from ..attributes import Gaussians

SH_COEFFS = {0: 0, 1: 3, 2: 8, 3: 15}
MAX_META_BYTES = 16 << 20
MAX_POINTS = 1 << 26


class SogError(ValueError):
    """A malformed or unsupported SOG scene."""


# ------------------------------------------------------------------------------------------ containers
class _Files:
    """Named members of a .sog zip or files next to a meta.json, with bounded reads."""

    def __init__(self, path: str):
        self.path = path
        self.zip = None
        if os.path.isdir(path):
            self.dir = path
        elif os.path.basename(path).lower() == "meta.json" or path.lower().endswith(".json"):
            self.dir = os.path.dirname(path) or "."
            self.meta_name = os.path.basename(path)
        else:
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise SogError(f"{path}: corrupt SOG: not a zip archive ({e})") from None
            self.dir = None
        if self.zip is None and os.path.isdir(path):
            self.meta_name = "meta.json"

    def size(self, name: str) -> int:
        if self.zip is not None:
            try:
                return self.zip.getinfo(name).file_size
            except KeyError:
                raise SogError(f"{self.path}: corrupt SOG: no member {name!r}") from None
        full = self._full(name)
        if not os.path.isfile(full):
            raise SogError(f"{self.path}: corrupt SOG: {name!r} is missing")
        return os.path.getsize(full)

    def _full(self, name: str) -> str:
        if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
            raise SogError(f"{self.path}: corrupt SOG: file name {name!r} leaves the scene's folder")
        return os.path.join(self.dir, name)

    def read(self, name: str, limit: int) -> bytes:
        size = self.size(name)
        if size > limit:
            raise SogError(f"{self.path}: corrupt SOG: {name!r} is {size:,} bytes, more than {limit:,}")
        try:
            if self.zip is not None:
                with self.zip.open(name) as f:
                    data = f.read(limit + 1)
            else:
                with open(self._full(name), "rb") as f:
                    data = f.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
            raise SogError(f"{self.path}: corrupt SOG: cannot read {name!r} ({e})") from None
        if len(data) > limit:
            raise SogError(f"{self.path}: corrupt SOG: {name!r} is larger than declared")
        return data

    def total_bytes(self, names: list[str]) -> int:
        if self.zip is not None:
            return os.path.getsize(self.path)
        return sum(self.size(n) for n in [self.meta_name] + names)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _image(files: _Files, name: str, count: int, channels: int) -> tuple[np.ndarray, int, int]:
    """The (pixels, channels) uint8 array of one WebP member, checked to hold ``count`` pixels and not absurdly more."""
    try:
        from PIL import Image
    except ImportError:   # pragma: no cover - depends on the environment
        raise SogError(f"{files.path}: reading SOG needs Pillow (pip install Pillow)") from None
    data = files.read(name, 1 << 31)
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h < count:
            raise SogError(f"{files.path}: corrupt SOG: {name!r} has {w}x{h} pixels for {count:,} Gaussians")
        if w * h > 4 * count + (1 << 20):
            raise SogError(f"{files.path}: corrupt SOG: {name!r} is {w}x{h}, far more pixels than {count:,} Gaussians")
        img = img.convert("RGBA" if channels == 4 else "RGB")
        arr = np.asarray(img, dtype=np.uint8).reshape(w * h, channels)
    except SogError:
        raise
    except Exception as e:   # Pillow raises many kinds on a bad image
        raise SogError(f"{files.path}: corrupt SOG: cannot decode {name!r} ({e})") from None
    return arr, w, h


def _floats(meta: dict, key: str, n: int, path: str) -> np.ndarray:
    v = np.asarray(meta[key], dtype=np.float64).reshape(-1)
    if len(v) != n or not np.isfinite(v).all():
        raise SogError(f"{path}: corrupt SOG: {key!r} must be {n} finite numbers")
    return v


# ------------------------------------------------------------------------------------------ decode
def _positions(files, meta, n):
    m = meta["means"]
    lo = _image(files, m["files"][0], n, 3)[0][:n].astype(np.int64)
    hi = _image(files, m["files"][1], n, 3)[0][:n].astype(np.int64)
    code = (lo | (hi << 8)).astype(np.float64) / 65535.0
    mins, maxs = _floats(m, "mins", 3, files.path), _floats(m, "maxs", 3, files.path)
    span = np.where(maxs - mins == 0, 1.0, maxs - mins)
    v = mins + span * code
    return np.sign(v) * np.expm1(np.abs(v))


def _rotations(files, meta, n):
    q = _image(files, meta["quats"]["files"][0], n, 4)[0][:n]
    tag = q[:, 3].astype(np.int64)
    abc = (q[:, :3].astype(np.float64) / 255.0 * 2.0 - 1.0) / math.sqrt(2.0)
    valid = (tag >= 252) & (tag <= 255)
    largest = np.where(valid, tag - 252, 0)
    out = np.zeros((n, 4), np.float64)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]
    out[np.arange(n)[:, None], others] = abc
    out[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(1)))
    out[~valid] = (1.0, 0.0, 0.0, 0.0)          # an invalid tag: the identity (as splat-transform)
    return out


def _codebook(meta: dict, key: str, path: str) -> np.ndarray:
    return _floats(meta[key], "codebook", 256, path).astype(np.float32)


def _sh_rest_v2(files, meta, n):
    s = meta.get("shN")
    if not s:
        return np.zeros((n, 0), np.float32)
    bands = s.get("bands")
    if bands not in SH_COEFFS:
        raise SogError(f"{files.path}: corrupt SOG: shN bands {bands!r} (1, 2 or 3 expected)")
    k = SH_COEFFS[bands]
    if k == 0:
        return np.zeros((n, 0), np.float32)
    palette = int(s["count"])
    if not 0 <= palette <= 65536:
        raise SogError(f"{files.path}: corrupt SOG: shN count {palette} (at most 65536)")
    return _sh_lookup(files, s, n, k, palette, _codebook(meta, "shN", files.path))


def _sh_lookup(files, s, n, k, palette, table):
    """f_rest (n, 3k) channel-major from labels -> centroid texels -> ``table`` (a 256-entry byte -> float map)."""
    rows = max(1, -(-palette // 64))
    cen, cw, ch = _image(files, s["files"][0], min(palette, 64 * rows) * k if palette else 0, 3)
    if cw != 64 * k:
        raise SogError(f"{files.path}: corrupt SOG: shN centroids are {cw} wide, "
                       f"{64 * k} expected for {k} coefficients")
    labels = _image(files, s["files"][1], n, 3)[0][:n].astype(np.int64)
    label = labels[:, 0] | (labels[:, 1] << 8)
    ok = (label < palette) & (label // 64 < ch)
    lab = np.where(ok, label, 0)
    texel = (lab // 64)[:, None] * cw + (lab % 64)[:, None] * k + np.arange(k)[None, :]   # (n, k)
    if len(cen) == 0:
        return np.zeros((n, 3 * k), np.float32)
    rgb = table[cen[np.minimum(texel, len(cen) - 1)]]                                      # (n, k, 3)
    rgb[~ok] = 0.0
    return np.ascontiguousarray(rgb.transpose(0, 2, 1)).reshape(n, 3 * k)


def _decode_v2(files, meta, n):
    positions = _positions(files, meta, n)
    rotations = _rotations(files, meta, n)
    scales = _codebook(meta, "scales", files.path)[_image(files, meta["scales"]["files"][0], n, 3)[0][:n]]
    c0 = _image(files, meta["sh0"]["files"][0], n, 4)[0][:n]
    sh_dc = _codebook(meta, "sh0", files.path)[c0[:, :3]]
    a = np.clip(c0[:, 3].astype(np.float64) / 255.0, 1e-6, 1 - 1e-6)
    opacities = np.log(a / (1 - a))
    return Gaussians(positions, scales, rotations, opacities, sh_dc, _sh_rest_v2(files, meta, n))


def _decode_v1(files, meta, n):
    positions = _positions(files, meta, n)
    rotations = _rotations(files, meta, n)
    s = meta["scales"]
    smin, smax = _floats(s, "mins", 3, files.path), _floats(s, "maxs", 3, files.path)
    scales = smin + (smax - smin) * (_image(files, s["files"][0], n, 3)[0][:n] / 255.0)
    c = meta["sh0"]
    cmin, cmax = _floats(c, "mins", 4, files.path), _floats(c, "maxs", 4, files.path)
    c0 = cmin + (cmax - cmin) * (_image(files, c["files"][0], n, 4)[0][:n] / 255.0)
    sh_rest = np.zeros((n, 0), np.float32)
    if meta.get("shN"):
        sn = meta["shN"]
        cw = _image(files, sn["files"][0], 0, 3)[1]
        bands = {192: 1, 512: 2, 960: 3}.get(cw)
        if bands is None:
            raise SogError(f"{files.path}: corrupt SOG: shN centroids are {cw} wide (192, 512 or 960 expected)")
        k = SH_COEFFS[bands]
        lo, hi = float(sn["mins"]), float(sn["maxs"])
        table = (lo + (hi - lo) * (np.arange(256) / 255.0)).astype(np.float32)
        ch = _image(files, sn["files"][0], 0, 3)[2]
        sh_rest = _sh_lookup(files, sn, n, k, (cw // k) * ch, table)
    return Gaussians(positions, scales, rotations, c0[:, 3], c0[:, :3], sh_rest)


def read_sog(path, max_points: int = MAX_POINTS) -> Gaussians:
    """Gaussians (PLY conventions) from a .sog zip, a meta.json, or a folder holding one; SogError when malformed."""
    path = os.fspath(path)
    files = _Files(path)
    try:
        try:
            meta = json.loads(files.read(files.meta_name if files.zip is None else "meta.json", MAX_META_BYTES))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SogError(f"{path}: corrupt SOG: meta.json is not JSON ({e})") from None
        if not isinstance(meta, dict):
            raise SogError(f"{path}: corrupt SOG: meta.json is not an object")
        version = meta.get("version")
        try:
            if version == 2:
                n = meta["count"]
            elif version is None:
                n = meta["means"]["shape"][0]
            else:
                raise SogError(f"{path}: unsupported SOG version {version!r} (1 and 2 are read)")
            if not isinstance(n, int) or not 0 <= n <= max_points:
                raise SogError(f"{path}: corrupt SOG: count {n!r} (0..{max_points} expected)")
            return (_decode_v2 if version == 2 else _decode_v1)(files, meta, n)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            if isinstance(e, SogError):
                raise
            raise SogError(f"{path}: corrupt SOG: bad meta.json ({type(e).__name__}: {e})") from None
    finally:
        files.close()


def sog_bytes(path) -> int:
    """Bytes the scene occupies on disk: the .sog file, or meta.json plus the images it names."""
    path = os.fspath(path)
    if os.path.isfile(path) and not path.lower().endswith(".json"):
        return os.path.getsize(path)
    files = _Files(path)
    try:
        meta = json.loads(files.read(files.meta_name, MAX_META_BYTES))
        names = [f for v in meta.values() if isinstance(v, dict) for f in v.get("files", [])]
        return files.total_bytes(names)
    except (SogError, ValueError, TypeError):
        return 0
