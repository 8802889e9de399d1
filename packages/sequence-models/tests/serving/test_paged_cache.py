"""Paged KV cache bookkeeping and the gathered keys/values it hands to attention."""

from __future__ import annotations

import pytest
import torch

from seedbed.sequence_models.serving.paged_cache import (
    BlockAllocator,
    OutOfBlocksError,
    PagedKVCache,
)


def test_allocator():
    a = BlockAllocator(4)
    blocks = a.allocate(3)
    assert sorted(blocks) == [0, 1, 2]
    assert a.num_free == 1
    assert a.num_used == 3
    with pytest.raises(OutOfBlocksError):
        a.allocate(2)
    assert a.num_free == 1  # a failed allocation takes nothing
    a.free(blocks[:2])
    assert a.num_free == 3
    with pytest.raises(ValueError, match="not allocated"):
        a.free([blocks[0]])
    with pytest.raises(ValueError, match="num_blocks"):
        BlockAllocator(0)


def test_reserve_truncate_free():
    c = PagedKVCache(1, num_blocks=6, block_size=4, num_kv_heads=1, head_dim=2)
    c.add_sequence("a")
    c.reserve("a", 9)
    assert len(c.block_tables["a"]) == 3
    assert c.num_free_blocks == 3
    c.seq_lens["a"] = 9
    c.truncate("a", 4)
    assert len(c.block_tables["a"]) == 1
    assert c.num_free_blocks == 5
    with pytest.raises(ValueError, match="new_len"):
        c.truncate("a", 7)
    c.free_sequence("a")
    assert c.num_free_blocks == 6
    assert not c.has_sequence("a")
    with pytest.raises(ValueError, match="already"):
        c.add_sequence("b") or c.add_sequence("b")


@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_update_returns_each_sequence_contents(block_size):
    torch.manual_seed(0)
    h, d = 2, 4
    c = PagedKVCache(2, num_blocks=64, block_size=block_size, num_kv_heads=h, head_dim=d)
    ref: dict[str, list[torch.Tensor]] = {"x": [], "y": [], "z": []}
    for s in ref:
        c.add_sequence(s)
    # three rounds with different lengths per sequence (prefill chunks, then decodes)
    for rounds in ([5, 2, 7], [1, 4, 1], [1, 1, 1]):
        ids = ["x", "y", "z"]
        b = c.batch(ids, rounds)
        s_max = b.seq_len
        k = torch.randn(3, s_max, h, d)
        v = torch.randn(3, s_max, h, d)
        for layer in range(2):
            k_all, v_all = b.layer(layer).update(k + layer, v - layer)
            for i, sid in enumerate(ids):
                n_tot = c.seq_lens[sid]
                prev = torch.cat(ref[sid], 0) if ref[sid] else k.new_zeros(0, h, d)
                want_k = torch.cat([prev, k[i, : rounds[i]]], 0) + layer
                torch.testing.assert_close(k_all[i, :n_tot], want_k)
                assert v_all.shape == k_all.shape == (3, b.kv_len, h, d)
        for i, sid in enumerate(ids):
            ref[sid].append(k[i, : rounds[i]])
        # masks: a query sees exactly its own sequence's earlier (and current) keys
        m = b.masks[None][:, 0]  # (B, S, T)
        for i, sid in enumerate(ids):
            ctx = c.seq_lens[sid] - rounds[i]
            for q in range(rounds[i]):
                assert m[i, q].nonzero().flatten().tolist() == list(range(ctx + q + 1))
        assert b.positions[0, 0].item() == c.seq_lens["x"] - rounds[0]


def test_window_mask_and_out_of_blocks_is_atomic():
    c = PagedKVCache(1, num_blocks=3, block_size=2, num_kv_heads=1, head_dim=2)
    c.add_sequence("a")
    c.add_sequence("b")
    b = c.batch(["a"], [4], windows=[None, 2])
    assert b.masks[2][0, 0, 3].nonzero().flatten().tolist() == [2, 3]
    with pytest.raises(OutOfBlocksError):
        c.batch(["a", "b"], [1, 3])
    assert c.seq_lens == {"a": 4, "b": 0}
    assert c.num_free_blocks == 1
    with pytest.raises(ValueError, match="n_new must be >= 1"):
        c.batch(["a"], [0])
