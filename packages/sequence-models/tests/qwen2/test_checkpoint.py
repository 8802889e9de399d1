"""HF-format checkpoint IO: round trips, sharding, name mapping and clear errors on bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from seedbed.sequence_models.qwen2.checkpoint import (
    CheckpointError,
    expected_shapes,
    hf_to_ours,
    load_pretrained,
    ours_to_hf,
    save_pretrained,
)
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import ByteTokenizer, load_tokenizer


def _model(**kw) -> Qwen2Model:
    torch.manual_seed(0)
    return Qwen2Model(Qwen2Config.tiny(**kw)).eval()


def _same(a: Qwen2Model, b: Qwen2Model) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_name_mapping_round_trip():
    assert (
        hf_to_ours("model.layers.3.self_attn.q_proj.weight") == "layers.3.self_attn.q_proj.weight"
    )
    assert hf_to_ours("lm_head.weight") == "lm_head.weight"
    assert hf_to_ours("embed_tokens.weight") == "embed_tokens.weight"  # bare HF Qwen2Model
    for name in expected_shapes(Qwen2Config.tiny(tie_word_embeddings=False)):
        assert hf_to_ours(ours_to_hf(name)) == name


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_single_file_round_trip(tmp_path, tie):
    m = _model(tie_word_embeddings=tie)
    save_pretrained(m, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / "model.safetensors.index.json").exists()
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert ("lm_head.weight" in keys) == (not tie)
    assert all(k.startswith(("model.", "lm_head.")) for k in keys)
    loaded = load_pretrained(tmp_path)
    _same(m, loaded)
    assert loaded.config == m.config


def test_sharded_round_trip_and_resave_removes_stale_shards(tmp_path):
    m = _model()
    save_pretrained(m, tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2
    assert all((tmp_path / s).is_file() for s in shards)
    _same(m, load_pretrained(tmp_path))
    save_pretrained(m, tmp_path)  # now a single file: old shards and index must go
    assert not (tmp_path / "model.safetensors.index.json").exists()
    assert not any((tmp_path / s).exists() for s in shards)
    _same(m, load_pretrained(tmp_path))


def test_dtype_is_kept_and_can_be_overridden(tmp_path):
    m = _model().to(torch.bfloat16)
    save_pretrained(m, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_pretrained(tmp_path).dtype == torch.bfloat16
    assert load_pretrained(tmp_path, dtype=torch.float32).dtype == torch.float32


def test_missing_shard_names_the_shard_and_a_tensor(tmp_path):
    save_pretrained(_model(), tmp_path, max_shard_size="40KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    victim = sorted(set(index["weight_map"].values()))[1]
    held = sorted(k for k, v in index["weight_map"].items() if v == victim)
    (tmp_path / victim).unlink()
    with pytest.raises(CheckpointError, match=victim) as e:
        load_pretrained(tmp_path)
    assert any(name in str(e.value) for name in held)


def test_shape_disagreeing_with_config_names_the_tensor(tmp_path):
    save_pretrained(_model(), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    name = "model.layers.1.self_attn.k_proj.weight"
    state[name] = torch.zeros(state[name].shape[0] + 16, state[name].shape[1])
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"model\.layers\.1\.self_attn\.k_proj\.weight.*\[48, 64\].*\[32, 64\]",
    ):
        load_pretrained(tmp_path)


def test_config_disagreeing_with_weights_names_the_tensor(tmp_path):
    save_pretrained(_model(), tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 100
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"model\.layers\.0\.mlp\.(down|gate|up)_proj\.weight"
    ):
        load_pretrained(tmp_path)


def test_missing_and_unknown_tensors(tmp_path):
    save_pretrained(_model(), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["model.norm.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensor 'model\.norm\.weight'"):
        load_pretrained(tmp_path)
    state["model.norm.weight"] = torch.ones(64)
    state["model.layers.0.extra.weight"] = torch.ones(3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.extra\.weight"):
        load_pretrained(tmp_path)


def test_bad_directories(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_pretrained(tmp_path)
    Qwen2Config.tiny().to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"neither model\.safetensors"):
        load_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="pickle"):
        load_pretrained(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pretrained(tmp_path)


def test_failed_save_leaves_existing_checkpoint(tmp_path):
    m = _model()
    save_pretrained(m, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class Broken(ByteTokenizer):
        def save(self, directory):
            raise OSError("disk full")

    other = _model(rope_theta=123.0)
    with torch.no_grad():
        other.norm.weight.fill_(3.0)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(other, tmp_path, tokenizer=Broken())
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def test_tokenizer_saved_and_found(tmp_path):
    m = _model()
    tok = ByteTokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<x>"])
    save_pretrained(m, tmp_path, tokenizer=tok)
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, ByteTokenizer)
    assert loaded.vocab_size == 260
    assert loaded.encode("a<x>") == [97, 259]


def test_quantized_model_refuses_hf_save(tmp_path):
    from seedbed.sequence_models.serving.quantize import quantize_model

    m = quantize_model(_model(), "int8")
    with pytest.raises(TypeError, match="before quantizing"):
        save_pretrained(m, tmp_path)
    assert not any(tmp_path.iterdir())


def test_max_shard_size_validation(tmp_path):
    with pytest.raises(ValueError, match="max_shard_size"):
        save_pretrained(_model(), tmp_path, max_shard_size="lots")
    with pytest.raises(ValueError, match="max_shard_size"):
        save_pretrained(_model(), tmp_path, max_shard_size=0)
