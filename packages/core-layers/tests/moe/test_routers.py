"""Routers: hash determinism and balance, switch top-k/capacity semantics, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from seedbed.core_layers.moe import HashRouter, SwitchRouter, capacity_keep_mask


@pytest.mark.parametrize("top_k", [1, 2], ids=["k1", "k2"])
def test_hash_router_is_deterministic_per_token(top_k: int) -> None:
    router = HashRouter(16, top_k)
    ids = torch.randint(0, 100_000, (4, 64), generator=torch.Generator().manual_seed(0))
    a = router(ids).expert_index  # (256, k)
    # same ids in another order, another batch shape, another router instance: same experts
    perm = torch.randperm(ids.numel(), generator=torch.Generator().manual_seed(1))
    b = HashRouter(16, top_k)(ids.reshape(-1)[perm]).expert_index
    assert torch.equal(a[perm], b)
    # a token id repeated everywhere always reaches the same expert(s)
    rep = router(torch.full((3, 7), 12345)).expert_index
    assert (rep == rep[0]).all()
    if top_k == 2:
        assert (a[:, 0] != a[:, 1]).all(), "the two experts of a token must differ"
    # a different seed is a different hash
    c = HashRouter(16, top_k, seed=1)(ids).expert_index
    assert not torch.equal(a, c)


@pytest.mark.parametrize("top_k", [1, 2], ids=["k1", "k2"])
def test_hash_router_utilization_std_matches_multinomial(top_k: int) -> None:
    # On random ids a fixed hash behaves like uniform random assignment, so the per-expert
    # counts are multinomial: E[population variance across experts] = n·q·(1-q), q = k/E.
    e, t, trials = 16, 4096, 200
    router = HashRouter(e, top_k)
    g = torch.Generator().manual_seed(0)
    variances = []
    for _ in range(trials):
        ids = torch.randint(0, 2**40, (t,), generator=g)
        variances.append(router.load_balance_std(router(ids)) ** 2)
    measured = math.sqrt(sum(variances) / trials)
    q = top_k / e
    expected = math.sqrt(t * q * (1 - q))
    assert abs(measured - expected) / expected < 0.10, (measured, expected)


def test_hash_router_feature_hash_is_fixed_and_balanced() -> None:
    router = HashRouter(16)
    x = torch.randn(4, 512, 64, generator=torch.Generator().manual_seed(0))
    out = router(x)
    assert torch.equal(out.expert_index, router(x.clone()).expert_index)
    counts = router.expert_utilization(out)
    assert counts.sum() == 4 * 512
    assert (counts > 0).all()
    assert out.gates.shape == (2048, 1)
    assert torch.all(out.gates == 1.0)
    assert out.probs is None
    assert router.balance_loss(out).item() == 0.0
    assert len(list(router.parameters())) == 0


def test_utilization_and_std_on_handmade_assignment() -> None:
    router = HashRouter(4)
    assign = torch.tensor([[0], [0], [1], [3], [3], [3]])
    assert router.expert_utilization(assign).tolist() == [2, 1, 0, 3]
    counts = torch.tensor([2.0, 1.0, 0.0, 3.0])
    assert router.load_balance_std(assign) == pytest.approx(float(counts.std(unbiased=False)))


def test_switch_router_topk_and_gates() -> None:
    torch.manual_seed(0)
    r2 = SwitchRouter(16, 8, top_k=2)
    x = torch.randn(3, 10, 16)
    out = r2(x)
    assert out.expert_index.shape == (30, 2)
    assert out.logits is not None
    assert out.probs is not None
    ref_p, ref_i = torch.softmax(x.reshape(-1, 16) @ r2.gate.weight.T, -1).topk(2, -1)
    assert torch.equal(out.expert_index, ref_i)
    torch.testing.assert_close(out.gates, ref_p / ref_p.sum(-1, keepdim=True))
    r1 = SwitchRouter(16, 8, top_k=1)  # Switch: the gate is p_max itself
    out1 = r1(x)
    torch.testing.assert_close(out1.gates[:, 0], out1.probs.max(-1).values)


def test_switch_router_capacity_drops_by_priority() -> None:
    torch.manual_seed(0)
    r = SwitchRouter(8, 4, top_k=2, capacity_factor=0.5)
    x = torch.randn(64, 8)
    out = r(x)
    cap = r.capacity(64)
    assert cap == math.ceil(0.5 * 64 * 2 / 4)
    kept = out.expert_index[out.keep]
    assert (torch.bincount(kept, minlength=4) <= cap).all()
    assert out.num_dropped > 0
    assert torch.all(out.gates[~out.keep] == 0)
    # priority: first choices before second choices, then token order
    for e in range(4):
        slots = [(s, t) for s in range(2) for t in range(64) if out.expert_index[t, s] == e]
        keep_flags = [bool(out.keep[t, s]) for s, t in slots]
        assert keep_flags == sorted(keep_flags, reverse=True), (
            "a later assignment kept over an earlier one"
        )


def test_capacity_keep_mask_small_example() -> None:
    idx = torch.tensor([[0, 1], [0, 1], [0, 2]])  # 3 tokens, 2 slots
    keep = capacity_keep_mask(idx, 3, capacity=2)
    # expert 0 gets tokens 0, 1 (first choices); token 2's first choice is dropped
    assert keep.tolist() == [[True, True], [True, True], [False, True]]


def test_switch_router_jitter_only_in_training() -> None:
    torch.manual_seed(0)
    r = SwitchRouter(16, 8, top_k=2, jitter=0.5)
    x = torch.randn(20, 16)
    r.eval()
    assert torch.equal(r(x).logits, r(x).logits)
    r.train()
    assert not torch.equal(r(x).logits, r(x).logits)


@pytest.mark.parametrize(
    "case",
    [
        (lambda: SwitchRouter(16, 4, top_k=5), "top_k must be <= num_experts"),
        (lambda: HashRouter(4, top_k=5), "top_k must be <= num_experts"),
        (lambda: HashRouter(8, top_k=3), "at most two experts"),
        (lambda: SwitchRouter(16, 4, capacity_factor=0.0), "capacity_factor"),
        (lambda: SwitchRouter(16, 4, jitter=1.5), "jitter"),
        (lambda: HashRouter(0), "num_experts"),
    ],
    ids=["switch-topk-gt-E", "hash-topk-gt-E", "hash-topk-3", "capacity-0", "jitter-1.5", "E-0"],
)
def test_bad_router_config_raises(case) -> None:
    make, message = case
    with pytest.raises(ValueError, match=message):
        make()


def test_hash_router_rejects_non_integer_ids() -> None:
    router = HashRouter(8)
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match="integer token ids"):
        router(x, ids=torch.rand(2, 5))
    with pytest.raises(ValueError, match="integer token ids"):
        router(x, ids=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        router(x, ids=torch.zeros(2, 4, dtype=torch.long))
