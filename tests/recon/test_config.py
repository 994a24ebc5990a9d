"""The settings dataclasses: torch-free, and still importable from their former homes."""

import inspect
import subprocess
import sys

import pytest

import equidmri
from equidmri.recon import config, infer, losses, model, train


@pytest.mark.parametrize(
    ("module", "name"),
    [
        (train, "TrainConfig"),
        (train, "LossWeights"),
        (train, "LEARNING_RATE"),
        (losses, "LossWeights"),
        (model, "NetworkConfig"),
        (model, "LEGACY_ARCHITECTURES"),
        (infer, "DEFAULT_TILE"),
    ],
)
def test_former_homes_re_export_the_same_objects(module, name):
    assert getattr(module, name) is getattr(config, name)
    assert name in module.__all__


def test_public_names_come_from_the_config_module():
    assert equidmri.TrainConfig is config.TrainConfig and equidmri.NetworkConfig is config.NetworkConfig


def test_config_module_loads_no_torch():
    code = (
        "import sys; from equidmri.recon.config import NetworkConfig, TrainConfig; "
        "TrainConfig(); NetworkConfig(); print(sorted(n for n in ('torch', 'dipy', 'healpy') if n in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_network_config_defaults_are_the_network_defaults():
    from equidmri.nn.models.unet import SHDUNet

    parameters = inspect.signature(SHDUNet).parameters
    assert config.NetworkConfig().widths == parameters["widths"].default == (8, 16, 32, 64)
    assert config.NetworkConfig().kernel_sizes == parameters["kernel_sizes"].default == (3, 1, 1, 1)
