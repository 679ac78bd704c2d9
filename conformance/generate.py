"""Rebuilds conformance/vectors/*.gsd and manifest.json, byte for byte the same every run.

    python -m conformance.generate [--out DIR] [--check]

Every vector is a stream file plus a manifest entry saying what a conforming
decoder must report. The vectors are built by one module per SPEC.md chapter
(conformance/vectors_*.py) on a shared ``vector_stream.Stream``: valid vectors
get their digests (and, when small, the final state) from conformance.refmodel,
a naive second reading of the spec; invalid vectors are written with exactly one
defect each, so the expected error code does not depend on the order of
unrelated checks (where the spec fixes an order, the "order_*" vectors test it).
Randomness is seeded per vector from its id, so editing one vector leaves the
others unchanged. ``--check`` also runs every vector through the Python codec
in-process.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from codec import Limits

from .vector_stream import VectorWriter
from .vectors_channel import gen_channel, gen_channel_invalid
from .vectors_compose import gen_compose
from .vectors_digest import gen_digest
from .vectors_gaps import gen_gaps, gen_gaps_invalid
from .vectors_implicit import gen_implicit, gen_implicit_invalid
from .vectors_limits import gen_limits_valid_and_invalid
from .vectors_metadata import gen_header, gen_metadata
from .vectors_ops import gen_empty, gen_masks, gen_ops, gen_replace, gen_state_invalid
from .vectors_palette import gen_palette, gen_palette_invalid
from .vectors_quantization import gen_profiles, gen_values
from .vectors_ranked import gen_ranked, gen_ranked_invalid
from .vectors_records import gen_checksum, gen_framing
from .vectors_sections import gen_compression, gen_encoding
from .vectors_sequencing import gen_keyframes, gen_sequence
from .vectors_spatial_ids import gen_ids, gen_ids_invalid
from .vectors_spec_examples import gen_spec_examples
from .vectors_verification import gen_verification
from .vectors_versioning import gen_version_feature

VECTOR_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")

# The manifest lists vectors in this order: valid ones first, then the invalid ones.
GROUPS = [gen_ops, gen_masks, gen_profiles, gen_ids, gen_keyframes, gen_compose, gen_empty, gen_replace,
          gen_encoding, gen_limits_valid_and_invalid, gen_palette, gen_implicit, gen_ranked, gen_channel, gen_gaps,
          gen_framing, gen_checksum, gen_version_feature, gen_header, gen_metadata, gen_verification, gen_ids_invalid,
          gen_state_invalid, gen_values, gen_compression, gen_sequence, gen_digest, gen_palette_invalid,
          gen_implicit_invalid, gen_ranked_invalid, gen_channel_invalid, gen_gaps_invalid, gen_spec_examples]


def generate(out: str = VECTOR_DIR) -> dict:
    """Write every vector and the manifest into ``out`` (replacing its .gsd files); returns the manifest."""
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".gsd") or name == "manifest.json":
            os.remove(os.path.join(out, name))
    g = VectorWriter(out)
    for group in GROUPS:
        group(g)
    m = g.manifest()
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return m


def check_with_codec(out: str, manifest: dict) -> list[str]:
    """Run every vector through the Python codec in-process; returns the disagreements."""
    from codec import GsdError, Decoder
    problems = []
    for v in manifest["vectors"]:
        with open(os.path.join(out, v["file"]), "rb") as f:
            data = f.read()
        lim = Limits(**v.get("limits", {}))
        got, digests = None, []
        try:
            dec = Decoder(limits=lim)
            pos = dec.set_header(data)
            k = 0
            while pos < len(data):
                try:
                    _, used = dec.read_frame(memoryview(data)[pos:])
                except GsdError as e:
                    got = (k, e.code.name)
                    break
                digests.append(str(dec.state.digest()))
                pos += used
                k += 1
        except GsdError as e:
            got = (-1, e.code.name)
        exp = v["expected"]
        want = None if exp["result"] == "valid" else (exp["frame"], exp["error"])
        if got != want or digests != exp["digests"]:
            problems.append(f"{v['id']}: expected {want} {exp['digests'][-1:]}, codec gave {got} {digests[-1:]}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=VECTOR_DIR)
    ap.add_argument("--check", action="store_true", help="also run every vector through the Python codec")
    a = ap.parse_args(argv)
    m = generate(a.out)
    vs = m["vectors"]
    cats: dict[str, int] = {}
    for v in vs:
        cats[v["category"]] = cats.get(v["category"], 0) + 1
    size = sum(os.path.getsize(os.path.join(a.out, v["file"])) for v in vs)
    n_valid = sum(v["expected"]["result"] == "valid" for v in vs)
    print(f"{len(vs)} vectors ({n_valid} valid, {len(vs) - n_valid} invalid), {size / 1e6:.2f} MB of streams, "
          f"manifest {os.path.getsize(os.path.join(a.out, 'manifest.json')) / 1e6:.2f} MB")
    print("  " + ", ".join(f"{k} {n}" for k, n in cats.items()))
    if a.check:
        problems = check_with_codec(a.out, m)
        for p in problems:
            print("MISMATCH", p)
        print(f"codec check: {len(vs) - len(problems)} agree, {len(problems)} disagree")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
