"""The shipped pretrained model: its protocol range, loading, prediction and the training recipe."""

import numpy as np
import pytest
import torch

from equidmri.dmri.gradients import Shells, find_shells, make_gtab
from equidmri.dmri.response import estimate_responses
from equidmri.recon.checkpoint import load_checkpoint
from equidmri.recon.config import TrainConfig
from equidmri.recon.pretrained import (
    MULTI_SHELL,
    PRETRAINED_NETWORK,
    SINGLE_SHELL,
    SyntheticCohort,
    load_pretrained,
    out_of_range,
    pretrained_path,
    recipe_for,
    train_pretrained,
)
from equidmri.sims.phantoms import make_phantom
from equidmri.sims.synthesis import make_protocol

pytestmark = pytest.mark.filterwarnings("ignore:SH degree lowered:UserWarning")


def _shells(bvals: list[float], directions: list[int]) -> Shells:
    return find_shells(np.concatenate([[0.0]] + [np.full(n, b) for b, n in zip(bvals, directions)]))


@pytest.mark.parametrize(
    ("bvals", "directions", "words"),
    [
        ([1000.0, 2000.0], [30, 30], "2 diffusion-weighted shells; the shipped models read 1 or 3"),
        ([1000.0, 2000.0, 4000.0], [30, 30, 30], "b=4000 s/mm² is outside the multi-shell model's 2000-3500"),
        ([700.0, 1200.0, 2800.0], [16, 30, 8], "b=2800 s/mm² has 8 directions"),
        ([500.0], [30], "b=500"),
        ([3500.0], [30], "b=3500"),
        ([1000.0], [12], "12 directions"),
        ([1000.0], [200], "200 directions"),
    ],
)
def test_out_of_range_says_why(bvals, directions, words):
    assert words in out_of_range(_shells(bvals, directions))


@pytest.mark.parametrize(("bval", "n"), [(700.0, 20), (1000.0, 30), (3000.0, 150)])
def test_in_range(bval, n):
    assert out_of_range(_shells([bval], [n])) is None
    assert recipe_for(_shells([bval], [n])) is SINGLE_SHELL


@pytest.mark.parametrize("bvals", [[1000.0, 2000.0, 3000.0], [700.0, 1200.0, 2800.0]])  # HCP, MRtrix3's test volume
def test_three_shells_take_the_multi_shell_model(bvals):
    assert recipe_for(_shells(bvals, [90, 30, 16])) is MULTI_SHELL
    with pytest.raises(ValueError, match="does not apply: it has 2"):
        recipe_for(_shells(bvals[:2], [30, 30]))


@pytest.fixture(scope="module")
def phantom():
    rng = np.random.default_rng(5)
    protocol = make_protocol(rng, n_b0=2, shells=(1000.0,), directions_per_shell=32)
    ph = make_phantom(12, protocol, rng, snr=None)
    gtab = make_gtab(protocol.bvals, protocol.bvecs)
    return ph, gtab, estimate_responses(ph.dwi, gtab, ph.mask, find_shells(protocol.bvals))


def test_shipped_model_is_data_and_predicts(phantom):
    ph, gtab, responses = phantom
    state = load_checkpoint(pretrained_path())  # weights_only: the shipped file is plain data
    assert state["meta"]["network"] == PRETRAINED_NETWORK.to_dict()
    assert pretrained_path().stat().st_size < 4 * 2**20  # "a few MB at most"
    fit = load_pretrained(gtab, responses).predict(ph.dwi, ph.mask)
    assert fit.fodf_sh.shape == ph.mask.shape + (45,)  # refined: lmax 8
    assert np.isfinite(fit.fodf_sh).all() and np.abs(fit.fodf_sh[ph.mask]).sum() > 0
    assert not fit.fodf_sh[~ph.mask].any()


def test_load_pretrained_refuses_out_of_range(phantom):
    ph, gtab, responses = phantom
    bvals = np.array(gtab.bvals, dtype=float)
    bvals[bvals > 0] = 4000.0
    with pytest.raises(ValueError, match="b=4000"):
        load_pretrained(make_gtab(bvals, np.asarray(gtab.bvecs)), responses)


def test_synthetic_cohort_is_seeded_per_epoch_and_rank():
    config = TrainConfig(patch_size=6, patches_per_epoch=2, seed=1)
    source = SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu"))
    a = source.subject(3)
    b = SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu")).subject(3)  # another process, same epoch
    assert torch.equal(a[2], b[2]) and a[2] is not b[2]  # the same target signal, drawn again
    assert source.subject(3) is a  # the latest epoch's subject is kept (the template's, then epoch 0's batches)
    assert a[0].super_resolution and a[0].gtab.bvals.size > a[0].input_gtab.bvals.size
    other = SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu"), rank=1).subject(3)
    assert not torch.equal(a[2], other[2]) or a[2].shape != other[2].shape


