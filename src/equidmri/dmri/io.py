"""The one place that reads and writes files (nibabel, FSL text gradients, JSON).

Frames: inside the library every orientation is in the *voxel-axis frame*.
FSL ``bvecs`` are converted to it once, in :func:`load_dwi`. Files written for users follow MRtrix3:
SH in ``tournier07`` (``legacy=False``) and peaks, both in world (RAS+) coordinates.
Every writer is atomic (temporary file in the same directory, then ``os.replace``) and refuses to
overwrite an existing file unless ``force=True``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from dipy.core.gradients import GradientTable
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from equidmri.dmri.gradients import check_gradients, make_gtab
from equidmri.sphere.sh import lmax_from_n_coeffs, sh_rotation_matrix

logger = logging.getLogger(__name__)

AFFINE_ATOL = 1e-4  # mm (and mm per voxel); float32 NIfTI headers round ~200 mm offsets to ~2e-5 mm
TMP_PREFIX = ".tmp-"  # name prefix of the temporary file behind every atomic write
JSON_INDENT = 2  # spaces
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# what nibabel, gzip and zlib raise on a damaged file: empty or not NIfTI (ImageFileError), a header field
# out of range (HeaderDataError), a truncated .nii (OSError "Expected N bytes"), a truncated or corrupt
# .nii.gz (EOFError, zlib.error, gzip.BadGzipFile, an OSError)
UNREADABLE_NIFTI = (ImageFileError, HeaderDataError, EOFError, zlib.error, OSError, ValueError)

__all__ = [
    "DWIData",
    "DWIHeader",
    "check_dwi",
    "check_outputs_free",
    "fsl_bvecs_to_voxel",
    "load_dwi",
    "load_fod",
    "load_json",
    "load_nifti_volume",
    "open_array",
    "prepare_out_dir",
    "save_array",
    "save_npz",
    "save_fod",
    "save_fsl_gradients",
    "save_json",
    "save_nifti",
    "save_peaks",
    "voxel_bvecs_to_fsl",
    "voxel_to_world_rotation",
]


def _check_affine(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite (4, 4) array, got shape {affine.shape}")
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise ValueError(f"affine[:3, :3] must be invertible, got {affine[:3, :3].tolist()}")
    return affine


def fsl_bvecs_to_voxel(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Convert FSL b-vectors to the voxel-axis frame: negate x when ``det(affine[:3, :3]) > 0``.

    FSL stores b-vectors along the image axes with the first axis negated for a det > 0 affine
    (MRtrix3 ``src/dwi/gradient.cpp``; FSL's FDT documentation). The map is its own inverse.

    Parameters
    ----------
    bvecs : ndarray, shape ``(N, 3)``
        b-vectors as read from an FSL ``bvecs`` file (NaN rows pass through).
    affine : ndarray, shape ``(4, 4)``
        Voxel-to-world (RAS+, mm) affine of the image.

    Returns
    -------
    ndarray, shape ``(N, 3)`` float64
        A new array.

    Raises
    ------
    ValueError
        If ``bvecs`` is not ``(N, 3)`` or the affine is not a finite invertible ``(4, 4)`` matrix.

    References
    ----------
    Jenkinson et al., NeuroImage 2012 (FSL); Tournier et al., NeuroImage 2019 (MRtrix3).
    """
    bvecs = np.array(bvecs, dtype=np.float64)
    if bvecs.ndim != 2 or bvecs.shape[1] != 3:
        raise ValueError(f"bvecs must have shape (N, 3), got {bvecs.shape}")
    if np.linalg.det(_check_affine(affine)[:3, :3]) > 0:
        bvecs[:, 0] *= -1.0
    return bvecs


