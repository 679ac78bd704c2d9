"""Writes the gap-code data (SPEC.md 4.4, compression 2, format 1.4) that the viewer decoder's node test
reference_viewer/tests/gaps.test.mjs reads, into reference_viewer/tests/data/gaps/:

- streams of the Python codec's Encoder(ranked_ids=True, gap_code=True): keyframes, then deltas whose
  UPDATE and DELETE_IDS blocks are ranked (6.1), their ranks gap coded where that is smaller than zstd
  (sparse and dense updates, deletes, adds, a single rank, a resync keyframe; a palette stream too);
- sections: the bytes of the Python codec's gap_encode for sets of ascending values at widths 1, 2
  and 4 and several orders k (the order gap_order picks among them), with their values.

``cases.json`` lists every stream with its expected protocol lines (conformance/README.md), the
Python reference decoder's, and the sections as hex.

    .venv/bin/python reference_viewer/tests/gap_streams.py
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codec import Encoder, Grid, Limits, Profile  # noqa: E402
from codec.attributes import Attr  # noqa: E402
from codec.sections import gap_encode, gap_order  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402
from conformance.testee_python import decode  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "gaps"
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def reference_lines(data: bytes) -> list[str]:
    buf = io.StringIO()
    decode(data, Limits.lowered(), buf)
    return buf.getvalue().split("\n")[:-1]


def ranked_stream(preset: str, d: int, n: int, seed: int) -> bytes:
    """A scene and a sequence of deltas whose ranks take every shape the gap code meets."""
    g = synthetic_scene(n, d, seed, 6.0)
    enc = Encoder(Profile.preset(preset, d, grid=Grid.fit(g.positions)), ranked_ids=True, gap_code=True)
    out = enc.header_bytes() + enc.keyframe(g)
    rng = np.random.default_rng(seed)

    def live():
        return enc.state.to_gaussians()

    def move(ids, cur, pick, dz):
        return enc.encode(update=(ids[pick], {Attr.POSITION: cur.positions[pick] + np.float32(dz)}))

    ids, cur = live()
    out += move(ids, cur, np.sort(rng.choice(len(ids), len(ids) // 10, replace=False)), 0.05)  # scattered
    ids, cur = live()
    out += move(ids, cur, np.arange(len(ids) // 4, len(ids) // 2), -0.02)  # one run: every gap 0
    ids, cur = live()
    runs = np.unique(np.concatenate([np.arange(s, s + int(rng.integers(1, 9)))
                                     for s in rng.choice(len(ids) - 9, 40, replace=False)]))
    out += move(ids, cur, runs, 0.01)  # short runs, as a world's edits
    ids, cur = live()
    out += move(ids, cur, np.sort(rng.choice(len(ids), 12, replace=False)), 0.03)  # a few far apart
    ids, cur = live()
    out += move(ids, cur, np.array([len(ids) - 1]), 0.1)  # one rank, the last
    ids, cur = live()
    out += enc.encode(delete=ids[np.sort(rng.choice(len(ids), len(ids) // 20, replace=False))])
    ids, cur = live()
    add = synthetic_scene(n // 10, d, seed + 1, 6.0)
    pick = np.sort(rng.choice(len(ids), len(ids) // 8, replace=False))
    out += enc.encode(add=(enc.assign_ids(add.positions), add),
                      update=(ids[pick], {Attr.OPACITY: cur.opacities[pick] * np.float32(0.9)}),
                      delete=ids[np.setdiff1d(np.arange(0, len(ids), 13), pick)])
    out += enc.keyframe()  # the state as a keyframe (a resync): ids, not ranks
    ids, cur = live()
    out += move(ids, cur, np.arange(0, len(ids), 3), -0.04)  # every third: gaps of 2
    return out


def section_cases() -> list[dict]:
    """Python gap_encode bytes for sets of ascending values, each at several orders."""
    rng = np.random.default_rng(14)
    out = []
    for width in (1, 2, 4):
        top = 1 << (8 * width)
        sets = [np.zeros(0, np.int64), np.array([0]), np.array([top - 1]), np.array([0, top - 1]),
                np.arange(min(top, 120)), np.sort(rng.choice(top, min(100, top), replace=False)),
                np.sort(rng.choice(min(top, 2000), 80, replace=False)),
                np.array([3, 4, 10])]
        for values in sets:
            row = values.astype(UINT[width])
            best = int(gap_order(row, width))
            for k in sorted({0, 1, best, 4 * width, 8 * width - 1}):
                out.append({"width": width, "k": k, "best": k == best, "values": row.tolist(),
                            "hex": gap_encode(row[None, :], k).hex()})
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, data in [("compact_deg1", ranked_stream("compact", 1, 2400, 21)),
                       ("small_deg2_palette", ranked_stream("small", 2, 1500, 22)),
                       ("compact_deg0_sparse", ranked_stream("compact", 0, 4000, 23))]:
        (OUT / f"{name}.gsd").write_bytes(data)
        lines = reference_lines(data)
        assert not any("error" in x for x in lines), (name, lines)
        cases.append({"name": name, "file": f"{name}.gsd", "lines": lines})
    sections = section_cases()
    (OUT / "cases.json").write_text(json.dumps({"cases": cases, "sections": sections}) + "\n")
    print(f"wrote {len(cases)} streams and {len(sections)} sections to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
