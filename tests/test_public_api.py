"""The public API of the README: ``from equidmri import ...`` names and the three-line workflow."""

import subprocess
import sys

import numpy as np

import equidmri
from equidmri import get_method, load_real_volume, prepare


def test_all_names_the_curated_api_and_every_name_exists():
    assert set(equidmri.__all__) == {
        "METHODS", "FODFFit", "NetworkConfig", "SHDModel", "TrainConfig", "__version__", "get_method", "load_dwi",
        "load_pretrained", "load_real_volume", "prepare", "read_cohort",
    }  # fmt: skip
    assert all(hasattr(equidmri, name) for name in equidmri.__all__)


def test_readme_example_runs_with_a_tiny_network():
    prepared = prepare(load_real_volume("small_64D"))
    method = get_method("SHD-TV", prepared.gtab, prepared.responses, epochs=1, widths=(4, 4, 4, 4), patch_size=4)
    fit = method.fit(prepared.data.dwi, prepared.mask)
    peak_dirs, peak_values = fit.peaks()
    assert isinstance(fit, equidmri.FODFFit) and fit.shm_coeff.shape == (10, 10, 10, 45)
    assert peak_dirs.shape[:3] == (10, 10, 10) and np.all(peak_values[~prepared.mask] == 0)
    assert np.count_nonzero(peak_values[prepared.mask][:, 0]) > 0.5 * prepared.mask.sum()


def test_importing_the_package_loads_neither_torch_nor_dipy():
    code = (
        "import sys, equidmri; "
        "print(sorted(n for n in ('torch', 'healpy', 'dipy', 'matplotlib') if n in sys.modules)); "
        "equidmri.get_method; print('torch' in sys.modules); equidmri.SHDModel; print('torch' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.split("\n")[:3] == ["[]", "False", "True"]  # names are imported on first use; the registry is light
