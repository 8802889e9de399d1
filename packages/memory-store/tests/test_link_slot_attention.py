from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seedbed.memory_store import LinkSlotAttention


def reference(
    layer: LinkSlotAttention, x: torch.Tensor, mem: torch.Tensor | None, mask: torch.Tensor | None
) -> torch.Tensor:
    """Loop-and-softmax float64 reference: causal local attention and per-token memory
    attention, mixed per head by sigmoid(gate); tokens without memories use local only."""
    b, l, d = x.shape
    h, dh = layer.n_heads, layer.head_dim
    q = layer.q_proj(x).view(b, l, h, dh)
    k = layer.k_proj(x).view(b, l, h, dh)
    v = layer.v_proj(x).view(b, l, h, dh)
    rows = []
    for bi in range(b):
        for i in range(l):
            s = torch.einsum("hd,jhd->hj", q[bi, i], k[bi, : i + 1]) / dh**0.5
            local = torch.einsum("hj,jhd->hd", F.softmax(s, -1), v[bi, : i + 1])  # (H, Dh)
            if mem is None or mask is None or not bool(mask[bi, i].any()):
                rows.append(local)
                continue
            sel = mem[bi, i][mask[bi, i]]  # (K', D)
            mk = layer.k_proj(sel).view(-1, h, dh)
            mv = layer.v_proj(sel).view(-1, h, dh)
            sm = torch.einsum("hd,jhd->hj", q[bi, i], mk) / dh**0.5
            memo = torch.einsum("hj,jhd->hd", F.softmax(sm, -1), mv)
            g = torch.sigmoid(layer.gate)[:, None]
            rows.append(g * memo + (1 - g) * local)
    return layer.o_proj(torch.stack(rows).view(b, l, d))


def _inputs(
    b: int, l: int, k: int, d: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g, dtype=torch.float64)
    mem = torch.randn(b, l, k, d, generator=g, dtype=torch.float64)
    mask = torch.rand(b, l, k, generator=g) > 0.3
    mask[0, 0] = False  # a token with no memory at all
    return x, mem, mask


@pytest.mark.parametrize(
    ("b", "l", "h", "k", "d"),
    [(2, 7, 2, 5, 16), (1, 13, 4, 3, 32)],
    ids=["B2-L7-H2-K5-D16", "B1-L13-H4-K3-D32"],
)
def test_matches_float64_reference(b: int, l: int, h: int, k: int, d: int) -> None:
    torch.manual_seed(0)
    layer = LinkSlotAttention(d, h, top_k=k).double()
    with torch.no_grad():
        layer.gate.copy_(torch.randn(h, dtype=torch.float64))
    x, mem, mask = _inputs(b, l, k, d)
    torch.testing.assert_close(
        layer(x, mem, mask), reference(layer, x, mem, mask), rtol=1e-10, atol=1e-10
    )
    torch.testing.assert_close(layer(x), reference(layer, x, None, None), rtol=1e-10, atol=1e-10)


def test_gradcheck() -> None:
    torch.manual_seed(0)
    layer = LinkSlotAttention(8, 2, top_k=3).double()
    x, mem, mask = _inputs(1, 4, 3, 8)
    x.requires_grad_(True)
    mem.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, m: layer(a, m, mask), (x, mem))


def test_gate_is_learned_per_head() -> None:
    torch.manual_seed(0)
    layer = LinkSlotAttention(16, 4, top_k=2)
    x, mem, mask = (t.float() if t.is_floating_point() else t for t in _inputs(2, 5, 2, 16))
    layer(x, mem, mask).pow(2).sum().backward()
    assert layer.gate.grad is not None
    assert bool((layer.gate.grad != 0).all())
    with torch.no_grad():  # gate -> -inf: local only; mask off: local only
        layer.gate.fill_(-1e4)
    torch.testing.assert_close(layer(x, mem, mask), layer(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer(x, mem, torch.zeros_like(mask)), layer(x))


def test_memory_queries_rank_by_summed_head_scores() -> None:
    torch.manual_seed(0)
    layer = LinkSlotAttention(32, 4, bias=True).double()
    x = torch.randn(1, 6, 32, dtype=torch.float64)
    store = torch.randn(200, 32, dtype=torch.float64)
    u = layer.memory_queries(x)[0]  # (L, D)
    q = layer.q_proj(x)[0]  # (L, D) all heads
    summed = q @ layer.k_proj(store).T  # sum over heads of q_h . k_h
    # equal up to a per-query constant (q . b_k), hence the same ranking
    diff = summed - u @ store.T
    torch.testing.assert_close(diff, diff[:, :1].expand_as(diff), rtol=1e-9, atol=1e-9)
    assert torch.equal(summed.argsort(-1), (u @ store.T).argsort(-1))


def test_validation() -> None:
    with pytest.raises(ValueError, match="n_heads"):
        LinkSlotAttention(30, 4)
    layer = LinkSlotAttention(16, 2)
    with pytest.raises(ValueError, match="x must"):
        layer(torch.randn(2, 16))
    with pytest.raises(ValueError, match="mem must"):
        layer(torch.randn(1, 3, 16), torch.randn(1, 4, 2, 16))
    with pytest.raises(ValueError, match="mem_mask"):
        layer(torch.randn(1, 3, 16), torch.randn(1, 3, 2, 16), torch.ones(1, 3, 2))
