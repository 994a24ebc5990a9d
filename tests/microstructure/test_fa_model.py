"""FAModel: inputs of any acquisition, training, checkpoint round trip, input errors."""

import numpy as np
import pytest
from dipy.core.gradients import gradient_table

from equidmri.microstructure import (
    FAModel,
    FATrainConfig,
    sample_tensors,
    scheme_gtab,
    simulate_acquisition,
    train_fa_model,
)
from equidmri.microstructure.schemes import JONES, SKARE
from equidmri.microstructure.tensor import tensor_signals


@pytest.fixture(scope="module")
def voxels():
    rng = np.random.default_rng(0)
    gtab = scheme_gtab(SKARE)
    return simulate_acquisition(sample_tensors(64, rng), gtab, rng), gtab


def test_fcn_inputs_are_the_scheme_matched_b0_normalised_signals(voxels):
    data, _ = voxels
    dense = np.vstack([JONES, -SKARE[::-1]])  # 12 directions; Skare's hide at rows 6..11, reversed and flipped
    gtab = gradient_table(np.r_[0.0, 0.0, np.full(12, 1000.0)], bvecs=np.vstack([np.zeros((2, 3)), dense]))
    signals = 500.0 * tensor_signals(data.tensors, gtab)
    inputs = FAModel("fcn", "skare").inputs(signals, gtab)
    np.testing.assert_allclose(inputs, tensor_signals(data.tensors, scheme_gtab(SKARE))[:, 1:], rtol=1e-6)


def test_training_lowers_the_loss_and_the_checkpoint_round_trips(voxels, tmp_path):
    data, gtab = voxels
    model = FAModel("scnn", "skare")
    losses = train_fa_model(model, data.signals, gtab, data.fa, FATrainConfig(epochs=3))
    assert losses[-1] < losses[0]
    model.save(tmp_path / "model.pt")
    loaded = FAModel.load(tmp_path / "model.pt")
    assert (loaded.name, loaded.scheme, loaded.nside) == ("scnn", "skare", model.nside)
    np.testing.assert_array_equal(loaded.predict(data.signals, gtab), model.predict(data.signals, gtab))


def test_inputs_refuse_acquisitions_that_cannot_determine_a_tensor(voxels):
    data, _ = voxels
    model = FAModel("scnn", "skare")
    five = scheme_gtab(SKARE[:5])
    with pytest.raises(ValueError, match="needs >= 6 non-collinear"):
        model.inputs(tensor_signals(data.tensors, five), five)
    shell_2000 = scheme_gtab(SKARE, bval=2000.0)
    with pytest.raises(ValueError, match="no volume at b ≈ 1000"):
        model.inputs(tensor_signals(data.tensors, shell_2000), shell_2000)
    with pytest.raises(ValueError, match="model must be one of"):
        FAModel("mlp", "skare")
