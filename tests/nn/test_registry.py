"""Tests of equidmri.nn.models.registry: model names map to configured networks."""

import pytest

from equidmri.nn.models import MODELS, SHDUNet, build_model


@pytest.mark.parametrize(("name", "hemisphere"), [("shd", True), ("shd-tv", True), ("rt-esd", False)])
def test_build_model_fixes_the_sphere_domain(name, hemisphere):
    net = build_model(name, in_channels=2, nside=2, widths=(2, 2), kernel_sizes=(1, 1), hemisphere=not hemisphere)
    assert isinstance(net, SHDUNet)
    assert net.hemisphere is hemisphere
    assert net.grid.n_vertices == (24 if hemisphere else 48)


def test_registry_names():
    assert sorted(MODELS) == ["rt-esd", "shd", "shd-tv"]


def test_build_model_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown model 'esd'; choose from \['rt-esd', 'shd', 'shd-tv'\]"):
        build_model("esd", in_channels=2)
