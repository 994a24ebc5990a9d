"""Tests of equidmri.recon.cohort: checks, preparation on disk, the distributed patch source, cohort training."""

import nibabel as nib
import numpy as np
import pytest
import torch
from dipy.core.gradients import gradient_table
from dipy.data import get_sphere
from dipy.sims.voxel import multi_tensor

from equidmri.data import Subject
from equidmri.dmri.response import TissueResponses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.cohort import (
    CohortPatches,
    check_cohort,
    prepare_cohort,
    reference_responses,
    train_cohort,
)
from equidmri.recon.model import NetworkConfig, SHDModel
from equidmri.recon.train import TrainConfig

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")

EVALS = np.array([1.7e-3, 0.3e-3, 0.3e-3])  # mm²/s, FA 0.80
SHAPE = (5, 4, 3)  # voxels
TINY_NET = NetworkConfig(widths=(4, 4, 4, 4))
SUBJECTS = ((40, 100.0, 1000.0), (44, 130.0, 1000.0), (42, 90.0, 1000.0))  # directions, S0, b (s/mm²)


def _write_subject(folder, name, n_directions, s0, bvalue, seed):
    """Single fibres along x, b=0 + ``n_directions`` of a seeded subset of repulsion100, identity affine."""
    rng = np.random.default_rng(seed)
    dirs = get_sphere(name="repulsion100").vertices[rng.permutation(100)[:n_directions]]
    bvals = np.r_[0.0, np.full(n_directions, bvalue)]
    bvecs = np.vstack([np.zeros(3), dirs])
    gtab = gradient_table(bvals, bvecs=bvecs)
    signal, _ = multi_tensor(gtab, EVALS[None], S0=s0, angles=[(90, 0)], fractions=[100], snr=None)
    dwi = np.broadcast_to(signal, SHAPE + signal.shape).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(dwi, np.eye(4)), folder / "dwi.nii.gz")
    np.savetxt(folder / "bvals", bvals[None])
    np.savetxt(folder / "bvecs", (bvecs * [-1.0, 1.0, 1.0]).T)  # FSL negates x for a det > 0 affine
    mask = np.ones(SHAPE, dtype=np.uint8)
    nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / "mask.nii.gz")
    return Subject(name, folder / "dwi.nii.gz", folder / "bvals", folder / "bvecs", folder / "mask.nii.gz")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    subjects = [_write_subject(root / f"s{i}", f"s{i}", *spec, seed=i) for i, spec in enumerate(SUBJECTS)]
    return subjects, prepare_cohort(subjects, root / "out")


def _model(prepared, **train):
    config = TrainConfig(**{"epochs": 2, "patch_size": 3, "seed": 5, "checkpoint_every": 1, **train})
    return SHDModel(prepared[0].gtab(), reference_responses(prepared), TINY_NET, config)


def test_prepared_signal_is_the_volume_normalised_as_a_single_volume_fit(cohort):
    subjects, prepared = cohort
    for subject, done in zip(subjects, prepared):
        data = subject.load()
        model = SHDModel(done.gtab(), done.responses, TINY_NET)
        expected = model._normalise(data.dwi, model.gtab, np.asarray(done.mask()), done.responses.s0[0], "dwi")
        np.testing.assert_array_equal(done.signal(), expected)
        assert isinstance(done.signal(), np.memmap) and done.signal().shape == SHAPE + (len(data.bvals),)
    assert [d.responses.s0[0] for d in prepared] == pytest.approx([s0 for _, s0, _ in SUBJECTS], rel=1e-6)


def test_reference_responses_are_the_median_of_the_subjects(cohort):
    _, prepared = cohort
    reference = reference_responses(prepared)
    assert reference.s0[0] == pytest.approx(100.0, rel=1e-6)  # median of 100, 130, 90
    np.testing.assert_allclose(reference.evals, np.median([p.responses.evals for p in prepared], axis=0))