def voxel_bvecs_to_fsl(bvecs: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fsl_bvecs_to_voxel` (the same involution), for writing FSL files."""
    return fsl_bvecs_to_voxel(bvecs, affine)


def voxel_to_world_rotation(affine: np.ndarray) -> np.ndarray:
    """Orthogonal part of ``affine[:3, :3]``: the voxel-axis frame to world (RAS+) map.

    Polar decomposition ``A = R P`` with ``R = U Vᵀ`` from the SVD ``A = U S Vᵀ``. Without shear
    ``R`` equals ``A`` with unit-normalised columns. ``det(R) = sign(det(A))``, so ``R`` is a
    reflection for a det < 0 affine. A direction ``u`` in the voxel-axis frame is ``R @ u`` in world.

    Parameters
    ----------
    affine : ndarray, shape ``(4, 4)``
        Voxel-to-world affine, mm.

    Returns
    -------
    ndarray, shape ``(3, 3)`` float64

    Raises
    ------
    ValueError
        If the affine is not a finite invertible ``(4, 4)`` matrix.
    """
    u, _, vt = np.linalg.svd(_check_affine(affine)[:3, :3])
    return u @ vt


def _require_files(paths: dict[str, str | os.PathLike | None]) -> None:
    for what, path in paths.items():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{what} file not found: {path}")


@contextmanager
def _reading_nifti(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn the errors of reading a damaged NIfTI file into one ``ValueError`` naming the file.

    Raises
    ------
    ValueError
        If the block raised one of ``UNREADABLE_NIFTI`` (a missing file is checked before, by the caller).
    """
    try:
        yield
    except UNREADABLE_NIFTI as error:
        reason = str(error).strip() or type(error).__name__
        raise ValueError(f"cannot read the {what} {os.fspath(path)} as NIfTI: {reason}") from error


def _read_table(path: Path) -> np.ndarray:
    try:
        text = re.sub(r"[\t,]", " ", path.read_text())  # FSL files may be tab- or comma-separated
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a text file of numbers ({error.reason} at byte {error.start})") from error
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # numpy warns on an empty file
            return np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise ValueError(f"could not read numbers from {path}: {error}") from error


def _read_bvals(path: Path) -> np.ndarray:
    table = _read_table(path)
    if min(table.shape) > 1:
        raise ValueError(f"bvals file {path} must hold one row (or column) of N values, got shape {table.shape}")
    return table.ravel()


def _read_bvecs(path: Path) -> np.ndarray:
    """FSL layout is 3 rows (x, y, z); an (N, 3) file is accepted too. A 3×3 file is read as FSL rows."""
    table = _read_table(path)
    if table.shape[0] == 3:
        return table.T.copy()
    if table.shape[1] == 3:
        return table
    raise ValueError(f"bvecs file {path} must have 3 rows (FSL) or 3 columns, got shape {table.shape}")


def load_nifti_volume(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI image: ``(data, affine)``; ``what`` names it in errors (e.g. ``"mask"``).

    Returns
    -------
    data : ndarray
        Voxel values after the header's scaling (native dtype when there is none).
    affine : ndarray, shape ``(4, 4)`` float64
        Voxel-to-world (RAS+, mm).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty, truncated, not NIfTI, or has a damaged header.
    """
    _require_files({"NIfTI": path})
    with _reading_nifti(path, what):
        img = nib.load(os.fspath(path))
        return np.asanyarray(img.dataobj), np.asarray(img.affine, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DWIData:
    """A validated diffusion-weighted acquisition, gradients in the voxel-axis frame.

    Attributes
    ----------
    dwi : ndarray, shape ``(X, Y, Z, N)`` float32
        Signal, scanner units; voxels with a non-finite value were set to 0.
    affine : ndarray, shape ``(4, 4)`` float64
        Voxel-to-world (RAS+, mm).
    bvals : ndarray, shape ``(N,)`` float64
        b-values, s/mm².
    bvecs : ndarray, shape ``(N, 3)`` float64
        Unit b-vectors in the voxel-axis frame (converted from FSL on load); b=0 rows are zero.
    mask : ndarray, shape ``(X, Y, Z)`` bool, or None
        User mask, already ANDed with ``valid``; None when no mask was given.
    valid : ndarray, shape ``(X, Y, Z)`` bool
        True where every volume was finite on disk; later mask computations must AND with it.
    n_nonfinite_voxels : int
        Number of voxels with at least one NaN or Inf on disk (``(~valid).sum()``).
    """

    dwi: np.ndarray
    affine: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    mask: np.ndarray | None
    valid: np.ndarray
    n_nonfinite_voxels: int

    def __post_init__(self) -> None:
        if self.dwi.ndim != 4:
            raise ValueError(f"dwi must have shape (X, Y, Z, N), got {self.dwi.shape}")
        spatial, n = self.dwi.shape[:3], self.dwi.shape[3]
        if self.bvals.shape != (n,) or self.bvecs.shape != (n, 3):
            raise ValueError(f"bvals (N,) and bvecs (N, 3) need N = {n}, got {self.bvals.shape} and {self.bvecs.shape}")
        for name in ("mask", "valid"):
            value = getattr(self, name)
            if value is not None and value.shape != spatial:
                raise ValueError(f"{name} must have shape {spatial}, got {value.shape}")

    def gtab(self) -> GradientTable:
        """dipy ``GradientTable`` of this acquisition (voxel-axis frame), see :func:`make_gtab`."""
        return make_gtab(self.bvals, self.bvecs)


def _load_mask(path: str | os.PathLike, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    data, mask_affine = load_nifti_volume(path, "mask")
    if data.shape != shape:
        raise ValueError(f"mask must be 3D with the DWI's spatial shape {shape}, got {data.shape} from {path}")
    if not np.allclose(mask_affine, affine, rtol=0.0, atol=AFFINE_ATOL):
        raise ValueError(
            f"mask affine differs from the DWI affine (atol {AFFINE_ATOL} mm): "
            f"mask {mask_affine.tolist()} vs DWI {affine.tolist()}"
        )
    return np.asarray(data) > 0


@dataclass(frozen=True, eq=False)
class DWIHeader:
    """What :func:`check_dwi` learns of a DWI series without reading its voxels.

    Attributes
    ----------
    shape : tuple of int
        ``(X, Y, Z, N)``.
    affine : ndarray, shape ``(4, 4)`` float64
        Voxel-to-world (RAS+, mm).
    bvals : ndarray, shape ``(N,)`` float64
        b-values, s/mm².
    bvecs : ndarray, shape ``(N, 3)`` float64
        Unit b-vectors in the voxel-axis frame.
    """

    shape: tuple[int, ...]
    affine: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray


def _open_dwi(
    dwi_path: str | os.PathLike,
    bvals_path: str | os.PathLike,
    bvecs_path: str | os.PathLike,
    mask_path: str | os.PathLike | None,
) -> tuple[Any, DWIHeader, np.ndarray | None]:
    """The nibabel image (voxels not read), the validated header and gradients, and the mask (or None)."""
    _require_files({"DWI": dwi_path, "bvals": bvals_path, "bvecs": bvecs_path, "mask": mask_path})
    with _reading_nifti(dwi_path, "DWI"):
        img = nib.load(os.fspath(dwi_path))
    if len(img.shape) != 4:
        raise ValueError(f"needs a 4D image (X, Y, Z, N), got shape {img.shape} from {dwi_path}")
    bvals, bvecs = _read_bvals(Path(bvals_path)), _read_bvecs(Path(bvecs_path))
    if not bvals.size == bvecs.shape[0] == img.shape[3]:
        raise ValueError(
            f"counts disagree: {bvals.size} b-values in {bvals_path}, {bvecs.shape[0]} b-vectors in "
            f"{bvecs_path}, {img.shape[3]} volumes in {dwi_path}"
        )
    affine = _check_affine(img.affine)
    bvals, bvecs = check_gradients(bvals, fsl_bvecs_to_voxel(bvecs, affine))
    mask = None if mask_path is None else _load_mask(mask_path, tuple(img.shape[:3]), affine)
    return img, DWIHeader(shape=tuple(int(n) for n in img.shape), affine=affine, bvals=bvals, bvecs=bvecs), mask


def check_dwi(
    dwi_path: str | os.PathLike,
    bvals_path: str | os.PathLike,
    bvecs_path: str | os.PathLike,
    mask_path: str | os.PathLike | None = None,
) -> DWIHeader:
    """Every check of :func:`load_dwi` that does not need the DWI's voxels (the mask, if any, is read).

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_dwi`, except for the errors of reading the voxel data.
    """
    return _open_dwi(dwi_path, bvals_path, bvecs_path, mask_path)[1]


def load_dwi(
    dwi_path: str | os.PathLike,
    bvals_path: str | os.PathLike,
    bvecs_path: str | os.PathLike,
    mask_path: str | os.PathLike | None = None,
) -> DWIData:
    """Load and validate a DWI series with FSL gradients and an optional mask.

    Everything cheap is checked before the voxel data is read (:func:`check_dwi`). b-vectors are converted
    from FSL convention to the voxel-axis frame (:func:`fsl_bvecs_to_voxel`) and validated as in
    :func:`equidmri.dmri.gradients.check_gradients`. Voxels with any NaN/Inf are set to 0, counted,
    reported with a warning, marked invalid and removed from the mask.

    Parameters
    ----------
    dwi_path : path
        4D NIfTI ``(X, Y, Z, N)``.
    bvals_path, bvecs_path : path
        FSL text files: N b-values (s/mm²); b-vectors as 3 rows (or N rows of 3).
    mask_path : path, optional
        3D NIfTI on the DWI grid; voxels > 0 are inside.

    Returns
    -------
    DWIData

    Raises
    ------
    FileNotFoundError
        Naming the first missing input file.
    ValueError
        If an image is empty, truncated, not NIfTI or has a damaged header; the image is not 4D;
        the b-value count, b-vector count and number of volumes differ; a gradient file cannot be
        parsed; the gradients fail validation; or the mask is not 3D with the DWI's spatial shape and
        affine.
    """
    img, header, mask = _open_dwi(dwi_path, bvals_path, bvecs_path, mask_path)
    with _reading_nifti(dwi_path, "DWI"):
        dwi = img.get_fdata(dtype=np.float32)
    valid = np.all(np.isfinite(dwi), axis=-1)
    n_nonfinite = int(np.count_nonzero(~valid))
    if n_nonfinite:
        warnings.warn(
            f"{n_nonfinite} voxel(s) of {dwi_path} hold NaN or Inf; they are set to 0 and excluded from the mask",
            stacklevel=2,
        )
        dwi[~valid] = 0.0
    if mask is not None:
        mask &= valid
    logger.info("loaded %s: shape %s, %d b=0 volume(s)", dwi_path, dwi.shape, int(np.sum(~header.bvecs.any(axis=1))))
    return DWIData(
        dwi=dwi,
        affine=header.affine,
        bvals=header.bvals,
        bvecs=header.bvecs,
        mask=mask,
        valid=valid,
        n_nonfinite_voxels=n_nonfinite,
    )


def check_outputs_free(paths: Iterable[str | os.PathLike], force: bool) -> None:
    """Refuse to overwrite.

    Raises
    ------
    FileExistsError
        Listing every path in ``paths`` that exists, unless ``force``.
    """
    existing = [os.fspath(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise FileExistsError(f"output(s) already exist: {', '.join(existing)}; use --force to overwrite")


def prepare_out_dir(out_dir: str | os.PathLike, force: bool) -> Path:
    """Create ``out_dir`` (with parents) and return it.

    Raises
    ------
    FileExistsError
        If ``out_dir`` is an existing file, or an existing non-empty directory and not ``force``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists; use --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _write_atomic(path: str | os.PathLike, write: Callable[[Path], None], force: bool) -> Path:
    path = Path(path)
    check_outputs_free([path], force)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}"  # keeps the suffix nibabel reads (.nii.gz)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %s", path)
    return path


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, *, force: bool = False) -> Path:
    """Write ``data`` (bool is stored as uint8) as NIfTI with the given voxel-to-world affine.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.nii`` or ``.nii.gz``, or the affine is invalid.
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    if not str(path).endswith(NIFTI_SUFFIXES):
        raise ValueError(f"NIfTI path must end in {' or '.join(NIFTI_SUFFIXES)}, got {path}")
    data = np.asarray(data)
    img = nib.Nifti1Image(data.astype(np.uint8) if data.dtype == bool else data, _check_affine(affine))
    img.header.set_xyzt_units(xyz="mm")
    return _write_atomic(path, lambda tmp: nib.save(img, os.fspath(tmp)), force)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write an object of type {type(value).__name__} to JSON")


def save_json(path: str | os.PathLike, obj: Any, *, force: bool = False) -> Path:
    """Write ``obj`` as indented JSON; numpy scalars/arrays and paths are converted.

    Raises
    ------
    TypeError
        If ``obj`` holds something JSON cannot represent.
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    text = json.dumps(obj, indent=JSON_INDENT, default=_json_default) + "\n"  # fails before any file exists
    return _write_atomic(path, lambda tmp: tmp.write_text(text), force)


