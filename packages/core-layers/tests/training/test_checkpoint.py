import os

import pytest
import torch
from torch import nn

from seedbed.core_layers.training import checkpoint as ckpt_mod
from seedbed.core_layers.training import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def test_save_load_round_trip_weights_only(tmp_path):
    m = _model()
    state = {"step": 3, "t": torch.arange(4), "nested": {"x": (1, 2.5, None)}}
    path = save_checkpoint(tmp_path, 3, m, state)
    assert path.name == "step_00000003"
    assert sorted(os.listdir(path)) == [
        "model.safetensors",
        "trainer_state.pt",
    ]
    other = _model(seed=1)
    loaded = load_checkpoint(path, other)
    assert loaded["step"] == 3
    assert torch.equal(loaded["t"], torch.arange(4))
    assert loaded["nested"]["x"] == (1, 2.5, None)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), other.parameters()))


def test_tied_weights_are_saved(tmp_path):
    m = _model()
    m[1].weight = nn.Parameter(torch.randn(2, 4))
    emb = nn.Module()
    emb.a = nn.Linear(4, 4, bias=False)
    emb.b = nn.Linear(4, 4, bias=False)
    emb.b.weight = emb.a.weight  # tied
    path = save_checkpoint(tmp_path, 1, emb, {})
    other = nn.Module()
    other.a = nn.Linear(4, 4, bias=False)
    other.b = nn.Linear(4, 4, bias=False)
    other.b.weight = other.a.weight
    load_checkpoint(path, other)
    assert torch.equal(other.a.weight, emb.a.weight)


def test_keep_last_and_latest(tmp_path):
    m = _model()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, m, {"step": step}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert latest_checkpoint(tmp_path).name == "step_00000004"
    assert latest_checkpoint(tmp_path / "absent") is None


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    m = _model()
    save_checkpoint(tmp_path, 5, m, {"step": 5})

    def exploding_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", exploding_save)
    with pytest.raises(OSError, match=r"disk full"):
        save_checkpoint(tmp_path, 6, m, {"step": 6})
    with pytest.raises(OSError, match=r"disk full"):
        save_checkpoint(tmp_path, 5, m, {"step": 5, "again": True})  # re-saving an existing step
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000005"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert load_checkpoint(tmp_path / "step_00000005", _model(seed=3)) == {"step": 5}


def test_stale_temp_dirs_are_ignored_and_cleaned(tmp_path):
    (tmp_path / ".tmp-step_00000009-abc").mkdir()
    (tmp_path / ".tmp-step_00000009-abc" / "model.safetensors").write_bytes(b"torn")
    assert list_checkpoints(tmp_path) == []
    save_checkpoint(tmp_path, 1, _model(), {})
    assert [p.name for p in tmp_path.iterdir()] == ["step_00000001"]


def test_load_rejects_incomplete_and_mismatched(tmp_path):
    (tmp_path / "step_00000001").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing model.safetensors"):
        load_checkpoint(tmp_path / "step_00000001", _model())
    path = save_checkpoint(tmp_path, 2, _model(), {})
    with pytest.raises(RuntimeError):
        load_checkpoint(path, nn.Linear(3, 4))  # strict: keys differ
