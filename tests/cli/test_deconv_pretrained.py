"""``deconv`` with the shipped pretrained model: used by default in range, --train-from-scratch, --finetune,
out-of-range fallback."""

import json

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import run_main, write_series

from equidmri.runtime import product_dtype

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")

FAST = ["--threads", "1", "-q"]


def _run(out) -> dict:
    return json.loads((out / "run.json").read_text())


def test_default_uses_the_pretrained_model(synthetic, tmp_path):
    out = tmp_path / "out"
    assert run_main(["deconv", *synthetic.args(), "--out", str(out), *FAST]) == 0
    record = _run(out)
    assert record["pretrained"]["used"] is True and record["pretrained"]["finetune_epochs"] == 0
    assert record["epochs_trained"] == 0 and "predict" in record["timings"]
    assert (out / "fod.nii.gz").exists() and not (out / "model.pt").exists()
    # 30 fitted volumes: the spatial term's weight 3e-5 x 29 / 30
    assert record["arguments"]["refine_tv"] is None
    assert record["refinement"] == {**record["refinement"], "steps": 100, "tv": 2.9e-5}
    assert record["refinement"]["reason"].startswith("30 fitted volumes: spatial term")
    assert record["refinement"]["precision"] == str(product_dtype("auto")).removeprefix("torch.")


def test_refine_precision_float32_is_recorded_and_close_to_the_default(synthetic, tmp_path):
    """--refine-precision float32 against the default (bfloat16 penalty products where the CPU has them): the
    same fODFs within 2 % (relative L2 over the volume)."""
    default, full = tmp_path / "default", tmp_path / "full"
    assert run_main(["deconv", *synthetic.args(), "--out", str(default), *FAST]) == 0
    assert run_main(["deconv", *synthetic.args(), "--out", str(full), "--refine-precision", "float32", *FAST]) == 0
    assert _run(full)["refinement"]["precision"] == "float32"
    assert _run(full)["arguments"]["refine_precision"] == "float32"
    a, b = (np.asarray(nib.load(out / "fod.nii.gz").dataobj) for out in (default, full))
    assert np.linalg.norm(a - b) <= 0.02 * np.linalg.norm(b)
    assert run_main(["deconv", *synthetic.args(), "--out", str(tmp_path / "x"), "--refine-precision", "half"]) == 2


def test_train_from_scratch_and_finetune(synthetic, tmp_path):
    scratch, tuned = tmp_path / "scratch", tmp_path / "tuned"
    small = ["--widths", "4", "4", "4", "4", "--patch-size", "6", *FAST]
    assert (
        run_main(["deconv", *synthetic.args(), "--out", str(scratch), "--train-from-scratch", "--epochs", "1", *small])
        == 0
    )
    assert _run(scratch)["pretrained"]["used"] is False and _run(scratch)["epochs_trained"] == 1
    assert (
        run_main(["deconv", *synthetic.args(), "--out", str(tuned), "--finetune", "2", "--patch-size", "6", *FAST]) == 0
    )
    record = _run(tuned)
    assert record["pretrained"] == {**record["pretrained"], "used": True, "finetune_epochs": 2}
    assert record["epochs_trained"] == 2 and (tuned / "model.pt").exists()


def test_out_of_range_falls_back_or_refuses_finetune(synthetic, tmp_path, caplog):
    bvals = np.loadtxt(synthetic.bvals)
    bvals[bvals > 0] = 4000.0
    folder = tmp_path / "b4000"
    image = nib.load(synthetic.dwi)
    inputs = write_series(folder, np.asarray(image.dataobj), bvals, np.loadtxt(synthetic.bvecs).T, image.affine)
    out = tmp_path / "out"
    small = ["--epochs", "1", "--widths", "4", "4", "4", "4", "--patch-size", "6", "--threads", "1"]
    assert run_main(["deconv", *inputs.args(), "--out", str(out), *small]) == 0
    assert _run(out)["pretrained"]["used"] is False and "b=4000" in _run(out)["pretrained"]["reason"]
    assert "does not apply" in caplog.text
    refused = tmp_path / "refused"
    assert run_main(["deconv", *inputs.args(), "--out", str(refused), "--finetune", "1", "-q"]) == 2
    assert not refused.exists()


def test_three_shells_use_the_multi_shell_model(tmp_path):
    from equidmri.sims.phantoms import make_phantom
    from equidmri.sims.synthesis import make_protocol

    rng = np.random.default_rng(11)
    protocol = make_protocol(rng, n_b0=2, shells=(1000.0, 2000.0, 3000.0), directions_per_shell=20)
    ph = make_phantom(12, protocol, rng, snr=None)
    inputs = write_series(tmp_path / "in", ph.dwi, protocol.bvals, protocol.bvecs.T, np.eye(4), ph.mask)
    out = tmp_path / "out"
    assert run_main(["deconv", *inputs.args(), "--out", str(out), "--refine-steps", "5", *FAST]) == 0
    record = _run(out)["pretrained"]
    assert record["used"] is True and record["model"] == "multi-shell" and record["file"] == "shd_tv_multi_shell.pt"
    assert (out / "fractions.nii.gz").exists()  # WM/GM/CSF


def test_qc_background_is_dti_fa_on_the_shown_views(synthetic, tmp_path, monkeypatch):
    """The QC figure's FA is fitted only on the voxels of its three views, and there equals the whole mask's."""
    import equidmri.cli.common as common
    from equidmri.dmri.baselines import fit_dti_fa
    from equidmri.dmri.io import load_dwi
    from equidmri.recon.pipeline import prepare
    from equidmri.viz.qc import qc_centre, views_mask

    drawn = {}
    monkeypatch.setattr(common, "plot_peaks_qc", lambda path, background, peak_dirs, *a, **k: drawn.update(
        background=background, peak_dirs=peak_dirs, slice_index=k["slice_index"]))  # fmt: skip
    assert run_main(["deconv", *synthetic.args(), "--out", str(tmp_path / "out"), *FAST]) == 0
    prepared = prepare(load_dwi(synthetic.dwi, synthetic.bvals, synthetic.bvecs, synthetic.mask))
    shown = prepared.mask & views_mask(prepared.mask.shape, qc_centre(drawn["peak_dirs"]))
    assert drawn["slice_index"] == qc_centre(drawn["peak_dirs"])[2] and 0 < shown.sum() < prepared.mask.sum()
    whole = fit_dti_fa(prepared.data.dwi, prepared.gtab, prepared.mask)
    np.testing.assert_allclose(drawn["background"][shown], whole[shown], atol=1e-6)
    assert not drawn["background"][~shown].any()
