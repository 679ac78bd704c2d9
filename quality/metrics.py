"""Image metrics (PSNR, SSIM) and a dependency-free PNG writer.

Both metrics compare images clipped to [0, 1] (what a display shows; the
rasterizer does not clip). SSIM is the standard one of Wang et al. 2004:
11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data range 1,
population (not sample) statistics, averaged over the pixels whose window lies
inside the image and over the channels; it equals scikit-image's
``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=-1)``.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np


def _clip(img) -> np.ndarray:
    return np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)


def mse(a, b) -> float:
    a, b = _clip(a), _clip(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return float(np.mean((a - b) ** 2))


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio in dB for peak 1; inf for identical images."""
    m = mse(a, b)
    return float("inf") if m == 0 else float(-10.0 * np.log10(m))


def psnr_of_mse(m: float) -> float:
    return float("inf") if m == 0 else float(-10.0 * np.log10(m))


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _filter_valid(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (H, W, C) with the 1D window w along both axes."""
    k = len(w)
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ w        # (H-k+1, W, C)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ w       # (H-k+1, W-k+1, C)


def ssim(a, b, k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean structural similarity of two (H, W, 3) or (H, W) images in [0, 1] (at least 11x11)."""
    a, b = _clip(a), _clip(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    w = _gaussian_window()
    if a.shape[0] < len(w) or a.shape[1] < len(w):
        raise ValueError("SSIM needs images of at least 11x11 pixels")
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = _filter_valid(a * a, w) - mu_a ** 2
    var_b = _filter_valid(b * b, w) - mu_b ** 2
    cov = _filter_valid(a * b, w) - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def save_png(path, img) -> None:
    """Write an (H, W, 3) float image, clipped to [0, 1], as an 8-bit RGB PNG."""
    a = (_clip(img) * 255.0 + 0.5).astype(np.uint8)
    h, w = a.shape[:2]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), a.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
