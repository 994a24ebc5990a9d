"""Tests of the learned harmonizers (SH-ResNet, cyclic network) and their torch parts."""

import numpy as np
import pytest
import torch
from dipy.reconst.dti import TensorModel

from equidmri.dmri.gradients import make_gtab
from equidmri.harmonize import get_harmonizer, paired_subset, split_cohort
from equidmri.harmonize.networks import SHResidualNet, cycle_loss, tensor_design, tensor_fa_md
from equidmri.harmonize.shells import attenuation
from equidmri.sims.scanners import ScannerParams, phantom_pair, scanner_protocol

SCANNER_B = ScannerParams(directions=30, direction_seed=2, snr=None)  # the protocol of the cohort's site B
FAST = {"hidden": 8, "crop": 12, "seed": 0}  # small networks on the 12³ cohort: each fit takes about a second


def held_out_signal_mse(harmonizer, subjects):
    errors = []
    for subject in subjects:
        harmonized = harmonizer.apply(subject.a.dwi, subject.a.gtab())
        gap = attenuation(harmonized.dwi, harmonized.bvals) - attenuation(subject.b.dwi, subject.b.bvals)
        errors.append(np.mean(gap[subject.mask] ** 2))
    return np.array(errors)


@pytest.mark.parametrize(
    ("name", "options"),
    [("SH-ResNet", {"steps": 40}), ("cyclic", {"steps": 40}), ("cyclic", {"steps": 30, "paired_percent": 100})],
)
def test_each_learned_method_lowers_the_held_out_signal_error_under_per_shell_gains(gain_cohort, name, options):
    splits = split_cohort(gain_cohort)
    baseline = held_out_signal_mse(get_harmonizer("baseline").fit(splits["train"]), splits["test"])
    learned = get_harmonizer(name, **FAST, **options).fit(splits["train"])
    errors = held_out_signal_mse(learned, splits["test"])
    assert learned.losses[-1] < learned.losses[0]
    assert errors.max() < 0.8 * baseline.min(), (errors, baseline)


def test_differentiable_tensor_fit_gives_dipys_fa_and_md_on_noise_free_tensors():
    rng = np.random.default_rng(3)
    protocol = scanner_protocol(SCANNER_B)
    bvals, bvecs = protocol.bvals, protocol.bvecs
    rotations = np.linalg.qr(rng.normal(size=(50, 3, 3)))[0]
    eigenvalues = rng.uniform(0.1e-3, 2e-3, size=(50, 3))  # mm²/s; attenuation >= exp(-6), above the clamp
    eigenvalues[0] = 0.8e-3  # one isotropic tensor: FA 0
    tensors = np.einsum("nij,nj,nkj->nik", rotations, eigenvalues, rotations)
    signal = np.exp(-bvals * np.einsum("vi,nij,vj->nv", bvecs, tensors, bvecs))  # S0 = 1
    fit = TensorModel(make_gtab(bvals, bvecs), fit_method="LS").fit(signal)
    dw = bvals > 50
    pinv = torch.as_tensor(np.linalg.pinv(tensor_design(bvals[dw], bvecs[dw])))
    fa, md = tensor_fa_md(torch.as_tensor(signal[:, dw]), pinv)
    np.testing.assert_allclose(md.numpy(), fit.md, rtol=1e-6)
    np.testing.assert_allclose(fa.numpy(), fit.fa, atol=1e-5)
    assert fa[0] < 1e-5 and fa[1:].min() > 0.01


def test_cycle_loss_is_zero_for_identity_generators_and_not_otherwise():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 5, 5, 15)
    mask = torch.ones(2, 5, 5, 5, dtype=torch.bool)
    forward, backward = SHResidualNet(15, 4), SHResidualNet(15, 4)  # untrained: the identity
    scale = torch.ones(15)
    assert cycle_loss(x, backward(forward(x)), mask, scale).item() == 0.0
    with torch.no_grad():
        forward.linear.weight.copy_(0.1 * torch.eye(15))  # A -> B multiplies by 1.1, B -> A is still the identity
    assert cycle_loss(x, backward(forward(x)), mask, scale).item() == pytest.approx(0.01 * x.square().mean().item())


def test_semi_supervised_training_uses_only_the_paired_subsets_pairs(gain_cohort):
    train = split_cohort(gain_cohort)["train"]
    used = {}
    for percent in (0, 20, 50, 100):
        harmonizer = get_harmonizer("cyclic", paired_percent=percent, steps=1, **FAST).fit(train)
        expected = paired_subset(train, percent, seed=FAST["seed"])
        used[percent] = {train[i].name for i in harmonizer.paired_indices}
        assert used[percent] == {subject.name for subject in expected}
    assert used[0] == set() and used[20] <= used[50] <= used[100] and len(used[100]) == len(train)
    with pytest.raises(ValueError, match="the SH-ResNet is supervised"):
        get_harmonizer("SH-ResNet", steps=1, **FAST).fit_sites([s.a for s in train], [s.b for s in train])


def test_a_saved_learned_harmonizer_applies_as_the_fitted_one_and_refuses_other_protocols(gain_cohort, tmp_path):
    from equidmri.harmonize.model_file import load_harmonizer, save_harmonizer

    subject = gain_cohort[-1]
    fitted = get_harmonizer("cyclic", paired_percent=50, steps=3, **FAST).fit(gain_cohort[:4])
    save_harmonizer(tmp_path / "cyclic.pt", "cyclic", fitted)
    name, loaded = load_harmonizer(tmp_path / "cyclic.pt")
    assert name == "cyclic" and loaded.options() == fitted.options()
    expected, got = (h.apply(subject.a.dwi, subject.a.gtab()).dwi for h in (fitted, loaded))
    np.testing.assert_array_equal(got, expected)
    other = phantom_pair(60, 8, ScannerParams(directions=60, snr=None), SCANNER_B)  # lmax 6, not 4
    with pytest.raises(ValueError, match=r"the model was trained on shells/SH degrees \[\(1000.0, 4\)"):
        loaded.apply(other.a.dwi, other.a.gtab())