def test_check_cohort_names_the_subject_with_other_shells_or_a_missing_file(cohort, tmp_path):
    subjects, _ = cohort
    assert check_cohort(subjects).bvals == pytest.approx([1000.0], abs=1)
    other = _write_subject(tmp_path / "b2000", "odd", 40, 100.0, 2000.0, seed=9)
    with pytest.raises(ValueError, match=r"cohort subject 'odd' has the shells \[2000.0\] s/mm², subject 's0'"):
        check_cohort([*subjects, other])
    missing = Subject("gone", tmp_path / "none.nii.gz", other.bvals, other.bvecs)
    with pytest.raises(FileNotFoundError, match=r"cohort subject 'gone': DWI file not found: .*none.nii.gz"):
        check_cohort([subjects[0], missing])


def test_batches_are_dealt_to_the_processes_without_overlap_and_are_seeded(cohort):
    _, prepared = cohort
    model = _model(prepared, batch_size=2)
    sources = [CohortPatches(model, prepared, model.train_config, rank=r, world_size=2) for r in (0, 1)]
    total = sources[0].batch_subject.size
    assert sources[0].steps_per_epoch() == sources[1].steps_per_epoch() == -(-total // 2)
    for source in sources:
        source.sampler.set_epoch(1)
    dealt = [list(source.sampler) for source in sources]
    assert set(dealt[0]) | set(dealt[1]) == set(range(total))
    assert len(set(dealt[0]) & set(dealt[1])) == 2 * len(dealt[0]) - total  # only the padding repeats
    first, again = sources[0].batch(1, 2), sources[1].batch(1, 2)
    for a, b in zip(first[1:], again[1:]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert sources[0].patches(1, 2) == sources[1].patches(1, 2)
    assert sources[0].patches(2, 2) != sources[0].patches(1, 2)  # another epoch, other patches


def test_each_batch_is_one_subject_read_with_its_own_acquisition(cohort):
    _, prepared = cohort
    model = _model(prepared, patches_per_epoch=2)
    source = CohortPatches(model, prepared, model.train_config)
    assert source.batch_subject.tolist() == [0, 0, 1, 1, 2, 2]
    for index in range(6):
        subject, x, y, m = source.batch(0, index)
        n_volumes = len(prepared[subject].bvals)
        assert x.shape == (1, 2, 3, 3, 3, model.sampler.operator.shape[1]) and y.shape == (1, 3, 3, 3, n_volumes)
        assert m.all()
        terms = source.loss_terms(model.net, (subject, x, y, m), _loss(model))
        assert torch.isfinite(terms["total"])


def _loss(model):
    from equidmri.recon.losses import DeconvLoss

    return DeconvLoss(model.train_config.weights)


def test_resumed_cohort_training_matches_the_uninterrupted_run(cohort, tmp_path):
    _, prepared = cohort
    straight = _model(prepared, epochs=3)
    history = train_cohort(straight, prepared, checkpoint_path=tmp_path / "a.pt")

    def interrupt(epoch, terms):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_cohort(_model(prepared, epochs=3), prepared, checkpoint_path=tmp_path / "b.pt", callback=interrupt)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 1
    resumed = _model(prepared, epochs=3)
    resumed_history = train_cohort(resumed, prepared, checkpoint_path=tmp_path / "b.pt", resume=True)
    assert resumed_history == history
    for name, value in straight.net.state_dict().items():
        torch.testing.assert_close(resumed.net.state_dict()[name], value, atol=0, rtol=0)
    meta = load_checkpoint(tmp_path / "a.pt")["meta"]
    assert meta["cohort"]["subjects"] == ["s0", "s1", "s2"] and meta["cohort"]["processes"] == 1
    assert TissueResponses.from_dict(meta["cohort"]["responses"]["s1"]).s0[0] == pytest.approx(130.0, rel=1e-6)


@pytest.mark.parametrize("fractions", ["b0", "nnls"])
def test_each_subject_completes_the_outputs_as_the_network_s_fraction_mode(cohort, fractions):
    _, prepared = cohort
    config = TrainConfig(epochs=1, patch_size=3, patches_per_epoch=1)
    model = SHDModel(
        prepared[0].gtab(),
        reference_responses(prepared),
        NetworkConfig(widths=(4, 4, 4, 4), fractions=fractions),
        config,
    )
    source = CohortPatches(model, prepared, config)
    for index in range(len(prepared)):
        assert source.parts(index).signal_model.fractions == model.fraction_mode == fractions
    subject, x, y, m = source.batch(0, 0)
    terms = source.loss_terms(model.net, (subject, x, y, m), _loss(model))
    assert torch.isfinite(terms["total"])
