"""Tests of equidmri.recon.checkpoint: atomic writes and validated reads."""

import pytest
import torch

from equidmri.nn.models import SHDUNet
from equidmri.recon.checkpoint import TMP_PREFIX, load_checkpoint, save_checkpoint


def _net():
    return SHDUNet(2, n_iso=2, nside=2, widths=(3, 3), kernel_sizes=(3, 1), cheb_order=2)


def test_checkpoint_round_trip_restores_the_network(tmp_path):
    net = _net()
    with torch.no_grad():
        net(torch.randn(1, 2, 2, 2, 2, 24))  # train-mode pass: BatchNorm statistics move
    net.eval()
    meta = {"nside": 2, "widths": [3, 3], "note": "ünïcode"}
    path = save_checkpoint(tmp_path / "model.pt", {"state_dict": net.state_dict(), "meta": meta})
    assert path == tmp_path / "model.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temporary file left
    state = load_checkpoint(path)
    assert state["meta"] == meta
    fresh = _net()
    fresh.load_state_dict(state["state_dict"])
    x = torch.randn(1, 2, 3, 2, 2, 24)
    for a, b in zip(fresh.eval()(x), net(x)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_save_checkpoint_replaces_an_existing_file(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"state_dict": {}, "meta": {"epoch": 1}})
    save_checkpoint(str(path), {"state_dict": {}, "meta": {"epoch": 2}})
    assert load_checkpoint(str(path))["meta"] == {"epoch": 2}
    assert not (tmp_path / (TMP_PREFIX + "model.pt")).exists()


def test_load_checkpoint_rejects_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*absent.pt"):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize("state", [[1, 2], {"state_dict": {}}, {"meta": {}}])
def test_load_checkpoint_rejects_other_files(tmp_path, state):
    path = tmp_path / "other.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"is not a readable equidmri checkpoint \(no 'state_dict' and 'meta'\)"):
        load_checkpoint(path)


def test_load_checkpoint_rejects_a_file_torch_cannot_read(tmp_path):
    path = tmp_path / "text.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="is not a readable equidmri checkpoint"):
        load_checkpoint(path)
