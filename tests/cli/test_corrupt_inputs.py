"""Fuzz test of every command that reads NIfTI: damaged inputs fail in one line with exit 2 and write nothing.

Each corruption is applied to one input file of a valid run: gzip streams cut at several offsets, plain
``.nii`` files cut short, bytes of the NIfTI header flipped (number of dimensions, a dimension, the data
type, the magic string), empty files, text in place of an image, and gradient files of the wrong shape.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_inputs import AFFINE, SHAPE, TINY_NET, Inputs, run_main

VOX_OFFSET = 352  # bytes before the voxel data of a single-file NIfTI-1 (nibabel's default)
HEADER_FLIPS = {"ndim": 40, "dim1": 42, "datatype": 70, "magic": 344}  # byte offsets in the NIfTI-1 header
CUTS = (0.05, 0.3, 0.6, 0.95)  # fractions of the file kept


def _cut_data(nii: bytes, cut: float) -> bytes:
    """A whole gzip stream of a cut ``.nii``: the header kept, a fraction ``cut`` of the voxel data."""
    return nii[: VOX_OFFSET + int((len(nii) - VOX_OFFSET) * cut)]


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def corrupt(raw: bytes) -> bytes:
        header = bytearray(gzip.decompress(raw))
        header[offset] ^= 0xFF
        return gzip.compress(bytes(header))

    return corrupt


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda raw: b"",
    "text": lambda raw: b"not an image\n" * 40,
    "not_gzip": gzip.decompress,  # a plain NIfTI behind a .nii.gz name
    **{f"gzip_cut_{cut}": (lambda raw, cut=cut: raw[: int(len(raw) * cut)]) for cut in CUTS},
    **{f"nii_cut_{cut}": (lambda raw, cut=cut: gzip.compress(_cut_data(gzip.decompress(raw), cut))) for cut in CUTS},
    **{f"flip_{name}": _flip(offset) for name, offset in HEADER_FLIPS.items()},
}
GRADIENT_CORRUPTIONS = {
    "bvals_empty": ("bvals", ""),
    "bvals_matrix": ("bvals", "0 1000 1000\n0 1000 1000\n"),
    "bvals_binary": ("bvals", None),  # gzip bytes: not text
    "bvecs_two_rows": ("bvecs", "1 0 0\n0 1 0\n"),
    "bvecs_words": ("bvecs", "x y z\n"),
}


@pytest.fixture(scope="module")
def peaks_gt(tmp_path_factory) -> Path:
    """A ground-truth directory (one fibre along x everywhere) for ``evaluate``."""
    folder = tmp_path_factory.mktemp("gt")
    peaks = np.zeros((*SHAPE, 3), dtype=np.float32)
    peaks[..., 0] = 1.0
    nib.save(nib.Nifti1Image(peaks, AFFINE), folder / "gt_peaks.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(SHAPE, dtype=np.uint8), AFFINE), folder / "mask.nii.gz")
    return folder


@pytest.fixture(scope="module")
def fa_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fa") / "model"
    argv = ["fa", "train", "--model", "fcn", "--n-voxels", "64", "--epochs", "1", "-q", "--out", str(out)]
    assert run_main(argv) == 0
    return out / "model.pt"


def _commands(inputs: Inputs, work: Path, model: Path, fa_model: Path, gt: Path) -> dict[str, tuple[list[str], Path]]:
    """``name: (argv, output that must not appear)`` of every command that reads the damaged DWI or mask."""
    out = work / "out"
    return {
        "deconv": (["deconv", *inputs.args(), "--out", str(out), *TINY_NET], out),
        "predict": (["predict", "--model", str(model), *inputs.args(), "--out", str(out), "-q"], out),
        "fa predict": (
            ["fa", "predict", "--model", str(fa_model), *inputs.args(), "--out", str(work / "fa.nii.gz")],
            work / "fa.nii.gz",
        ),
        "evaluate": (
            ["evaluate", "--gt", str(gt), "--pred-peaks", str(inputs.mask), "--json", str(work / "s.json")],
            work / "s.json",
        ),
        "bench throughput": (
            ["bench", "throughput", *inputs.args(), "--quick", "--out", str(work / "bench")],
            work / "bench",
        ),
    }


def _copy(inputs: Inputs, folder: Path) -> Inputs:
    folder.mkdir()
    paths = [shutil.copy(p, folder / p.name) for p in (inputs.dwi, inputs.bvals, inputs.bvecs, inputs.mask)]
    return Inputs(*map(Path, paths))


def _assert_one_line_exit_2_nothing_written(argv: list[str], written: Path, capsys) -> None:
    assert run_main(argv) == 2, argv
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"equidmri {argv[0]}"), err
    assert "error:" in err and "Traceback" not in err
    assert not written.exists()


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_damaged_image_fails_every_command_in_one_line(
    corruption, synthetic, synthetic_run, fa_model, peaks_gt, tmp_path, capsys
):
    inputs = _copy(synthetic, tmp_path / "in")
    target = {"dwi": inputs.dwi, "mask": inputs.mask}
    for name, path in target.items():
        pristine = path.read_bytes()
        path.write_bytes(CORRUPTIONS[corruption](pristine))
        commands = _commands(inputs, tmp_path / name, synthetic_run / "model.pt", fa_model, peaks_gt)
        for command, (argv, written) in commands.items():
            if name == "mask" or command != "evaluate":  # evaluate reads the "mask" file as its peaks
                _assert_one_line_exit_2_nothing_written(argv, written, capsys)
        path.write_bytes(pristine)


@pytest.mark.parametrize("corruption", sorted(GRADIENT_CORRUPTIONS))
def test_gradient_files_of_the_wrong_shape_fail_in_one_line(
    corruption, synthetic, synthetic_run, fa_model, peaks_gt, tmp_path, capsys
):
    inputs = _copy(synthetic, tmp_path / "in")
    name, text = GRADIENT_CORRUPTIONS[corruption]
    path = getattr(inputs, name)
    if text is None:
        path.write_bytes(inputs.dwi.read_bytes())
    else:
        path.write_text(text)
    for command, (argv, written) in _commands(inputs, tmp_path, synthetic_run / "model.pt", fa_model, peaks_gt).items():
        if command != "evaluate":  # reads no gradients
            _assert_one_line_exit_2_nothing_written(argv, written, capsys)
