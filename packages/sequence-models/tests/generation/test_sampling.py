"""Logits processors against transformers' (oracle), and sampling behaviour."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.generation.sampling import (
    SamplingParams,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    make_generator,
    process_logits,
    sample_next,
)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
        (dict(max_new_tokens=2.0), "max_new_tokens must be an int"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_k=-1), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(stop_token_ids=[-1]), "stop_token_ids"),
        (dict(stop_strings=[""]), "stop_strings"),
        (dict(seed="1"), "seed"),
    ],
)
def test_params_validation(kw, msg):
    with pytest.raises((TypeError, ValueError), match=msg):
        SamplingParams(**kw)


@pytest.mark.oracle
@pytest.mark.parametrize("k", [1, 5, 50])
def test_top_k_matches_transformers(k):
    gen = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(k))
    ref = gen.TopKLogitsWarper(top_k=k)(None, logits.clone())
    assert torch.equal(apply_top_k(logits, k), ref)


@pytest.mark.oracle
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_matches_transformers(p):
    gen = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1)) * 3
    ref = gen.TopPLogitsWarper(top_p=p)(None, logits.clone())
    assert torch.equal(apply_top_p(logits, p), ref)


@pytest.mark.oracle
@pytest.mark.parametrize("penalty", [0.7, 1.3])
def test_repetition_penalty_matches_transformers(penalty):
    gen = pytest.importorskip("transformers.generation.logits_process")
    logits = torch.randn(2, 30, generator=torch.Generator().manual_seed(2))
    ids = torch.tensor([[1, 5, 5, 7], [0, 29, 3, 3]])
    seen = torch.zeros(2, 30, dtype=torch.bool).scatter_(1, ids, True)
    ref = gen.RepetitionPenaltyLogitsProcessor(penalty=penalty)(ids, logits.clone())
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, penalty), ref)


def test_greedy_is_argmax_and_processing_order():
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.9]])
    assert sample_next(logits, SamplingParams()).tolist() == [1]
    seen = torch.tensor([[False, True, False, False]])
    assert sample_next(logits, SamplingParams(repetition_penalty=2.0), seen=seen).tolist() == [3]
    with pytest.raises(ValueError, match="seen"):
        process_logits(logits, SamplingParams(repetition_penalty=2.0))
    out = process_logits(logits, SamplingParams(temperature=0.5, top_k=2))
    assert torch.isinf(out[0, [0, 2]]).all()
    assert out[0, 1] == 4.0


def test_seeded_sampling_is_reproducible_per_row():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    p = SamplingParams(temperature=1.0, top_p=0.9)
    a = sample_next(logits, p, generators=[make_generator(i) for i in range(4)])
    b = sample_next(logits, p, generators=[make_generator(i) for i in range(4)])
    assert torch.equal(a, b)
    # row 2 alone, with its own generator, gives what it gave in the batch
    c = sample_next(logits[2:3], p, generators=[make_generator(2)])
    assert c.item() == a[2].item()


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]]))
    g = make_generator(0)
    p = SamplingParams(temperature=1.0)
    draws = torch.stack([sample_next(logits, p, generators=[g]) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=4).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.03, rtol=0)


def test_per_row_params():
    logits = torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]])
    out = sample_next(
        logits,
        [SamplingParams(), SamplingParams(temperature=0.01)],
        generators=[None, make_generator(1)],
    )
    assert out.tolist() == [1, 0]
    with pytest.raises(ValueError, match="one SamplingParams per row"):
        sample_next(logits, [SamplingParams()])
