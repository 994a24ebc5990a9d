"""Tests of ``equidmri bench synthesis``: one --quick run (small_64D and a 12³ phantom, one seed) and its helpers."""

import math
from pathlib import Path

import numpy as np
import pytest
from bench_run import run_bench

from equidmri.bench.synthesis import paired_wilcoxon, summarise
from equidmri.bench.synthesis_report import control_verdicts
from equidmri.synth import MODES

SECTIONS = (
    "## Subjects and their calibration",
    "## The autoencoder on the subjects' voxels, against the measured signal",
    "## Is `random-wm` the control that fails?",
    "## Paired tests across modes",
    "## The held-out phantom against its noise-free truth",
    "## Diagnostic: held-out synthetic voxels",
    "## Practical use: an FA estimator",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthesis_bench")
    result, markdown, _ = run_bench("synthesis", ["--quick", "--threads", "1"], out)
    return result, markdown, out


@pytest.mark.slow
def test_every_section_is_written_with_finite_values(quick_run):
    result, markdown, out = quick_run
    assert f"Command: `{result['command']}`" in markdown and "CPU cores" in markdown
    for section in SECTIONS:
        assert section in markdown
    assert [s["name"] for s in result["subjects"]] == ["small_64D", "phantom"]
    keys = {(r["subject"], r["reference"], r["region"], r["mode"]) for r in result["summary"]}
    for subject, references in (("small_64D", ("measured",)), ("phantom", ("measured", "truth"))):
        for reference in references:
            assert {(subject, reference, region, mode) for region in ("wm", "all") for mode in MODES} <= keys
    for row in result["summary"]:
        for key in ("signal_mae", "fa_mae", "direction_error_deg_mean", "direction_error_deg_median"):
            assert math.isfinite(row[key]) and row[key] >= 0
        assert 0 <= row["direction_error_deg_mean"] <= 90
    wm = {r["subject"]: r["n"] for r in result["records"] if r["region"] == "wm" and r["reference"] == "measured"}
    all_ = {r["subject"]: r["n"] for r in result["records"] if r["region"] == "all" and r["reference"] == "measured"}
    assert all(0 < wm[s] < all_[s] for s in wm)
    assert all_["small_64D"] == 1000  # every voxel of the 10³ crop
    assert len(result["cross_summary"]) == 2 * len(MODES) ** 2
    methods = {(r["subject"], r["method"]) for r in result["fa_estimator_summary"]}
    assert ("phantom", "dipy DTI (noisy signal)") in methods and ("small_64D", "random-wm") in methods
    assert all(math.isfinite(r["fa_mae_all"]) for r in result["fa_estimator_summary"])
    figure = markdown.split("![")[1].split("(")[1].split(")")[0]
    assert (Path(out) / "results" / figure).stat().st_size > 10_000


@pytest.mark.slow
def test_paired_tests_cover_every_pair_and_metric(quick_run):
    result, _, _ = quick_run
    wm = [t for t in result["tests"] if t["subject"] == "small_64D" and t["region"] == "wm"]
    assert len(wm) == 6 * 3  # 4 modes: 6 pairs; signal, FA and direction
    assert all(t["p"] is None or 0 <= t["p"] <= 1 for t in result["tests"])
    assert {t["b"] for t in wm if t["a"] == "syn"} == {"sample-mean", "sample", "random-wm"}
    verdicts = control_verdicts(result)
    assert {(v["subject"], v["region"]) for v in verdicts} == {
        (s, r) for s in ("small_64D", "phantom") for r in ("wm", "all")
    }
    assert all(v["fa_ratio"] > 0 for v in verdicts)


@pytest.mark.slow
def test_each_autoencoder_denoises_held_out_voxels_of_its_own_mode(quick_run):
    # small_64D's SNR is 9.5: a trained autoencoder reconstructs the noise-free signal of unseen synthetic voxels
    # of its own mode better than the noisy input itself (|noisy - clean|), even after the quick run's 60 epochs
    result, _, _ = quick_run
    own = [r for r in result["cross_summary"] if r["subject"] == "small_64D" and r["train_mode"] == r["test_mode"]]
    assert len(own) == len(MODES)
    for row in own:
        assert row["signal_mae_clean"] < 0.95 * row["noise_mae"], row
        assert row["noise_mae"] == pytest.approx(np.sqrt(2 / np.pi) / 9.5, rel=0.3)  # Gaussian MAE σ·√(2/π), σ = 1/SNR


def test_paired_wilcoxon_detects_a_shift_and_refuses_no_difference():
    rng = np.random.default_rng(0)
    a = rng.random(200)
    shifted = paired_wilcoxon(a, a + 0.1 + 0.01 * rng.standard_normal(200))
    assert shifted["p"] < 1e-10 and shifted["median_difference"] == pytest.approx(-0.1, abs=0.01)
    same = paired_wilcoxon(a, a)
    assert same["p"] is None and same["median_difference"] == 0 and same["n"] == 200


def test_summarise_gives_mean_and_sample_sd_over_seeds():
    records = [{"k": "x", "v": 1.0}, {"k": "x", "v": 3.0}, {"k": "y", "v": 2.0}]
    rows = {r["k"]: r for r in summarise(records, ("k",), ("v",))}
    assert rows["x"]["v"] == 2.0 and rows["x"]["v_sd"] == pytest.approx(math.sqrt(2.0)) and rows["x"]["seeds"] == 2
    assert rows["y"]["v_sd"] == 0.0
