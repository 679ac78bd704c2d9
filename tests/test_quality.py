"""Image metrics and the quality harness (python -m quality, gsd quality, python -m quality.compare).

Tiny scenes (a few hundred Gaussians) on 32x32 images keep the module to seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from codec import Attr, Encoder, Grid, Profile
from codec.synthetic import synthetic_scene
from quality import compare
from quality.__main__ import main as quality_main
from quality.metrics import psnr, save_png, ssim


# ------------------------------------------------------------------------------------------ metrics
def test_psnr_of_known_error():
    a = np.full((8, 8, 3), 0.5)
    assert psnr(a, a) == float("inf")
    np.testing.assert_allclose(psnr(a, a + 0.1), 20.0)              # MSE 0.01
    np.testing.assert_allclose(psnr(a, a + 0.01), 40.0)
    np.testing.assert_allclose(psnr(np.full((4, 4, 3), 1.5), np.ones((4, 4, 3))), np.inf)  # both clip to 1
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_ssim_properties():
    rng = np.random.default_rng(0)
    x = rng.random((40, 36, 3))
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ssim(x, y) == pytest.approx(ssim(y, x), abs=1e-12)
    scores = [ssim(x, np.clip(x + rng.normal(0, s, x.shape), 0, 1)) for s in (0.01, 0.05, 0.2)]
    assert 1 > scores[0] > scores[1] > scores[2] > 0
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))                    # smaller than the 11x11 window


def test_ssim_of_constant_images_is_the_luminance_term():
    """No variance: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) (the contrast term is 1)."""
    a, b = 0.3, 0.7
    c1 = 0.01 ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(np.full((16, 16), a), np.full((16, 16), b)) == pytest.approx(expected, rel=1e-12)


def test_ssim_equals_a_direct_window_by_window_computation():
    rng = np.random.default_rng(1)
    x, y = rng.random((14, 13)), rng.random((14, 13))
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for i in range(14 - 10):
        for j in range(13 - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append((2 * mx * my + 1e-4) * (2 * cxy + 9e-4) / ((mx * mx + my * my + 1e-4) * (vx + vy + 9e-4)))
    assert ssim(x, y) == pytest.approx(np.mean(vals), abs=1e-12)


def test_save_png_writes_a_valid_file(tmp_path):
    import zlib
    img = np.linspace(0, 1, 5 * 4 * 3).reshape(5, 4, 3)
    path = tmp_path / "x.png"
    save_png(path, img)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(5, 1 + 4 * 3)
    assert (raw[:, 0] == 0).all()
    np.testing.assert_array_equal(raw[:, 1:].reshape(5, 4, 3), (img * 255 + 0.5).astype(np.uint8))


# ------------------------------------------------------------------------------------------ harness
@pytest.fixture(scope="module")
def small():
    g = synthetic_scene(400, 2, seed=5, extent=4.0)
    cams = compare.default_views(g, 2, 32, 32)
    ref = compare.render_views(g, cams)
    return g, cams, ref


def test_formats_rank_as_their_precision(small):
    g, cams, ref = small
    results = compare.run_formats(g, repeat=1)
    compare.score(results, ref, cams)
    by = {r.name: r for r in results}
    assert set(by) == {"PLY float32", "GSD lossless", "GSD high", "GSD compact", "SPZ v3 (gzip)", "SPZ v4 (zstd)",
                       ".splat"}
    for exact in ("PLY float32", "GSD lossless"):
        assert all(np.isinf(by[exact].psnr)) and by[exact].ssim == pytest.approx([1.0, 1.0])
    m = {k: compare.mean_psnr(r.psnr) for k, r in by.items()}
    assert np.isfinite(m["GSD high"]) and m["GSD high"] > m["GSD compact"] > m[".splat"]
    assert m["GSD compact"] > 30
    assert by["GSD compact"].nbytes < by["GSD high"].nbytes < by["GSD lossless"].nbytes < by["PLY float32"].nbytes
    assert by[".splat"].nbytes == 32 * len(g)
    for r in results:
        assert r.encode_s > 0 and r.decode_s > 0 and len(r.decoded) == len(g)


def test_quantize_only_changes_exactly_one_attribute(small):
    g, _, _ = small
    profile = Profile.preset("compact", g.sh_degree, Grid.fit(g.positions))
    ids = Encoder(profile).assign_ids(g.positions)
    for attr in (Attr.POSITION, Attr.SH_REST):
        q = compare.quantize_only(g, profile, attr, ids)
        for a in Attr:
            same = np.array_equal(q.attribute(a), g.attribute(a))
            assert same == (a is not attr), a
    err = np.abs(compare.quantize_only(g, profile, Attr.POSITION, ids).positions - g.positions)
    assert 0 < err.max() <= profile.error_bound(Attr.POSITION) * 1.001 + 1e-6


def test_attribution_ranks_attributes(small):
    g, cams, ref = small
    attr = dict(compare.attribution(g, ref, cams))
    assert list(attr) == ["position", "scale", "rotation", "opacity", "sh_dc", "sh_rest"]
    assert all(v > 20 for v in attr.values())


def test_implied_ground_truth_loss():
    assert compare.loss_vs_ground_truth(float("inf"), 27.0) == 0.0
    assert compare.loss_vs_ground_truth(27.0, 27.0) == pytest.approx(10 * np.log10(2))   # equal errors: +3 dB
    assert compare.loss_vs_ground_truth(27.0 + 11.46, 27.0) == pytest.approx(0.3, abs=0.002)


def test_quality_command_prints_a_row_per_format(capsys):
    assert quality_main(["--n", "300", "--views", "2", "--width", "24", "--height", "20", "--no-attribution"]) == 0
    out = capsys.readouterr().out
    for name in ("GSD compact", "GSD high", "GSD lossless", "SPZ v3", "SPZ v4", ".splat", "PLY float32"):
        assert name in out


def test_gsd_quality_progress_lines_on_stderr_without_a_terminal(capsys):
    """Plain progress lines on stderr though stderr is no terminal here (pytest captures it); -q drops them."""
    assert quality_main(["--n", "200", "--views", "1", "--width", "12", "--height", "12", "--profiles", "compact"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert all(line.startswith("gsd-quality: ") for line in err) and "\r" not in "".join(err)
    assert any("GSD compact: encoded and decoded (2/5)" in line for line in err)
    assert any("rendered and scored (5/5)" in line for line in err)
    assert any("only sh_rest quantized" in line for line in err) and err[-1].endswith("done")
    assert quality_main(["--n", "200", "--views", "1", "--width", "12", "--height", "12", "--no-attribution",
                         "--profiles", "compact", "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_gsd_quality_json_from_a_ply(tmp_path, capsys):
    from codec.ply import write_ply
    g = synthetic_scene(300, 1, seed=2, extent=3.0)
    path = tmp_path / "s.ply"
    write_ply(path, g)
    rc = quality_main([str(path), "--views", "2", "--width", "16", "--height", "16", "--json",
                   "--profiles", "compact", "--up", "0,0,1", "--save-images", str(tmp_path / "img")])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["gaussians"] == 300 and res["sh_degree"] == 1
    names = [f["format"] for f in res["formats"]]
    assert names == ["PLY float32", "GSD compact", "SPZ v3 (gzip)", "SPZ v4 (zstd)", ".splat"]
    compact = res["formats"][1]
    assert compact["bytes_per_gaussian"] > 0 and 20 < compact["psnr_mean"] < 200
    assert set(res["attribution_compact"]) == {"position", "scale", "rotation", "opacity", "sh_dc", "sh_rest"}
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == [
        "view00_compact.png", "view00_float.png", "view01_compact.png", "view01_float.png"]


def test_compare_writes_the_quality_report(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "SCENES", (("tiny", 300, 1, 0, 3.0), ("tiny sh0", 300, 0, 1, 2.0),
                                            ("tiny sh3", 300, 3, 2, 5.0)))
    out = tmp_path / "Q.md"
    assert compare.main(["--out", str(out), "--views", "2", "--size", "16", "--repeat", "1"]) == 0
    text = out.read_text()
    assert text.count("| GSD compact |") == 3 and text.count("| SPZ v4 (zstd) |") == 3
    assert "Costliest attribute" in text and "implied loss" in text
    assert text.count("Where GSD compact loses in this scene:") == 3
    assert text.count("**PASS**") + text.count("**MISS**") == 3
    assert text.count("(preset)") == 1                      # the what-if table: only the SH >= 2 scene has one


def test_losses_name_the_measures_where_a_peer_wins(small):
    g, _, _ = small
    results = {r.name: r for r in compare.run_formats(g, repeat=1)}
    for r in results.values():
        r.psnr = [30.0, 31.0]
    results["GSD compact"].encode_s = 1e9                    # everyone encodes faster
    results["SPZ v4 (zstd)"].psnr = [40.0, 40.0]              # SPZ renders closer
    text = "; ".join(compare.losses(list(results.values())))
    assert "SPZ v4 (zstd) renders closer" in text and "SPZ v3 (gzip) renders closer" not in text
    assert all(f"{p} encodes faster" in text for p in ("SPZ v4 (zstd)", "SPZ v3 (gzip)", ".splat", "PLY float32"))
    smaller = [p for p in ("SPZ v4 (zstd)", "SPZ v3 (gzip)", ".splat", "PLY float32")
               if results[p].nbytes < results["GSD compact"].nbytes]
    assert all(f"{p} is smaller" in text for p in smaller) and text.count("is smaller") == len(smaller)
