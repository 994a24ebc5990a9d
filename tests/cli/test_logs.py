"""Tests of equidmri.cli.logs: one stderr log with -q/-v levels, warnings once and in one line each."""

import logging
import subprocess
import sys
import warnings

import pytest
from dipy.data import get_fnames

from equidmri.cli.logs import WARNINGS_LOGGER, command_logging, log_level


@pytest.mark.parametrize(
    ("verbose", "quiet", "level"),
    [
        (0, False, logging.WARNING),
        (1, False, logging.INFO),
        (2, False, logging.DEBUG),
        (5, False, logging.DEBUG),
        (0, True, logging.ERROR),
        (2, True, logging.ERROR),
    ],
)
def test_log_level_of_the_options(verbose, quiet, level):
    assert log_level(verbose, quiet) == level


def test_warnings_are_logged_once_in_one_line_and_levels_are_restored(caplog):
    before = logging.getLogger("equidmri").level
    with caplog.at_level(logging.WARNING, logger=WARNINGS_LOGGER), command_logging(verbose=1):
        assert logging.getLogger("equidmri").level == logging.INFO
        for _ in range(3):
            warnings.warn(
                "There is overlap in clustering of b-values.\n    The tolerance factor might be too high.",
                UserWarning,
                stacklevel=1,
            )
        warnings.warn("another condition", RuntimeWarning, stacklevel=1)
    assert [r.getMessage() for r in caplog.records if r.name == WARNINGS_LOGGER] == [
        "UserWarning: There is overlap in clustering of b-values. The tolerance factor might be too high.",
        "RuntimeWarning: another condition",
    ]
    assert logging.getLogger("equidmri").level == before


def _deconv_stderr(*options: str, tmp_path) -> list[str]:
    dwi, bvals, bvecs = get_fnames(name="small_101D")  # 102 volumes, 23 b-values: many warnings before issue 22
    argv = [
        sys.executable,
        "-m",
        "equidmri.cli.main",
        "deconv",
        "--dwi",
        str(dwi),
        "--bvals",
        str(bvals),
        "--bvecs",
        str(bvecs),
        "--out",
        str(tmp_path / "out"),
        "--epochs",
        "1",
        "--widths",
        "4",
        "4",
        "4",
        "4",
        "--threads",
        "1",
        *options,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300).stderr.splitlines()


def test_quiet_leaves_at_most_the_error_line_on_small_101d(tmp_path):
    lines = _deconv_stderr("-q", tmp_path=tmp_path)
    assert len(lines) <= 1 and all(line.startswith("equidmri deconv: error:") for line in lines), lines


def test_default_output_on_small_101d_is_one_line_per_message(tmp_path):
    lines = _deconv_stderr(tmp_path=tmp_path)
    assert lines and len(lines) <= 8, lines  # 72 lines before issue 22; now one per distinct message
    assert all(line.startswith(("WARNING ", "equidmri deconv:")) for line in lines), lines
    assert len(set(lines)) == len(lines)
