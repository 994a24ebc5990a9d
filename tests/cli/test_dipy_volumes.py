"""dipy's three bundled real volumes through ``equidmri deconv``: each runs or is refused with an actionable line."""

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import TINY_NET, run_main
from dipy.data import get_fnames

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _args(name: str) -> list[str]:
    dwi, bvals, bvecs = get_fnames(name=name)
    return ["--dwi", str(dwi), "--bvals", str(bvals), "--bvecs", str(bvecs)]


@pytest.mark.parametrize("name", ["small_25", "small_64D"])
def test_shelled_dipy_volume_runs_with_defaults(name, tmp_path):
    """small_25 (10x8x2, b=2000, 25 directions) needs the highest-FA fallback of the WM response."""
    out = tmp_path / "out"
    assert run_main(["deconv", *_args(name), "--out", str(out), *TINY_NET]) == 0
    fod = nib.load(out / "fod.nii.gz")
    assert fod.shape[-1] == 45
    assert np.isfinite(fod.get_fdata()).all() and np.abs(fod.get_fdata()).max() > 0


def test_q_space_dipy_volume_is_refused_with_a_reason(tmp_path, capsys):
    """small_101D samples q-space (31 b-value groups, mostly 1-4 directions): refused, nothing written."""
    out = tmp_path / "out"
    assert run_main(["deconv", *_args("small_101D"), "--out", str(out), *TINY_NET]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "q-space (DSI-style) sampling" in errors[0] and "GQI, SHORE or MAP-MRI" in errors[0]
    assert not out.exists()