def save_fsl_gradients(
    bvals_path: str | os.PathLike,
    bvecs_path: str | os.PathLike,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    affine: np.ndarray,
    *,
    force: bool = False,
) -> None:
    """Write FSL ``bvals`` (one row, s/mm²) and ``bvecs`` (3 rows, FSL convention for ``affine``) atomically.

    Parameters
    ----------
    bvals : ndarray, shape ``(N,)``
    bvecs : ndarray, shape ``(N, 3)``
        Unit b-vectors in the voxel-axis frame (:func:`voxel_bvecs_to_fsl` converts them).

    Raises
    ------
    FileExistsError
        If a path exists and not ``force``.
    """
    fsl = voxel_bvecs_to_fsl(bvecs, affine)
    save_text(bvals_path, " ".join(f"{b:g}" for b in bvals) + "\n", force=force)
    save_text(bvecs_path, "\n".join(" ".join(f"{v:.8f}" for v in row) for row in fsl.T) + "\n", force=force)


def save_text(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) atomically.

    Raises
    ------
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    return _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), force)


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`save_json`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def save_array(path: str | os.PathLike, array: np.ndarray, *, force: bool = False) -> Path:
    """Write ``array`` as a NumPy ``.npy`` file (C order: a block of it is few contiguous runs), atomically.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.npy``.
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    if not str(path).endswith(".npy"):
        raise ValueError(f"array path must end in .npy, got {path}")
    return _write_atomic(path, lambda tmp: np.save(tmp, np.ascontiguousarray(array)), force)


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], *, force: bool = False) -> Path:
    """Write named arrays as one compressed NumPy ``.npz`` archive (``numpy.savez_compressed``), atomically.

    Read it back with ``numpy.load(path)``; every value is stored as an array (a string as a 0-d array).

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.npz``.
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    if not str(path).endswith(".npz"):
        raise ValueError(f"archive path must end in .npz, got {path}")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez_compressed(handle, **{name: np.asarray(value) for name, value in arrays.items()})

    return _write_atomic(path, write, force)


