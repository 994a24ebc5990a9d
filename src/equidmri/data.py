"""Every dataset has one door: dipy's bundled real volumes, the phantom sets and cohort lists.

- **Real volumes shipped with dipy** (no download: the files are part of the dipy wheel), by name in
  :data:`REAL_VOLUMES`; :func:`real_volume_paths` gives the files and :func:`load_real_volume` loads one
  through :func:`equidmri.dmri.io.load_dwi`.
- **Phantom sets** written by ``equidmri phantom`` (:func:`equidmri.sims.dataset.write_phantom_set`):
  :func:`phantom_paths` names the files of one volume (``train``, ``val``, ``test``) at one angular
  resolution (``high``, ``low``).
- **Cohort lists** for multi-subject work: a tab-separated file with a header row and the columns ``dwi``,
  ``bvals``, ``bvecs`` and, optionally, ``mask`` (an empty cell means no mask) and ``subject`` (default: the
  DWI file's name without ``.nii``/``.nii.gz``); relative paths resolve against the folder of the list.
  :func:`read_cohort` returns one :class:`Subject` per row; nothing is loaded until :meth:`Subject.load`.
- **Lesion sets** written by ``equidmri lesions data`` (:func:`equidmri.sims.lesion_set.write_lesion_set`):
  :func:`lesion_set_split` gives one split's subjects with their label maps.

No other module calls ``dipy.data.get_fnames``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

from dipy.data import get_fnames

from equidmri.dmri.io import DWIData, DWIHeader, check_dwi, load_dwi
from equidmri.sims.dataset import VOLUMES, series_paths

REAL_VOLUMES = {  # name -> what it holds (shape, voxel size, acquisition), read from the files themselves
    "small_64D": "10×10×10 voxels of a human brain at 2 mm, 1 b=0 + 64 directions at b ≈ 1000 s/mm² "
    "(39 at 990, 25 at 1000); an oblique affine with det < 0",
    "small_101D": "6×10×10 voxels at 2.5 mm, 1 b≈20 + 101 q-space samples from b ≈ 300 to 4060 s/mm² "
    "(a generalised q-sampling / DSI-like grid, not shells)",
    "small_25": "10×8×2 voxels at 2 mm, 1 b=0 + 25 directions at b = 2000 s/mm² (DTI)",
}
COHORT_COLUMNS = ("dwi", "bvals", "bvecs")  # required columns of a cohort list
COHORT_OPTIONAL = ("mask", "subject")  # optional columns

LESION_SPLITS = ("train", "val", "test", "test_rotated")  # cohort lists <split>.tsv of a lesion set
LESION_LABELS = "labels.nii.gz"  # beside each subject's dwi.nii.gz

__all__ = [
    "LESION_SPLITS",
    "REAL_VOLUMES",
    "Subject",
    "lesion_set_split",
    "load_real_volume",
    "phantom_paths",
    "read_cohort",
    "real_volume_paths",
]


def real_volume_paths(name: str) -> tuple[Path, Path, Path]:
    """``(dwi, bvals, bvecs)`` files of a real volume bundled with dipy (FSL gradients).

    Parameters
    ----------
    name : str
        One of :data:`REAL_VOLUMES`.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`REAL_VOLUMES`.

    References
    ----------
    dipy, ``dipy.data.get_fnames`` (Garyfallidis et al., Front. Neuroinform. 8, 2014).
    """
    if name not in REAL_VOLUMES:
        raise ValueError(f"unknown real volume {name!r}; choose from {sorted(REAL_VOLUMES)}")
    dwi, bvals, bvecs = get_fnames(name=name)
    return Path(dwi), Path(bvals), Path(bvecs)


def load_real_volume(name: str) -> DWIData:
    """A real volume bundled with dipy, loaded and validated (b-vectors in the voxel-axis frame, no mask).

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`REAL_VOLUMES`.
    """
    return load_dwi(*real_volume_paths(name))


def phantom_paths(set_dir: str | os.PathLike, volume: str, resolution: str = "high") -> tuple[Path, Path, Path, Path]:
    """``(dwi, bvals, bvecs, mask)`` files of one volume of a phantom set at one angular resolution.

    Parameters
    ----------
    set_dir : path
        Folder written by ``equidmri phantom`` (:func:`equidmri.sims.dataset.write_phantom_set`).
    volume : str
        ``"train"``, ``"val"`` or ``"test"``.
    resolution : str
        ``"high"`` (every shell) or ``"low"`` (b=0 + 29 directions of the lowest shell).

    Raises
    ------
    ValueError
        If ``volume`` or ``resolution`` is unknown.
    """
    if volume not in VOLUMES:
        raise ValueError(f"volume must be one of {VOLUMES}, got {volume!r}")
    folder = Path(set_dir) / volume
    return (*series_paths(folder, resolution), folder / "mask.nii.gz")


def lesion_set_split(set_dir: str | os.PathLike, split: str) -> list[tuple[Subject, Path]]:
    """``(subject, label map)`` of every volume of one split of a lesion set (``<split>.tsv`` in ``set_dir``).

    Raises
    ------
    ValueError
        If ``split`` is not one of :data:`LESION_SPLITS`, or from :func:`read_cohort`.
    FileNotFoundError
        If the cohort list or a label map is missing.
    """
    if split not in LESION_SPLITS:
        raise ValueError(f"split must be one of {LESION_SPLITS}, got {split!r}")
    listing = Path(set_dir) / f"{split}.tsv"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} not found: is {set_dir} a lesion set of `equidmri lesions data`?")
    pairs = [(subject, subject.dwi.parent / LESION_LABELS) for subject in read_cohort(listing)]
    missing = [os.fspath(labels) for _, labels in pairs if not labels.is_file()]
    if missing:
        raise FileNotFoundError(f"label map(s) missing: {', '.join(missing)}")
    return pairs


@dataclass(frozen=True)
class Subject:
    """One row of a cohort list: absolute paths of its files and its identifier.

    Attributes
    ----------
    subject : str
        The ``subject`` column; where it is absent or empty, the DWI file's name without ``.nii``/``.nii.gz``
        (``sub-01_dwi``), prefixed with its folder's name when several rows would get the same one
        (``sub-01/dwi.nii.gz`` -> ``sub-01_dwi``).
    dwi, bvals, bvecs : Path
        4D NIfTI and FSL gradient files.
    mask : Path or None
    """

    subject: str
    dwi: Path
    bvals: Path
    bvecs: Path
    mask: Path | None = None

    def load(self) -> DWIData:
        """The subject's data through :func:`equidmri.dmri.io.load_dwi` (same errors)."""
        return load_dwi(self.dwi, self.bvals, self.bvecs, self.mask)

    def check(self) -> DWIHeader:
        """Every check of :meth:`load` that does not read the DWI's voxels (:func:`equidmri.dmri.io.check_dwi`)."""
        return check_dwi(self.dwi, self.bvals, self.bvecs, self.mask)


