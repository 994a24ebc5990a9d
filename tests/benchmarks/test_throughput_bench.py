"""Tests of ``equidmri bench throughput``: one tiny run on small_64D (1 epoch, 1 repeat, 4-channel network)."""

import math
import subprocess
import sys

import numpy as np
import pytest
from bench_run import run_bench

from equidmri.bench.throughput import TOP_OPS, support_voxels
from equidmri.nn.models.unet import SHDUNet

TINY = ["--epochs", "1", "--repeats", "1", "--threads", "2", "--patch-size", "4", "--widths", "4", "4", "4", "4"]
STAGES = ["train", "ours_predict", "ours_predict_peaks", "csd_fit", "csd_fit_peaks"]
SMALL_64D_MASK_VOXELS = 1000  # every voxel: small_64D is a crop with no background (equidmri.dmri.mask.compute_mask)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    result = run_bench("throughput", TINY, tmp_path_factory.mktemp("throughput"))
    return result


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_rows_hold_positive_finite_times_and_throughputs(tiny_run):
    result, _, _ = tiny_run
    assert [row["stage"] for row in result["rows"]] == STAGES
    for row in result["rows"]:
        assert len(row["times_s"]) == 1 and _positive(row["median_s"]) and _positive(row["peak_rss_mib"])
        assert math.isfinite(row["peak_rss_increase_mib"])
        assert row["peak_rss_increase_mib"] == pytest.approx(row["peak_rss_mib"] - result["baseline_peak_rss_mib"])
        if row["stage"] == "train":
            assert row["voxels_per_s"] is None and row["ratio_to_csd"] is None
        else:
            assert row["voxels_per_s"] * row["median_s"] == pytest.approx(SMALL_64D_MASK_VOXELS)
            assert _positive(row["ratio_to_csd"])


@pytest.mark.slow
def test_ratios_divide_our_throughput_by_csd_for_the_same_work(tiny_run):
    result, _, _ = tiny_run
    rows = {row["stage"]: row for row in result["rows"]}
    for ours, csd in (("ours_predict", "csd_fit"), ("ours_predict_peaks", "csd_fit_peaks")):
        expected = rows[ours]["voxels_per_s"] / rows[csd]["voxels_per_s"]
        assert rows[ours]["ratio_to_csd"] == pytest.approx(expected)
        assert rows[csd]["ratio_to_csd"] == 1.0
    assert result["verdict"]["ratio"] == rows["ours_predict_peaks"]["ratio_to_csd"]
    assert result["verdict"]["met"] == (result["verdict"]["ratio"] >= 1.0)


@pytest.mark.slow
def test_record_states_settings_machine_and_data(tiny_run):
    result, _, _ = tiny_run
    settings = result["settings"]
    assert {k: settings[k] for k in ("epochs", "patch_size", "repeats", "threads")} == {
        "epochs": 1,
        "patch_size": 4,
        "repeats": 1,
        "threads": 2,
    }
    assert settings["tile"] >= 1
    assert result["settings"]["network"]["widths"] == [4, 4, 4, 4]
    assert set(result["stage_threads"].values()) == {2}
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu_model"]
    assert {"torch", "dipy", "numpy", "python", "equidmri"} <= set(result["machine"])
    assert result["data"]["shape"] == [10, 10, 10, 65]
    assert result["data"]["mask_voxels"] == SMALL_64D_MASK_VOXELS
    assert result["command"].startswith("equidmri bench throughput --epochs 1")
    for key in ("build_model_s", "load_checkpoint_s", "train_final_loss", "baseline_peak_rss_mib"):
        assert _positive(result[key])


@pytest.mark.slow
def test_markdown_states_command_machine_table_and_verdict(tiny_run):
    result, markdown, stdout = tiny_run
    assert f"`{result['command']}`" in markdown
    assert result["date"] in markdown and result["machine"]["cpu_model"] in markdown
    table = markdown.split("\n\n| stage |")[1].split("\n\n")[0]  # the first table, from its header's end
    assert table.count("\n| ") == len(STAGES)  # one line per row
    assert "## Where our inference time goes" in markdown and "## Voxels the masked pass computes" in markdown
    assert result["verdict"]["text"] in markdown and result["verdict"]["text"] in stdout


def test_rejects_zero_repeats():
    done = subprocess.run(
        [sys.executable, "-m", "equidmri.cli.main", "bench", "throughput", "--repeats", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "--repeats must be >= 1, got 0" in done.stderr


@pytest.mark.slow
def test_records_follow_the_efficiency_schema(tiny_run):
    result, _, _ = tiny_run
    records = {record["stage"]: record for record in result["records"]}
    assert set(records) == set(STAGES)
    for stage, record in records.items():
        assert record["bench"] == "throughput" and record["nside"] == 8
        assert record["variant"] == ("csd" if stage.startswith("csd") else "shd-tv")
        assert record["pass"] == ("train" if stage == "train" else "infer")
        assert _positive(record["median_s"]) and _positive(record["peak_mem_mb"])
        assert (record["voxels_per_s"] is None) == (stage == "train")


@pytest.mark.slow
def test_profile_names_every_stage_of_the_masked_pass(tiny_run):
    result, markdown, _ = tiny_run
    profile = result["profile"]
    levels = len(result["settings"]["network"]["widths"])
    expected = {"mask support", "input lift", "head and readout"}
    expected |= {f"level {level} encoder" for level in range(levels)}
    expected |= {f"level {level} decoder" for level in range(levels - 1)}
    assert set(profile["stages"]) == expected
    assert all(_positive(seconds) for seconds in profile["stages"].values())
    assert sum(profile["stages"].values()) <= profile["total_s"]  # disjoint ranges inside one timed call
    operators = [op["self_s"] for op in profile["operators"]]
    assert 0 < len(operators) <= TOP_OPS and operators == sorted(operators, reverse=True)
    assert all(op["calls"] >= 1 for op in profile["operators"])
    assert f"| `{profile['operators'][0]['name']}` |" in markdown


@pytest.mark.slow
def test_support_voxels_of_the_run_start_at_the_mask_and_grow(tiny_run):
    result, _, _ = tiny_run
    voxels = result["support_voxels"]
    assert voxels["tiled"] == voxels["one_tile"]  # small_64D (10³) fits one tile
    assert voxels["one_tile"][0] == SMALL_64D_MASK_VOXELS
    assert voxels["one_tile"] == sorted(voxels["one_tile"]) and len(voxels["one_tile"]) == 5  # radius 4


def test_support_voxels_count_the_voxels_tiles_compute_twice():
    net = SHDUNet(2, nside=2, widths=(2, 2), kernel_sizes=(3, 1))  # four 3x3x3 convolutions at level 0: radius 4
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[4, 4, :] = True  # a line along z, across the tile borders at z = 3 and 6
    voxels = support_voxels(net, mask, tile=3)
    assert voxels["one_tile"] == [(2 * k + 1) ** 2 * 9 for k in range(5)]  # dilated in x and y only
    # the 3 tiles each hold 3 voxels of the line and dilate them by k along z too (within the volume)
    assert voxels["tiled"] == [(2 * k + 1) ** 2 * (2 * (3 + k) + min(3 + 2 * k, 9)) for k in range(5)]
