"""Speculative decoding: exact under greedy; the accept/reject rule keeps the target distribution."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.generation.generate import generate
from seedbed.sequence_models.qwen2.config import Qwen2Config
from seedbed.sequence_models.qwen2.model import Qwen2Model
from seedbed.sequence_models.qwen2.tokenizer import ByteTokenizer
from seedbed.sequence_models.serving.speculative import SpeculativeDecoder, speculative_accept


@pytest.fixture(scope="module")
def models() -> tuple[Qwen2Model, Qwen2Model]:
    torch.manual_seed(0)
    target = Qwen2Model(Qwen2Config.tiny(num_hidden_layers=3)).eval()
    target.reset_parameters(0.2)
    # the draft: the target's first layer with its embeddings and head (a self-draft)
    draft = Qwen2Model(Qwen2Config.tiny(num_hidden_layers=1)).eval()
    draft.load_state_dict(
        {
            k: v
            for k, v in target.state_dict().items()
            if not k.startswith("layers.") or k.startswith("layers.0.")
        }
    )
    return target, draft


def _prompts(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("k", [1, 2, 4, 7])
@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_greedy_equals_target_exactly(models, k, block_size):
    target, draft = models
    prompts = _prompts([1, 6, 23, 2])
    ref = generate(target, prompts, max_new_tokens=30, ignore_eos=True).sequences
    out = SpeculativeDecoder(target, draft, k, block_size=block_size).generate(
        prompts, max_new_tokens=30, ignore_eos=True
    )
    assert out.sequences == ref
    assert out.finish_reasons == ["length"] * 4
    assert 0 <= out.num_accepted <= out.num_proposed
    assert out.target_forwards <= 31


def test_identical_draft_accepts_everything(models):
    target, _ = models
    out = SpeculativeDecoder(target, target, 4).generate(
        _prompts([5]), max_new_tokens=21, ignore_eos=True
    )
    assert out.acceptance_rate == 1.0
    assert (
        out.sequences
        == generate(target, _prompts([5]), max_new_tokens=21, ignore_eos=True).sequences
    )
    assert out.target_forwards == 1 + 5  # prefill + ceil(21 / (k + 1)) rounds


def test_stops_with_speculation(models):
    target, draft = models
    tok = ByteTokenizer()
    free = generate(target, "abc", tokenizer=tok, max_new_tokens=20, ignore_eos=True)
    stop_id = free.sequences[0][6]
    spec = SpeculativeDecoder(target, draft, 3, tokenizer=tok)
    out = spec.generate("abc", max_new_tokens=20, stop_token_ids=[stop_id], ignore_eos=True)
    assert out.sequences[0] == free.sequences[0][: free.sequences[0].index(stop_id) + 1]
    assert out.finish_reasons == ["stop"]
    stop = free.texts[0][3:5]
    out = spec.generate("abc", max_new_tokens=20, stop_strings=[stop], ignore_eos=True)
    assert out.texts[0] == free.texts[0][: free.texts[0].index(stop)]


def test_accept_rule_preserves_target_distribution():
    torch.manual_seed(0)
    k, v, n = 2, 5, 5000
    p = torch.softmax(torch.randn(k + 1, v) * 1.5, -1)
    q = torch.softmax(torch.randn(k, v) * 1.5, -1)
    g = torch.Generator().manual_seed(1)
    first = torch.zeros(v)
    for _ in range(n):
        props = torch.stack([torch.multinomial(q[i], 1, generator=g)[0] for i in range(k)])
        acc, tok = speculative_accept(p, q, props, g)
        first[int(props[0]) if acc >= 1 else tok] += 1
    torch.testing.assert_close(first / n, p[0], atol=0.025, rtol=0)  # ~3.5 sigma


def test_sampling_runs_and_is_seeded(models):
    target, draft = models
    spec = SpeculativeDecoder(target, draft, 3)
    kw = dict(max_new_tokens=15, temperature=0.8, top_k=20, seed=5, ignore_eos=True)
    a = spec.generate(_prompts([4, 9]), **kw)
    b = spec.generate(_prompts([4, 9]), **kw)
    assert a.sequences == b.sequences
    assert all(len(s) == 15 for s in a.sequences)


def test_validation(models):
    target, draft = models
    other = Qwen2Model(Qwen2Config.tiny(vocab_size=300))
    with pytest.raises(ValueError, match="share a vocabulary"):
        SpeculativeDecoder(target, other)
    with pytest.raises(ValueError, match="num_speculative_tokens"):
        SpeculativeDecoder(target, draft, 0)
    with pytest.raises(ValueError, match="repetition_penalty"):
        SpeculativeDecoder(target, draft).generate([[1]], repetition_penalty=1.2)
    with pytest.raises(ValueError, match="token ids"):
        SpeculativeDecoder(target, draft).generate([[999]])