def open_array(path: str | os.PathLike) -> np.ndarray:
    """A ``.npy`` file written by :func:`save_array`, memory-mapped read-only: blocks are read from disk when
    sliced, and nothing else is held in memory.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a readable ``.npy`` file.
    """
    _require_files({"array": path})
    try:
        return np.load(os.fspath(path), mmap_mode="r")
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot read {path} as a NumPy array: {error}") from error


def save_fod(path: str | os.PathLike, fodf_sh: np.ndarray, affine: np.ndarray, *, force: bool = False) -> Path:
    """Write a voxel-frame fODF as an MRtrix3 SH image (``tournier07``, world RAS+, float32).

    Parameters
    ----------
    fodf_sh : ndarray, shape ``(X, Y, Z, K)``
        fODF SH coefficients, ``descoteaux07`` (``legacy=False``), voxel-axis frame, even ``lmax``.
    affine : ndarray, shape ``(4, 4)``
        Voxel-to-world affine; its orthogonal part :func:`voxel_to_world_rotation` ``R`` maps the
        fODF to world: the file's function at ``R @ u`` equals the input's at ``u``.

    Raises
    ------
    ValueError
        If ``fodf_sh`` is not 4D or K is not an even-degree SH count, or the affine is invalid.
    FileExistsError
        If ``path`` exists and not ``force``.
    """
    fodf_sh = np.asarray(fodf_sh)
    if fodf_sh.ndim != 4:
        raise ValueError(f"fodf_sh must have shape (X, Y, Z, K), got {fodf_sh.shape}")
    lmax = lmax_from_n_coeffs(fodf_sh.shape[-1])
    rotate = sh_rotation_matrix(voxel_to_world_rotation(affine), lmax, "descoteaux07", "tournier07")
    world = np.empty(fodf_sh.shape, dtype=np.float32)
    for x in range(fodf_sh.shape[0]):  # slab by slab: float64 arithmetic without a float64 copy of the volume
        world[x] = fodf_sh[x].astype(np.float64) @ rotate.T
    return save_nifti(path, world, affine, force=force)


