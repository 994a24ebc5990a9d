"""SampledInputs: the network input lifted block by block equals the whole-volume lift."""

import numpy as np
import pytest
import torch

from equidmri.dmri.gradients import find_shells
from equidmri.dmri.preprocess import build_sampler
from equidmri.nn.models import SHDUNet
from equidmri.recon.infer import predict_volume
from equidmri.recon.inputs import SampledInputs
from equidmri.sphere import hemisphere

SHAPE = (7, 6, 5)
N_DIRECTIONS = 45  # supports lmax 8
FLOAT32 = {"atol": 1e-4, "rtol": 1e-5}  # float32 sums of 46 products, accumulated in another order


@pytest.fixture(scope="module")
def dwi_and_sampler():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(N_DIRECTIONS, 3))
    bvecs = np.vstack([np.zeros(3), g / np.linalg.norm(g, axis=1, keepdims=True)])
    bvals = np.r_[0.0, np.full(N_DIRECTIONS, 1000.0)]
    sampler = build_sampler(bvecs, find_shells(bvals), hemisphere.hemisphere_centres(4))
    dwi = rng.uniform(0.2, 1.0, size=SHAPE + (1 + N_DIRECTIONS,)).astype(np.float32)
    return dwi, sampler


def _mask():
    mask = np.zeros(SHAPE, bool)
    mask[0, 0, 0] = mask[6, 5, 4] = True
    mask[3, 2:5, 1] = True
    return mask


def test_a_block_is_the_whole_volume_lift_sliced(dwi_and_sampler):
    dwi, sampler = dwi_and_sampler
    inputs = SampledInputs(dwi, sampler)
    whole = torch.from_numpy(sampler(dwi))
    assert inputs.shape == tuple(whole.shape) == (2,) + SHAPE + (96,)
    block = (slice(None), slice(1, 5), slice(0, 6), slice(2, 3))
    torch.testing.assert_close(inputs[block], whole[block], **FLOAT32)


def test_b0_is_channel_zero_at_the_given_voxels_of_a_block(dwi_and_sampler):
    dwi, sampler = dwi_and_sampler
    mask = _mask()
    whole = sampler(dwi)
    inputs = SampledInputs(dwi, sampler)
    signal = inputs.signal((slice(None),) * 3, mask)
    np.testing.assert_array_equal(signal.numpy(), dwi[mask])
    np.testing.assert_allclose(inputs.b0(signal).numpy(), whole[0][mask][:, 0], rtol=1e-6)
    block = (slice(1, 5), slice(0, 6), slice(2, 4))
    np.testing.assert_array_equal(inputs.signal(block, mask[block]).numpy(), dwi[block][mask[block]])
    np.testing.assert_allclose(whole[0][mask][:, 0], dwi[mask][:, 0], rtol=1e-6)  # one b=0 volume


def test_inference_reads_tile_sized_blocks_and_matches_the_whole_lift(dwi_and_sampler, monkeypatch):
    dwi, sampler = dwi_and_sampler
    torch.manual_seed(2)
    net = SHDUNet(2, nside=4, widths=(4,), kernel_sizes=(3,), cheb_order=3).eval()
    mask = _mask()
    radius = net.receptive_radius
    assert radius == 2  # two 3x3x3 convolutions: a grown tile of 2 + 2 * 2 voxels is smaller than the volume
    expected, _ = predict_volume(net, torch.from_numpy(sampler(dwi)), torch.from_numpy(mask), tile=100)
    shapes = []
    read = SampledInputs.__getitem__
    monkeypatch.setattr(
        SampledInputs,
        "__getitem__",
        lambda self, index: shapes.append(tuple(s.stop - s.start for s in index[1:])) or read(self, index),
    )
    fodf, _ = predict_volume(net, SampledInputs(dwi, sampler), torch.from_numpy(mask), tile=2)
    torch.testing.assert_close(fodf, expected, atol=1e-5, rtol=0)
    assert len(shapes) > 1 and all(max(shape) <= 2 + 2 * radius < max(SHAPE) for shape in shapes)


def test_rejects_bad_shapes_and_indices(dwi_and_sampler):
    dwi, sampler = dwi_and_sampler
    with pytest.raises(ValueError, match=r"expected a \(X, Y, Z, 46\) DWI"):
        SampledInputs(dwi[..., :-1], sampler)
    for index in (0, (0, slice(None), slice(None), slice(None)), (slice(None),) * 3):
        with pytest.raises(IndexError, match="index with"):
            SampledInputs(dwi, sampler)[index]
