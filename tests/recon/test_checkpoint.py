"""Tests of equidmri.recon.checkpoint: atomic writes and validated, data-only reads."""

import os
import pickle

import pytest
import torch

from equidmri.nn.models import SHDUNet
from equidmri.recon.checkpoint import TMP_PREFIX, UnsafeCheckpointError, load_checkpoint, save_checkpoint


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


class _Payload:
    """Unpickling this object would create the folder ``target`` (stands for any code)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2"])
def test_load_checkpoint_refuses_a_pickle_that_would_run_code(tmp_path, writer):
    target = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    state = {"meta": {}, "state_dict": {}, "extra": _Payload(target)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    refusal = r"refused to load .*evil.pt: .*\(posix.mkdir\), which could run code"
    with pytest.raises(UnsafeCheckpointError, match=refusal):
        load_checkpoint(path)
    assert not target.exists()


def test_load_checkpoint_reads_every_entry_of_a_training_checkpoint(tmp_path):
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 3], gamma=0.1)
    net(torch.randn(1, 2, 2, 2, 2, 24))[0].sum().backward()
    optimizer.step()
    scheduler.step()
    generator = torch.Generator().manual_seed(4)
    state = {
        "meta": {"version": "0.1.0", "shells": [1000.0], "train": {"weights": {"tv": 0.5}}},
        "state_dict": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": 1,
        "history": [{"total": 0.5, "recon": 0.25}],
        "rng": generator.get_state(),
    }
    loaded = load_checkpoint(save_checkpoint(tmp_path / "model.pt", state))
    assert loaded["scheduler"] == scheduler.state_dict()  # holds a collections.Counter
    assert loaded["meta"] == state["meta"] and loaded["history"] == state["history"] and loaded["epoch"] == 1
    assert torch.equal(loaded["rng"], state["rng"])
    fresh = torch.optim.Adam(_net().parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    torch.testing.assert_close(fresh.state_dict()["state"], optimizer.state_dict()["state"], atol=0, rtol=0)
