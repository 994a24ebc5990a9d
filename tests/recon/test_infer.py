"""Tests of equidmri.recon.infer: tiled whole-volume inference does not depend on the tile size."""

import pytest
import torch

from equidmri.nn.models import SHDUNet
from equidmri.recon.infer import bounding_box, predict_volume, tile_grid

SHAPE = (7, 6, 5)


@pytest.fixture(scope="module")
def net_and_inputs():
    torch.manual_seed(1)
    net = SHDUNet(2, n_iso=2, nside=4, widths=(4, 4, 4), kernel_sizes=(3, 1, 1), cheb_order=3)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # a few BatchNorm updates: running statistics away from (0, 1)
            net(torch.randn(2, 2, 4, 4, 4, net.grid.n_vertices) * 2 + 0.5)
    net.eval()
    inputs = torch.randn((2,) + SHAPE + (net.grid.n_vertices,))
    with torch.no_grad():
        fodf, iso = net(inputs.unsqueeze(0))
    return net, inputs, fodf[0], iso[0]


def _box(*shape):
    return tuple(slice(0, n) for n in shape)


def test_tile_grid_origins():
    assert tile_grid(_box(7, 6, 5), 3) == [(x, y, z) for x in (0, 3, 6) for y in (0, 3) for z in (0, 3)]
    assert tile_grid(_box(7, 6, 5), 100) == [(0, 0, 0)]
    assert tile_grid((slice(2, 7), slice(1, 2), slice(0, 5)), 4) == [(2, 1, 0), (2, 1, 4), (6, 1, 0), (6, 1, 4)]


def test_bounding_box_of_a_mask():
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[1, 4, 2] = mask[3, 2, 4] = True
    assert bounding_box(mask) == (slice(1, 4), slice(2, 5), slice(2, 5))


@pytest.mark.parametrize("tile", (3, 100))
def test_tiled_inference_equals_one_whole_volume_pass(net_and_inputs, tile):
    net, inputs, fodf, iso = net_and_inputs
    assert net.receptive_radius == 4 > tile or tile == 100  # halos really cross tile borders
    tiled_fodf, tiled_iso = predict_volume(net, inputs, tile=tile)  # no mask: every voxel, in C order
    assert tiled_fodf.std() > 1e-3  # a generic output, not a constant
    torch.testing.assert_close(tiled_fodf, fodf.flatten(0, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(tiled_iso, iso.flatten(0, 2), atol=1e-5, rtol=0)


def test_outputs_are_the_mask_voxels_in_c_order(net_and_inputs):
    net, inputs, fodf, _ = net_and_inputs
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[2:5, 1:3, 1:4] = True
    tiled_fodf, tiled_iso = predict_volume(net, inputs, mask, tile=100)
    assert tiled_fodf.shape == (18, net.grid.n_vertices) and tiled_iso.shape == (18, 2)
    torch.testing.assert_close(tiled_fodf, fodf[mask], atol=1e-5, rtol=0)


def test_only_mask_voxels_are_computed_across_tiles(net_and_inputs):
    net, inputs, fodf, iso = net_and_inputs
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[0, 0, 0] = mask[6, 5, 4] = mask[3, 2:5, 1] = True  # the box is the whole volume; tiles of 3 cut the mask
    tiled_fodf, tiled_iso = predict_volume(net, inputs, mask, tile=3)
    torch.testing.assert_close(tiled_fodf, fodf[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(tiled_iso, iso[mask], atol=1e-5, rtol=0)


def test_reduce_keeps_its_per_tile_results_at_the_right_voxels(net_and_inputs):
    net, inputs, fodf, iso = net_and_inputs
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[0, 0, 0] = mask[6, 5, 4] = mask[3, 2:5, 1] = True
    seen = []

    def reduce(tile_fodf, tile_iso, grown, wanted):  # each voxel's total and its x index, from the block
        seen.append(int(wanted.sum()))
        x = torch.arange(grown[0].start, grown[0].stop)[:, None, None].expand(wanted.shape)[wanted]
        return tile_fodf.sum(-1, keepdim=True), torch.cat([tile_iso, x[:, None].to(tile_iso.dtype)], -1)

    total, extra = predict_volume(net, inputs, mask, tile=3, reduce=reduce)
    assert total.shape == (5, 1) and extra.shape == (5, 3) and sum(seen) == 5 and len(seen) > 1
    torch.testing.assert_close(total[:, 0], fodf[mask].sum(-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(extra[:, :2], iso[mask], atol=1e-5, rtol=0)
    assert extra[:, 2].tolist() == mask.nonzero()[:, 0].float().tolist()


def test_predict_volume_runs_the_net_in_eval_mode_without_changing_it(net_and_inputs):
    net, inputs, fodf, _ = net_and_inputs
    net.train()
    tiled_fodf, _ = predict_volume(net, inputs, tile=100)
    assert net.training  # predict_volume works on a folded eval-mode copy
    torch.testing.assert_close(tiled_fodf, fodf.flatten(0, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("tile", (0, -3))
def test_tile_grid_rejects_non_positive_tiles(tile):
    with pytest.raises(ValueError, match="tile size must be >= 1"):
        tile_grid(_box(4, 4, 4), tile)
