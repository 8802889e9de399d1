"""Qwen2Model against HF transformers (oracle) and against itself (cache, padding, windows)."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.generation.generate import generate
from seedbed.sequence_models.qwen2.checkpoint import load_pretrained, save_pretrained
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model

VOCAB = 300


def _hf_model(tmp_path, *, kv_heads: int, tie: bool, sliding: int | None = None, layers: int = 2):
    transformers = pytest.importorskip("transformers")
    kw = {}
    if sliding is not None:
        kw = dict(use_sliding_window=True, sliding_window=sliding, max_window_layers=1)
    cfg = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tie,
        rope_theta=50000.0,
        rms_norm_eps=1e-5,
        initializer_range=0.2,  # well separated logits: greedy ties are not an issue
        **kw,
    )
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # HF initialises biases and norms trivially; make them matter
        for name, p in hf.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path)
    return hf


def _padded_batch(generator: torch.Generator, lengths: list[int], *, left: bool):
    p = max(lengths)
    ids = torch.randint(0, VOCAB, (len(lengths), p), generator=generator)
    mask = torch.zeros(len(lengths), p, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, p - n :] = 1
        else:
            mask[i, :n] = 1
    return ids, mask


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("kv_heads", "tie"),
    [(2, True), (2, False), (4, True), (1, False)],
    ids=["GQA2-tied", "GQA2-untied", "MHA-tied", "MQA-untied"],
)
@pytest.mark.parametrize("left", [True, False], ids=["leftpad", "rightpad"])
def test_logits_match_transformers_on_padded_batch(tmp_path, kv_heads, tie, left):
    hf = _hf_model(tmp_path, kv_heads=kv_heads, tie=tie)
    model = load_pretrained(tmp_path)
    assert model.config.tie_word_embeddings == tie
    assert model.config.num_key_value_heads == kv_heads
    g = torch.Generator().manual_seed(1)
    ids, mask = _padded_batch(g, [11, 7, 3, 11], left=left)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, position_ids=pos).logits
        out = model(ids, attention_mask=mask)
    real = mask.bool()
    rel = (out[real] - ref[real]).abs().max() / ref[real].abs().max()
    assert rel < 1e-5, f"relative error {rel:.2e}"


@pytest.mark.oracle
def test_logits_match_transformers_with_sliding_window(tmp_path):
    hf = _hf_model(tmp_path, kv_heads=2, tie=True, sliding=4, layers=3)
    model = load_pretrained(tmp_path)
    assert model.windows == [None, 4, 4]
    ids = torch.randint(0, VOCAB, (2, 13), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(ids).logits
        out = model(ids)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("kv_heads", "tie"), [(2, True), (1, False)], ids=["GQA-tied", "MQA-untied"]
)
def test_greedy_generation_matches_transformers_64_steps(tmp_path, kv_heads, tie):
    hf = _hf_model(tmp_path, kv_heads=kv_heads, tie=tie)
    model = load_pretrained(tmp_path)
    g = torch.Generator().manual_seed(3)
    ids, mask = _padded_batch(g, [9, 4, 6], left=True)
    with torch.no_grad():
        ref = hf.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=64,
            min_new_tokens=64,
            do_sample=False,
            pad_token_id=0,
        )[:, ids.shape[1] :]
    out = generate(model, ids, attention_mask=mask, max_new_tokens=64, ignore_eos=True)
    assert [len(s) for s in out.sequences] == [64, 64, 64]
    for i in range(3):
        assert out.sequences[i] == ref[i].tolist(), f"row {i} differs"


@pytest.mark.oracle
def test_transformers_sharded_checkpoint_loads(tmp_path):
    hf = _hf_model(tmp_path / "single", kv_heads=2, tie=False)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="60KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    model = load_pretrained(tmp_path / "sharded")
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ref = hf(ids).logits
        out = model(ids)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


@pytest.mark.oracle
def test_saved_checkpoint_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = Qwen2Model(Qwen2Config.tiny(tie_word_embeddings=False, rope_theta=5e5)).eval()
    save_pretrained(model, tmp_path)
    hf = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 259, (2, 9))
    with torch.no_grad():
        ref = hf(ids).logits
        out = model(ids)
    assert (out - ref).abs().max() / ref.abs().max() < 1e-5


def _tiny(**kw) -> Qwen2Model:
    torch.manual_seed(0)
    m = Qwen2Model(Qwen2Config.tiny(**kw)).eval()
    m.reset_parameters(0.2)
    return m


@pytest.mark.parametrize("window", [None, 3], ids=["full", "window3"])
def test_cached_decoding_equals_full_forward(window):
    kw = (
        {}
        if window is None
        else dict(sliding_window=window, layer_types=["full_attention", "sliding_attention"])
    )
    m = _tiny(**kw)
    ids = torch.randint(0, 259, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = m(ids)
        caches = m.make_caches(2, 16)
        parts = [m(ids[:, :5], caches=caches)]
        parts += [m(ids[:, t : t + 1], caches=caches) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_left_padded_row_equals_unpadded_row():
    m = _tiny()
    ids = torch.randint(0, 259, (1, 6), generator=torch.Generator().manual_seed(0))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        a = m(ids)
        b = m(padded, attention_mask=mask)[:, 3:]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(m(padded, attention_mask=mask)).all()


def test_logits_to_keep_and_hidden():
    m = _tiny()
    ids = torch.randint(0, 259, (2, 7))
    with torch.no_grad():
        full = m(ids)
        last = m(ids, logits_to_keep=2)
        hidden = m(ids, return_hidden=True)
    torch.testing.assert_close(last, full[:, -2:])
    assert hidden.shape == (2, 7, 64)


def test_head_copy_follows_weight_updates():
    m = _tiny()
    ids = torch.randint(0, 259, (1, 4))
    with torch.no_grad():
        before = m(ids)
        m.embed_tokens.weight.mul_(
            2.0
        )  # in place: the inference copy of the tied head must refresh
        after = m(ids)
    assert not torch.allclose(before, after)
    with torch.no_grad():
        ref = torch.nn.functional.linear(m(ids, return_hidden=True), m.embed_tokens.weight)
    torch.testing.assert_close(after, ref)


def test_gradients_flow_through_tied_head():
    m = _tiny()
    m.train()
    loss = m(torch.randint(0, 259, (2, 5))).logsumexp(-1).mean()
    loss.backward()
    assert m.embed_tokens.weight.grad is not None
    assert m.layers[0].self_attn.q_proj.bias.grad is not None


def test_bad_inputs_raise():
    m = _tiny()
    with pytest.raises(ValueError, match="input_ids must be a"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integer tensor"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="attention_mask must be"):
        m(torch.zeros(1, 3, dtype=torch.long), attention_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="one entry per layer"):
        m(torch.zeros(1, 3, dtype=torch.long), caches=m.make_caches(1, 8)[:1])
    with pytest.raises(TypeError, match="Qwen2Config"):
        Qwen2Model({"vocab_size": 3})  # type: ignore[arg-type]


def test_structure_biases_and_parameter_count():
    m = _tiny(tie_word_embeddings=False)
    attn = m.layers[0].self_attn
    assert attn.q_proj.bias is not None
    assert attn.k_proj.bias is not None
    assert attn.v_proj.bias is not None
    assert attn.o_proj.bias is None
    assert m.num_parameters() == m.config.num_parameters()
    tied = _tiny()
    assert tied.num_parameters() == tied.config.num_parameters()
    assert "lm_head.weight" not in tied.hf_state_dict()


def _module_path_logits(m: Qwen2Model, ids: torch.Tensor, **kw) -> torch.Tensor:
    """Logits through the blocks' own modules: a no-op forward hook on every layer turns the
    inference plan off, so each block runs its checked forward."""
    handles = [layer.register_forward_hook(lambda *_: None) for layer in m.layers]
    m._plan = None
    try:
        with torch.no_grad():
            out = m(ids, **kw)
        assert m._plan is None  # the plan was not built
        return out
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        dict(tie_word_embeddings=False, num_key_value_heads=4),
        dict(sliding_window=3, layer_types=["full_attention", "sliding_attention"]),
    ],
    ids=["GQA-tied", "MHA-untied", "window3"],
)
def test_inference_plan_equals_module_path(kw):
    m = _tiny(**kw)
    with torch.no_grad():  # biases and norms that matter
        for name, p in m.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 259, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, :4] = 0
    mask[2, :1] = 0
    with torch.no_grad():
        fast = m(ids, attention_mask=mask)
        assert m._plan is not None  # the plan path ran
        caches = m.make_caches(3, 12)
        step = [m(ids[:, :6], attention_mask=mask[:, :6], caches=caches)]
        step += [
            m(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], caches=caches) for t in (6, 7, 8)
        ]
    ref = _module_path_logits(m, ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(fast[real], ref[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(step, 1)[real], ref[real], rtol=1e-5, atol=1e-5)


def test_inference_plan_follows_weight_updates_and_hooks():
    m = _tiny()
    ids = torch.randint(0, 259, (1, 5), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = m(ids)
        m.layers[1].mlp.up_proj.weight.mul_(3.0)  # in place: the plan must be rebuilt
        after = m(ids)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _module_path_logits(m, ids), rtol=1e-5, atol=1e-5)
    # A projection with a hook, or of another type, is run as a module (the plan steps aside).
    seen = []
    handle = m.layers[0].self_attn.q_proj.register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        hooked = m(ids)
    handle.remove()
    assert seen == [1]
    torch.testing.assert_close(hooked, after, rtol=1e-5, atol=1e-5)
    # With gradients needed, the plan is not used and gradients reach every projection.
    m.zero_grad()
    m(ids).sum().backward()
    assert m.layers[0].mlp.gate_proj.weight.grad is not None


def test_clear_inference_caches_after_writes_through_data():
    m = _tiny()
    ids = torch.randint(0, 259, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        m(ids)  # builds the layer plan (fused gate/up copy)
        m(ids[:, :1])  # one row: builds the (d, V) copy of the tied head
    # Writes through .data bump no version counter: clear_inference_caches() drops the copies.
    m.layers[1].mlp.gate_proj.weight.data.mul_(2.0)
    m.embed_tokens.weight.data.mul_(2.0)
    m.clear_inference_caches()
    with torch.no_grad():
        one, hidden = m(ids[:, :1]), m(ids[:, :1], return_hidden=True)
        full = m(ids)
    torch.testing.assert_close(one, hidden @ m.embed_tokens.weight.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, _module_path_logits(m, ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 8, 20], ids=lambda r: f"N{r}")
def test_lm_head_layouts_agree(rows):
    m = _tiny(tie_word_embeddings=False)
    hidden = torch.randn(rows, 1, 64, generator=torch.Generator().manual_seed(rows))
    with torch.no_grad():
        got = m.lm_head_logits(hidden)
    assert got.shape == (rows, 1, 259)
    assert got.is_contiguous()
    torch.testing.assert_close(got, torch.nn.functional.linear(hidden, m.lm_head.weight))