def test_recipe_trains_a_loadable_checkpoint(tmp_path, phantom):
    ph, gtab, responses = phantom
    history = train_pretrained(tmp_path / "m.pt", epochs=1, patches_per_epoch=1, patch_size=6, progress=False)
    assert len(history) == 1 and np.isfinite(history[0]["total"])
    meta = load_checkpoint(tmp_path / "m.pt")["meta"]
    assert meta["pretrained"]["recipe"] == "single-shell" and meta["pretrained"]["shell_ranges"] == [[700.0, 3000.0]]
    fit = load_pretrained(gtab, responses, tmp_path / "m.pt").predict(ph.dwi, ph.mask)
    assert np.isfinite(fit.fodf_sh).all()


def test_supervised_term_is_the_true_fodf_distance_added_with_its_weight():
    from equidmri.recon.losses import DeconvLoss

    config = TrainConfig(patch_size=6, patches_per_epoch=1, seed=2)
    source = SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu"), supervised=3.0)
    model = source.subject(0)[0]
    batch = next(source.batches(0))
    x, truth = batch[1], batch[-1]
    assert truth.shape == x.shape[:1] + x.shape[2:5] + (45,)  # the true fODF of each voxel, lmax 8
    loss_fn = DeconvLoss(config.weights)
    terms = source.loss_terms(model.net, batch, loss_fn)
    plain = SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu")).loss_terms(
        model.net, batch[:-1] + (None,), loss_fn
    )
    assert "fodf" in terms and "fodf" not in plain and terms["fodf"] > 0
    torch.testing.assert_close(terms["total"], plain["total"] + 3.0 * terms["fodf"])
    with pytest.raises(ValueError, match="supervised weight"):
        SyntheticCohort(config, SINGLE_SHELL, torch.device("cpu"), supervised=-1.0)


def test_multi_shell_recipe_draws_three_shells_in_range_and_three_tissues():
    config = TrainConfig(patch_size=6, patches_per_epoch=1, seed=4)
    model = SyntheticCohort(config, MULTI_SHELL, torch.device("cpu")).subject(0)[0]
    shells = model.shells.bvals
    assert shells.size == 3 and all(lo <= b <= hi for b, (lo, hi) in zip(shells, MULTI_SHELL.shell_ranges))
    assert np.all(np.diff(shells) >= 400) and model.responses.tissues == ("wm", "gm", "csf")
    read = model.input_shells.n_directions
    assert model.shells.n_directions.tolist() == [90] * 3 and all(12 <= n <= 90 for n in read)
    assert model.fraction_mode == "nnls"


def test_shipped_multi_shell_model_is_data_and_predicts_three_tissues(phantom):
    rng = np.random.default_rng(6)
    protocol = make_protocol(rng, n_b0=2, shells=(1000.0, 2000.0, 3000.0), directions_per_shell=20)
    ph = make_phantom(12, protocol, rng, snr=None)
    gtab = make_gtab(protocol.bvals, protocol.bvecs)
    responses = estimate_responses(ph.dwi, gtab, ph.mask, find_shells(protocol.bvals))
    state = load_checkpoint(pretrained_path(MULTI_SHELL))
    assert state["meta"]["network"] == MULTI_SHELL.network.to_dict()
    assert pretrained_path(MULTI_SHELL).stat().st_size < 4 * 2**20
    fit = load_pretrained(gtab, responses).predict(ph.dwi, ph.mask, refine_steps=5)
    assert fit.tissues == ("wm", "gm", "csf") and fit.fodf_sh.shape == ph.mask.shape + (45,)
    assert np.isfinite(fit.fractions).all() and (fit.fractions[ph.mask] >= 0).all()
    with pytest.raises(ValueError, match=r"multi-shell pretrained model takes responses \('wm', 'gm', 'csf'\)"):
        load_pretrained(gtab, phantom[2])  # a WM response alone


def test_refine_tv_couples_the_mask_voxels(phantom):
    ph, gtab, responses = phantom
    model = load_pretrained(gtab, responses)
    alone = model.predict(ph.dwi, ph.mask, refine_steps=10).fodf_sh
    coupled = model.predict(ph.dwi, ph.mask, refine_steps=10, refine_tv=1e-2).fodf_sh
    assert np.isfinite(coupled).all() and not coupled[~ph.mask].any()
    assert np.abs(coupled - alone)[ph.mask].max() > 1e-4
    with pytest.raises(ValueError, match="refine_tv must be >= 0"):
        model.predict(ph.dwi, ph.mask, refine_tv=-1.0)
