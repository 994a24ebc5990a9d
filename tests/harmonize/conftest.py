"""A small two-scanner cohort shared by the harmonization tests (12³ phantoms, 20 and 30 directions)."""

from dataclasses import replace

import pytest

from equidmri.sims.scanners import ScannerParams, paired_cohort

SIZE = 12  # voxels per edge: SSIM's 7-voxel window fits, a subject generates in ~0.1 s
SCANNER_A = ScannerParams(name="A", directions=20, direction_seed=1, snr=25.0)
GAIN_ONLY_B = replace(SCANNER_A, name="B", directions=30, direction_seed=2, shell_gain=(1.1, 1.2, 1.3), snr=40.0)


@pytest.fixture(scope="session")
def gain_cohort():
    """10 subjects whose scanner B differs by per-shell gains, other directions and a higher SNR."""
    return paired_cohort(10, seed=100, size=SIZE, scanner_a=SCANNER_A, scanner_b=GAIN_ONLY_B)
