import pytest
import torch

from seedbed.core_layers import KVCache


def test_update_returns_views_of_everything_stored():
    cache = KVCache(2, 10, 3, 4)
    k1, v1 = torch.randn(2, 4, 3, 4), torch.randn(2, 4, 3, 4)
    k2, v2 = torch.randn(2, 1, 3, 4), torch.randn(2, 1, 3, 4)
    cache.update(k1, v1)
    k_all, v_all = cache.update(k2, v2)
    assert cache.size == 5
    assert k_all.shape == (2, 5, 3, 4)
    torch.testing.assert_close(k_all, torch.cat([k1, k2], 1))
    torch.testing.assert_close(v_all, torch.cat([v1, v2], 1))
    assert k_all.data_ptr() == cache.k.data_ptr()  # a view into the preallocated buffer


def test_reset_and_reuse():
    cache = KVCache(1, 4, 1, 2)
    cache.update(torch.ones(1, 4, 1, 2), torch.ones(1, 4, 1, 2))
    cache.reset()
    assert cache.size == 0
    k, _ = cache.update(torch.zeros(1, 2, 1, 2), torch.zeros(1, 2, 1, 2))
    assert k.shape == (1, 2, 1, 2)
    assert torch.equal(k, torch.zeros_like(k))


def test_truncate_then_continue():
    cache = KVCache(1, 6, 1, 2)
    k = torch.randn(1, 5, 1, 2)
    cache.update(k, k)
    cache.truncate(3)
    k_new = torch.randn(1, 2, 1, 2)
    k_all, _ = cache.update(k_new, k_new)
    torch.testing.assert_close(k_all, torch.cat([k[:, :3], k_new], 1))
    with pytest.raises(ValueError, match=r"truncate size must be <= the 5 tokens stored, got 6"):
        cache.truncate(6)


def test_dtype_is_the_buffer_dtype():
    cache = KVCache(1, 4, 1, 2, dtype=torch.bfloat16)
    k, _ = cache.update(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2))
    assert k.dtype == torch.bfloat16
    assert cache.dtype == torch.bfloat16


def test_overflow_raises_and_changes_nothing():
    cache = KVCache(1, 5, 2, 3)
    cache.update(torch.randn(1, 4, 2, 3), torch.randn(1, 4, 2, 3))
    snap = cache.k.clone()
    with pytest.raises(
        ValueError, match=r"KVCache overflow: max_seq_len is 5, got 4 stored \+ 2 new = 6 tokens"
    ):
        cache.update(torch.randn(1, 2, 2, 3), torch.randn(1, 2, 2, 3))
    assert cache.size == 4
    assert torch.equal(cache.k, snap)


def test_bad_input():
    cache = KVCache(2, 5, 2, 3)
    with pytest.raises(
        ValueError, match=r"expects k, v of shape \(B=2, S_new, H_kv=2, D=3\), got \(2, 1, 4, 3\)"
    ):
        cache.update(torch.randn(2, 1, 4, 3), torch.randn(2, 1, 4, 3))
    with pytest.raises(ValueError, match=r"k must be 4-D, got 3-D"):
        cache.update(torch.randn(2, 1, 2), torch.randn(2, 1, 2))
    with pytest.raises(ValueError, match=r"same shape"):
        cache.update(torch.randn(2, 1, 2, 3), torch.randn(2, 2, 2, 3))
    with pytest.raises(TypeError, match=r"floating-point dtype, got torch.int64"):
        cache.update(
            torch.ones(2, 1, 2, 3, dtype=torch.long), torch.ones(2, 1, 2, 3, dtype=torch.long)
        )
    with pytest.raises(TypeError, match=r"dtype must be a floating torch.dtype"):
        KVCache(1, 2, 1, 1, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"max_seq_len must be >= 1, got 0"):
        KVCache(1, 0, 1, 1)
