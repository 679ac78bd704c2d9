"""Cross-check the reference rasterizer against gsplat's CUDA rasterizer (needs a GPU and gsplat).

    python -m quality.gsplat_check [--n 20000] [--size 256] [--views 4] [--scenes 3]

Renders synthetic scenes (SH degree 0..3) from orbit cameras with both renderers and
prints the PSNR between the two images per view and the mean per scene. gsplat's
conventions match SPEC.md Appendix B: OpenCV camera, eps2d = 0.3 low-pass, classic
(non-antialiased) mode, SH with colour = max(SH + 0.5, 0).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from codec.synthetic import synthetic_scene

from .cameras import NEAR_PLANE, orbit_cameras
from .metrics import psnr
from .rasterizer import render


def gsplat_render(g, cam, device="cuda") -> np.ndarray:
    import torch
    from gsplat import rasterization

    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)
    n = len(g)
    k = (g.sh_degree + 1) ** 2
    rest = g.sh_rest.reshape(n, 3, k - 1).transpose(0, 2, 1)  # channel-major -> (N, K-1, 3)
    sh = np.concatenate([g.sh_dc[:, None, :], rest], axis=1)
    img, _, _ = rasterization(
        t(g.positions), t(g.rotations), t(np.exp(g.scales)), t(1 / (1 + np.exp(-g.opacities))), t(sh),
        t(cam.world_to_camera)[None], t(cam.K)[None], cam.width, cam.height,
        near_plane=NEAR_PLANE, far_plane=1e10, sh_degree=g.sh_degree, eps2d=0.3,
        rasterize_mode="classic")  # background: black, as the reference default
    return img[0].cpu().numpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--scenes", type=int, default=3)
    args = ap.parse_args(argv)
    means = []
    for s in range(args.scenes):
        degree = [3, 1, 0, 2][s % 4]
        g = synthetic_scene(args.n, degree, seed=100 + s, extent=10.0)
        cams = orbit_cameras((0.0, 0.0, 1.0), 14.0, args.views, args.size, args.size)
        vals = []
        for i, cam in enumerate(cams):
            t0 = time.perf_counter()
            ours = render(g, cam)
            t1 = time.perf_counter()
            theirs = gsplat_render(g, cam)
            vals.append(psnr(np.clip(ours, 0, 1), np.clip(theirs, 0, 1)))
            print(f"scene {s} (SH{degree}, n={args.n}) view {i}: PSNR {vals[-1]:.2f} dB "
                  f"(reference {t1 - t0:.2f} s; mean pixel {ours.mean():.4f} vs {theirs.mean():.4f})", flush=True)
        means.append(float(np.mean(vals)))
        print(f"scene {s}: mean PSNR reference vs gsplat {means[-1]:.2f} dB")
    print(f"all scenes: min mean PSNR {min(means):.2f} dB (bound: >= 45 dB)")
    return 0 if min(means) >= 45 else 1


if __name__ == "__main__":
    raise SystemExit(main())
