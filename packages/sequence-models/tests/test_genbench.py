"""The generation benchmarks run end to end at toy sizes and report well-formed metrics."""

from __future__ import annotations

import json

import pytest
import torch

from seedbed.sequence_models import genbench
from seedbed.sequence_models.qwen2.config import Qwen2Config

TINY = Qwen2Config.tiny(vocab_size=300, max_position_embeddings=1024)


def _by_name(metrics):
    for m in metrics:
        assert set(m) >= {"name", "value", "unit", "target", "higher_is_better", "passed", "note"}
    return {m["name"]: m for m in metrics}


@pytest.mark.oracle
def test_generate_vs_transformers_runs():
    pytest.importorskip("transformers")
    m = _by_name(genbench.run_generate_vs_transformers(TINY, [5, 3], 4, repeats=1))
    assert m["generate_same_tokens_as_transformers"]["value"] == 1.0
    assert m["generate_speedup_vs_transformers"]["value"] > 0
    assert m["generate_speedup_vs_transformers"]["target"] == 1.5


def test_kv_cache_benchmark_runs():
    m = _by_name(genbench.run_kv_cache_vs_no_cache(TINY, 32, 2, repeats=1))
    assert m["kv_cache_same_tokens"]["value"] == 1.0
    assert m["kv_cache_speedup"]["target"] == 10.0
    assert m["kv_cache_speedup"]["value"] > 0


def test_continuous_batching_benchmark_runs():
    m = _by_name(genbench.run_continuous_batching(TINY, 3, 3, repeats=1, curve=True))
    assert m["continuous_batching_same_tokens"]["value"] == 1.0
    assert len(m["continuous_batching_speedup"]["series"][0]["x"]) == 4


def test_speculative_benchmark_runs_and_self_draft_shares_weights():
    target = genbench._model(Qwen2Config.tiny(num_hidden_layers=3))
    draft = genbench.self_draft(target, 1)
    assert draft.config.num_hidden_layers == 1
    assert draft.layers[0].mlp.up_proj.weight.equal(target.layers[0].mlp.up_proj.weight)
    assert draft.embed_tokens.weight.equal(target.embed_tokens.weight)
    m = _by_name(genbench.run_speculative(TINY, 1, 2, 6, repeats=1))
    assert m["speculative_same_tokens_as_target"]["value"] == 1.0
    assert 0 <= m["speculative_acceptance_rate"]["value"] <= 1


def test_cli_runs_selected_benchmark(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake(full: bool = False, threads: int | None = 1):
        seen["threads"] = threads
        with genbench.torch_threads(threads):
            return genbench.run_kv_cache_vs_no_cache(TINY, 32, 2, repeats=1)

    fake.__name__ = "kv_cache_vs_no_cache"
    monkeypatch.setattr(genbench, "GENBENCHMARKS", [fake])
    out = tmp_path / "m.json"
    before = torch.get_num_threads()
    code = genbench.main(["--only", "kv_cache_vs_no_cache", "--json", str(out), "--threads", "2"])
    assert code in (0, 1)
    assert seen["threads"] == 2
    assert torch.get_num_threads() == before  # restored
    assert "kv_cache_speedup" in capsys.readouterr().out
    assert "kv_cache_vs_no_cache" in json.loads(out.read_text())


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with genbench.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with genbench.torch_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"), genbench.torch_threads(0):
        pass
    with (
        pytest.raises(TypeError, match="threads must be an int or None"),
        genbench.torch_threads(1.5),  # type: ignore[arg-type]
    ):
        pass
    assert torch.get_num_threads() == before
