"""Continuous batching over the paged cache gives each request the tokens it gets alone."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.generation.generate import generate
from seedbed.sequence_models.generation.sampling import SamplingParams
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import ByteTokenizer
from seedbed.sequence_models.serving.engine import EngineConfig, LLMEngine
from seedbed.sequence_models.serving.quantize import Int8Linear, quantize_model


def _model(**kw) -> Qwen2Model:
    torch.manual_seed(0)
    m = Qwen2Model(Qwen2Config.tiny(**kw)).eval()
    m.reset_parameters(0.2)
    return m


@pytest.fixture(scope="module")
def model() -> Qwen2Model:
    return _model()


def _prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize(
    "cfg",
    [
        EngineConfig(
            num_blocks=64,
            block_size=4,
            max_batch_size=8,
            max_num_batched_tokens=64,
            prefill_chunk_size=64,
        ),
        EngineConfig(
            num_blocks=64,
            block_size=4,
            max_batch_size=3,
            max_num_batched_tokens=16,
            prefill_chunk_size=5,
        ),
        EngineConfig(
            num_blocks=24,
            block_size=4,
            max_batch_size=6,
            max_num_batched_tokens=24,
            prefill_chunk_size=8,
        ),
    ],
    ids=["wide", "chunked-prefill", "preempting"],
)
def test_engine_matches_each_request_alone(model, cfg):
    prompts = _prompts([3, 30, 11, 1, 45, 7, 19, 25])
    alone = [generate(model, [p], max_new_tokens=20, ignore_eos=True).sequences[0] for p in prompts]
    eng = LLMEngine(model, None, cfg)
    outs = eng.generate(prompts, SamplingParams(max_new_tokens=20, ignore_eos=True))
    assert [o.output_ids for o in outs] == alone
    assert all(o.finish_reason == "length" for o in outs)
    assert eng.num_used_blocks == 0
    assert eng.num_free_blocks == cfg.num_blocks
    assert eng.counters["finished"] == 8
    assert eng.counters["generated_tokens"] == 160
    if cfg.num_blocks == 24:
        assert eng.counters["preemptions"] > 0
    # every prompt token and every generated token but the last is fed exactly once
    # (absent preemption, which recomputes)
    fed = eng.counters["prefill_tokens"] + eng.counters["decode_tokens"]
    if not eng.counters["preemptions"]:
        assert fed == sum(map(len, prompts)) + 8 * 19


def test_engine_with_sliding_window_layers_matches_alone():
    m = _model(sliding_window=5, layer_types=["sliding_attention", "full_attention"])
    prompts = _prompts([3, 14, 9], seed=3)
    alone = [generate(m, [p], max_new_tokens=12, ignore_eos=True).sequences[0] for p in prompts]
    cfg = EngineConfig(num_blocks=32, block_size=4, max_num_batched_tokens=32, prefill_chunk_size=4)
    outs = LLMEngine(m, None, cfg).generate(
        prompts, SamplingParams(max_new_tokens=12, ignore_eos=True)
    )
    assert [o.output_ids for o in outs] == alone


def test_requests_join_and_leave_between_steps(model):
    prompts = _prompts([9, 4, 17, 2, 12], seed=1)
    lens = [5, 12, 3, 9, 7]
    alone = [
        generate(model, [p], max_new_tokens=n, ignore_eos=True).sequences[0]
        for p, n in zip(prompts, lens)
    ]
    eng = LLMEngine(model, None, EngineConfig(num_blocks=64, block_size=4, max_batch_size=4))
    results: dict[str, list[int]] = {}
    ids = [eng.add_request(prompts[0], SamplingParams(max_new_tokens=lens[0], ignore_eos=True))]
    running_sizes = []
    step = 0
    while eng.has_unfinished() or len(ids) < len(prompts):
        if step % 2 == 1 and len(ids) < len(prompts):  # a new request arrives every other step
            i = len(ids)
            ids.append(
                eng.add_request(prompts[i], SamplingParams(max_new_tokens=lens[i], ignore_eos=True))
            )
        for out in eng.step():
            if out.finished:
                results[out.request_id] = out.output_ids
        running_sizes.append(eng.num_running)
        step += 1
    assert [results[i] for i in ids] == alone
    assert max(running_sizes) > 1


def test_abort_frees_blocks(model):
    eng = LLMEngine(model, None, EngineConfig(num_blocks=32, block_size=4))
    a = eng.add_request(_prompts([20])[0], SamplingParams(max_new_tokens=50, ignore_eos=True))
    b = eng.add_request(_prompts([6])[0], SamplingParams(max_new_tokens=5, ignore_eos=True))
    for _ in range(3):
        eng.step()
    assert eng.num_used_blocks > 0
    assert eng.abort(a)
    assert not eng.abort(a)
    while eng.has_unfinished():
        eng.step()
    assert eng.num_used_blocks == 0
    assert eng.counters["aborted"] == 1
    assert b not in eng.requests


def test_seeded_sampling_does_not_depend_on_the_batch(model):
    p = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=3, ignore_eos=True)
    prompts = _prompts([5, 8, 13], seed=2)
    alone = LLMEngine(model, None, EngineConfig()).generate([prompts[1]], p)[0].output_ids
    together = LLMEngine(model, None, EngineConfig()).generate(prompts, p)[1].output_ids
    assert alone == together


def test_stops_and_text(model):
    tok = ByteTokenizer()
    eng = LLMEngine(model, tok, EngineConfig())
    free = eng.generate(["hello"], SamplingParams(max_new_tokens=12, ignore_eos=True))[0]
    text = tok.decode(free.output_ids)
    stop = text[4:6]
    out = eng.generate(
        ["hello"], SamplingParams(max_new_tokens=12, stop_strings=[stop], ignore_eos=True)
    )[0]
    assert out.finish_reason == "stop"
    streamed = LLMEngine(model, tok, EngineConfig())
    rid = streamed.add_request(
        "hello", SamplingParams(max_new_tokens=12, stop_strings=[stop], ignore_eos=True)
    )
    pieces = []
    while streamed.has_unfinished():
        pieces += [o.new_text for o in streamed.step() if o.request_id == rid]
    assert "".join(pieces) == text[: text.index(stop)]
    stop_id = free.output_ids[2]
    out = eng.generate(
        [tok.encode("hello")],
        SamplingParams(max_new_tokens=12, stop_token_ids=[stop_id], ignore_eos=True),
    )[0]
    assert out.output_ids == free.output_ids[: free.output_ids.index(stop_id) + 1]
    assert out.finish_reason == "stop"


def test_request_validation(model):
    eng = LLMEngine(model, None, EngineConfig(num_blocks=4, block_size=4, max_model_len=64))
    with pytest.raises(ValueError, match="max_model_len"):
        eng.add_request([1] * 60, SamplingParams(max_new_tokens=10))
    with pytest.raises(ValueError, match="block pool holds 16"):
        eng.add_request([1] * 10, SamplingParams(max_new_tokens=10))
    with pytest.raises(ValueError, match="token ids must be in"):
        eng.add_request([300], SamplingParams(max_new_tokens=1))
    with pytest.raises(ValueError, match="tokenizer"):
        eng.add_request([1], SamplingParams(max_new_tokens=1, stop_strings=["x"]))
    with pytest.raises(ValueError, match="tokenizer"):
        eng.add_request("text", SamplingParams(max_new_tokens=1))
    eng.add_request([1], SamplingParams(max_new_tokens=1), request_id="r")
    with pytest.raises(ValueError, match="already in use"):
        eng.add_request([1], SamplingParams(max_new_tokens=1), request_id="r")
    assert eng.num_waiting == 1
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        EngineConfig(max_batch_size=8, max_num_batched_tokens=4)
    with pytest.raises(ValueError, match="quantization"):
        EngineConfig(quantization="int4")


def test_int8_weight_only_quantization():
    lin = torch.nn.Linear(64, 32)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(5, 64)
    rel = (q(x) - lin(x)).abs().max() / lin(x).abs().max()
    assert rel < 0.02
    assert q.weight_int8.dtype == torch.int8
    m = _model()
    ids = torch.randint(0, 259, (2, 10))
    with torch.no_grad():
        ref = m(ids)
    quantize_model(m, "int8")
    assert isinstance(m.layers[0].self_attn.q_proj, Int8Linear)
    assert isinstance(m.layers[1].mlp.down_proj, Int8Linear)
    with torch.no_grad():
        out = m(ids)
    assert (out - ref).abs().max() / ref.abs().max() < 0.05
    exact = _model()  # the int8 model computes exactly the dequantized weights' function
    for name, mod in m.named_modules():
        if isinstance(mod, Int8Linear):
            exact.get_submodule(name).weight.data.copy_(mod.dequantize())
    with torch.no_grad():
        torch.testing.assert_close(out, exact(ids), rtol=1e-4, atol=1e-4)
    eng = LLMEngine(m, None, EngineConfig())
    assert len(eng.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4))[0].output_ids) == 4
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        quantize_model(m, "int8")


def test_nf4_through_core_layers():
    core = pytest.importorskip("seedbed.core_layers")
    if not hasattr(core, "NF4Linear"):
        pytest.skip("core-layers has no NF4Linear yet")
    m = _model()
    ref = _model()  # the same weights, replaced by what NF4 stores (its dequantized weights)
    ids = torch.randint(0, 259, (2, 10))
    eng = LLMEngine(m, None, EngineConfig(quantization="nf4"))
    for name, mod in m.named_modules():
        if isinstance(mod, core.NF4Linear):
            ref.get_submodule(name).weight.data.copy_(mod.dequantized_weight())
    assert isinstance(m.layers[0].mlp.gate_proj, core.NF4Linear)
    assert isinstance(m.layers[1].self_attn.v_proj, core.NF4Linear)
    with torch.no_grad():
        torch.testing.assert_close(m(ids), ref(ids), rtol=1e-5, atol=1e-5)
    # and the quantization is real: the dequantized weights differ from the originals
    assert not torch.equal(
        ref.layers[0].mlp.gate_proj.weight, _model().layers[0].mlp.gate_proj.weight
    )
    alone = generate(ref, [[1, 2, 3]], max_new_tokens=4, ignore_eos=True).sequences[0]
    assert (
        eng.generate([[1, 2, 3]], SamplingParams(max_new_tokens=4, ignore_eos=True))[0].output_ids
        == alone
    )
