"""Tests of equidmri.data: dipy's bundled volumes, phantom set paths and cohort lists."""

from pathlib import Path

import numpy as np
import pytest

from equidmri.data import REAL_VOLUMES, load_real_volume, phantom_paths, read_cohort, real_volume_paths


@pytest.mark.parametrize(
    ("name", "shape", "n_b0"), [("small_64D", (10, 10, 10, 65), 1), ("small_25", (10, 8, 2, 26), 1)]
)
def test_real_volumes_hold_what_their_description_says(name, shape, n_b0):
    data = load_real_volume(name)
    assert data.dwi.shape == shape
    assert int(np.sum(data.bvals < 50)) == n_b0
    assert f"{shape[0]}×{shape[1]}×{shape[2]}" in REAL_VOLUMES[name]


def test_small_101d_has_101_diffusion_weighted_samples():
    dwi, bvals, _ = real_volume_paths("small_101D")
    assert dwi.is_file() and np.loadtxt(bvals).size == 102


def test_unknown_real_volume_is_refused():
    with pytest.raises(ValueError, match="unknown real volume 'stanford_hardi'"):
        real_volume_paths("stanford_hardi")


def test_phantom_paths_name_the_resolution_series_and_the_mask(tmp_path):
    dwi, bvals, bvecs, mask = phantom_paths(tmp_path, "val", "low")
    assert (dwi, bvals, bvecs, mask) == (
        tmp_path / "val" / "dwi_low.nii.gz",
        tmp_path / "val" / "bvals_low",
        tmp_path / "val" / "bvecs_low",
        tmp_path / "val" / "mask.nii.gz",
    )
    with pytest.raises(ValueError, match="volume must be one of"):
        phantom_paths(tmp_path, "holdout")


def test_cohort_paths_resolve_against_the_list_and_masks_are_optional(tmp_path):
    listing = tmp_path / "lists" / "cohort.tsv"
    listing.parent.mkdir()
    listing.write_text(
        "subject\tdwi\tbvals\tbvecs\tmask\n"
        "s01\ts01/dwi.nii.gz\ts01/bvals\ts01/bvecs\ts01/mask.nii.gz\n"
        "s02\t/data/s02.nii.gz\t/data/s02.bval\t/data/s02.bvec\t\n"
    )
    first, second = read_cohort(listing)
    assert first.subject == "s01" and first.dwi == tmp_path / "lists" / "s01" / "dwi.nii.gz"
    assert first.mask == tmp_path / "lists" / "s01" / "mask.nii.gz"
    assert second.dwi == Path("/data/s02.nii.gz") and second.mask is None


def test_cohort_subjects_default_to_the_dwi_file_name_and_load_through_load_dwi(tmp_path):
    dwi, bvals, bvecs = real_volume_paths("small_25")
    listing = tmp_path / "cohort.tsv"
    listing.write_text(f"dwi\tbvals\tbvecs\n{dwi}\t{bvals}\t{bvecs}\n")
    (subject,) = read_cohort(listing)
    assert subject.subject == dwi.name.removesuffix(".nii.gz") and subject.mask is None
    assert subject.check().shape == (10, 8, 2, 26)
    assert subject.load().dwi.shape == (10, 8, 2, 26)


def test_cohort_default_names_take_the_folder_when_file_names_repeat(tmp_path):
    listing = tmp_path / "cohort.tsv"
    listing.write_text(
        "dwi\tbvals\tbvecs\tsubject\n"
        "sub-01/dwi.nii.gz\tb\tv\t\nsub-02/dwi.nii.gz\tb\tv\t\nsub-03_dwi.nii\tb\tv\t\nx.nii\tb\tv\tthird\n"
    )
    assert [s.subject for s in read_cohort(listing)] == ["sub-01_dwi", "sub-02_dwi", "sub-03_dwi", "third"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dwi\tbvals\n", r"lacks the column\(s\) \['bvecs'\]"),
        ("dwi\tbvals\tbvecs\n", "has no subject"),
        ("dwi\tbvals\tbvecs\na\t\tc\n", "row 1 of the cohort list has no bvals"),
        ("subject\tdwi\tbvals\tbvecs\nx\ta\tb\tc\nx\td\te\tf\n", r"names the subject\(s\) \['x'\] more than once"),
        ("subject\tdwi\tbvals\tbvecs\n../up\ta\tb\tc\n", r"names subject\(s\) \['../up'\] that cannot be folder names"),
    ],
)
def test_bad_cohort_lists_are_refused(tmp_path, text, message):
    listing = tmp_path / "cohort.tsv"
    listing.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_cohort(listing)