def load_fod(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an MRtrix3 SH image (``tournier07``, world frame; e.g. ``fod.nii.gz`` or ``mrconvert wm.mif``).

    The inverse of :func:`save_fod`.

    Returns
    -------
    fodf_sh : ndarray, shape ``(X, Y, Z, K)`` float64
        ``descoteaux07`` (``legacy=False``) coefficients in the voxel-axis frame; NaN (MRtrix's "no value")
        becomes 0.
    affine : ndarray, shape ``(4, 4)`` float64

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the image is not 4D with an even-degree SH count along its last axis.
    """
    data, affine = load_nifti_volume(path)
    if data.ndim != 4:
        raise ValueError(f"{path}: an SH image must be 4D (X, Y, Z, K), got shape {data.shape}")
    lmax = lmax_from_n_coeffs(data.shape[-1])
    rotate = sh_rotation_matrix(voxel_to_world_rotation(affine).T, lmax, "tournier07", "descoteaux07")
    return np.nan_to_num(np.asarray(data, dtype=np.float64)) @ rotate.T, affine


def save_peaks(
    dirs_path: str | os.PathLike,
    values_path: str | os.PathLike,
    peak_dirs: np.ndarray,
    peak_values: np.ndarray,
    affine: np.ndarray,
    *,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write peak directions (world frame) and amplitudes.

    Parameters
    ----------
    peak_dirs : ndarray, shape ``(X, Y, Z, P, 3)``
        Unit peak directions in the voxel-axis frame, zeros where there is no peak.
    peak_values : ndarray, shape ``(X, Y, Z, P)``
        Peak amplitudes (fODF units).
    affine : ndarray, shape ``(4, 4)``
        Voxel-to-world affine.

    Returns
    -------
    (Path, Path)
        ``dirs_path`` holds ``(X, Y, Z, 3P)`` float32 world-frame unit vectors ``R @ u``
        (zeros stay zero); ``values_path`` holds ``(X, Y, Z, P)`` float32.

    Raises
    ------
    ValueError
        If the shapes do not match ``(X, Y, Z, P, 3)`` and ``(X, Y, Z, P)``.
    FileExistsError
        If either output exists and not ``force`` (then neither is written).
    """
    peak_dirs, peak_values = np.asarray(peak_dirs, dtype=np.float64), np.asarray(peak_values)
    if peak_dirs.ndim != 5 or peak_dirs.shape[-1] != 3 or peak_values.shape != peak_dirs.shape[:4]:
        raise ValueError(
            f"peak_dirs must be (X, Y, Z, P, 3) and peak_values (X, Y, Z, P), "
            f"got {peak_dirs.shape} and {peak_values.shape}"
        )
    check_outputs_free([dirs_path, values_path], force)
    world = peak_dirs @ voxel_to_world_rotation(affine).T
    flat = world.reshape(*world.shape[:3], -1).astype(np.float32)
    dirs_file = save_nifti(dirs_path, flat, affine, force=force)
    return dirs_file, save_nifti(values_path, peak_values.astype(np.float32), affine, force=force)
