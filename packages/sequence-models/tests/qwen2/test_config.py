"""Qwen2Config: validation, presets and the HF config.json mapping."""

from __future__ import annotations

import json

import pytest

from seedbed.sequence_models.qwen2.config import Qwen2Config


def test_defaults_and_derived_fields():
    c = Qwen2Config.tiny()
    assert c.head_dim == 16
    assert c.layer_types == ["full_attention"] * 2
    assert c.layer_window(0) is None
    assert Qwen2Config.tiny(eos_token_id=[3, 4]).eos_token_ids == [3, 4]
    assert Qwen2Config.tiny(eos_token_id=5).eos_token_ids == [5]
    assert 15e6 < Qwen2Config.small_20m().num_parameters() < 25e6


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        (dict(hidden_size=0), "hidden_size must be a positive int"),
        (dict(num_key_value_heads=3), "multiple of num_key_value_heads"),
        (dict(hidden_size=65), "divisible by num_attention_heads"),
        (dict(head_dim=15), "even"),
        (dict(rope_theta=0.0), "rope_theta"),
        (dict(layer_types=["full_attention"]), "layer_types must have"),
        (dict(layer_types=["full_attention", "local"]), "'full_attention' or"),
        (dict(layer_types=["full_attention", "sliding_attention"]), "sliding_window"),
        (dict(vocab_size=True), "vocab_size"),
    ],
)
def test_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Qwen2Config.tiny(**kw)


def test_hf_dict_round_trip(tmp_path):
    c = Qwen2Config.tiny(
        tie_word_embeddings=False,
        sliding_window=8,
        layer_types=["full_attention", "sliding_attention"],
        eos_token_id=2,
    )
    c.to_json_file(tmp_path / "config.json")
    d = json.loads((tmp_path / "config.json").read_text())
    assert d["model_type"] == "qwen2"
    assert d["rope_parameters"]["rope_theta"] == c.rope_theta
    assert d["use_sliding_window"] is True
    assert d["max_window_layers"] == 1
    assert Qwen2Config.from_json_file(tmp_path / "config.json") == c


def test_reads_transformers_4_layout():
    d = {
        "model_type": "qwen2",
        "vocab_size": 100,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rope_theta": 12345.0,
        "use_sliding_window": True,
        "sliding_window": 16,
        "max_window_layers": 2,
        "torch_dtype": "bfloat16",
        "rope_scaling": None,
    }
    c = Qwen2Config.from_hf_dict(d)
    assert c.rope_theta == 12345.0
    assert c.layer_types == ["full_attention", "full_attention", "sliding_attention"]


def test_refuses_unsupported_configs():
    base = Qwen2Config.tiny().to_hf_dict()
    with pytest.raises(ValueError, match="model_type"):
        Qwen2Config.from_hf_dict({**base, "model_type": "llama"})
    with pytest.raises(ValueError, match="rope_type"):
        Qwen2Config.from_hf_dict(
            {**base, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}
        )
    with pytest.raises(ValueError, match="hidden_act"):
        Qwen2Config.from_hf_dict({**base, "hidden_act": "gelu"})
    with pytest.warns(UserWarning, match="mystery"):
        Qwen2Config.from_hf_dict({**base, "mystery": 1})


def test_sliding_window_ignored_unless_enabled():
    d = Qwen2Config.tiny().to_hf_dict()
    d["sliding_window"] = 4096  # HF writes this even with use_sliding_window false
    assert Qwen2Config.from_hf_dict(d).layer_types == ["full_attention"] * 2


@pytest.mark.oracle
def test_config_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    c = Qwen2Config.tiny(rope_theta=777.0, tie_word_embeddings=False)
    c.to_json_file(tmp_path / "config.json")
    hc = transformers.AutoConfig.from_pretrained(tmp_path)
    assert hc.model_type == "qwen2"
    assert hc.rope_parameters["rope_theta"] == 777.0
    assert hc.num_key_value_heads == 2
    assert hc.tie_word_embeddings is False
    hc.save_pretrained(tmp_path / "hf")
    assert Qwen2Config.from_json_file(tmp_path / "hf" / "config.json") == c