def read_cohort(path: str | os.PathLike) -> list[Subject]:
    """Read a cohort list: a tab-separated file with a header of column names.

    Parameters
    ----------
    path : path
        Columns ``dwi``, ``bvals``, ``bvecs`` (required), ``mask`` and ``subject`` (optional); other
        columns are ignored. Relative paths resolve against the folder of ``path``. Files are not opened.

    Returns
    -------
    list of Subject
        In the order of the rows.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If a required column is missing, a required cell is empty, two rows share a subject name, a name
        cannot be a folder name (empty after stripping, ``.``, ``..``, or holding ``/``) or the list has no
        row.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = [column for column in COHORT_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"cohort list {path} lacks the column(s) {missing}; it has {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise ValueError(f"cohort list {path} has no subject")
    subjects = _default_names([_subject(row, number, path.parent) for number, row in enumerate(rows, start=1)])
    names = [s.subject for s in subjects]
    unusable = [name for name in names if name in (".", "..") or "/" in name or "\\" in name]
    if unusable:
        raise ValueError(f"cohort list {path} names subject(s) {unusable} that cannot be folder names")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"cohort list {path} names the subject(s) {duplicated} more than once")
    return subjects


def _subject(row: dict[str, str | None], number: int, folder: Path) -> Subject:
    def resolve(column: str) -> Path | None:
        cell = (row.get(column) or "").strip()
        return (folder / cell) if cell else None

    files = {column: resolve(column) for column in COHORT_COLUMNS}
    empty = [column for column, value in files.items() if value is None]
    if empty:
        raise ValueError(f"row {number} of the cohort list has no {', '.join(empty)}")
    return Subject(subject=(row.get("subject") or "").strip(), mask=resolve("mask"), **files)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _default_names(subjects: list[Subject]) -> list[Subject]:
    """Name the unnamed subjects after their DWI file, with its folder's name where two would collide."""
    unnamed = [s for s in subjects if not s.subject]
    stems = [_stem(s.dwi) for s in unnamed]
    named = {
        id(s): stem if stems.count(stem) == 1 else f"{s.dwi.parent.name}_{stem}" for s, stem in zip(unnamed, stems)
    }
    return [replace(s, subject=named[id(s)]) if not s.subject else s for s in subjects]
