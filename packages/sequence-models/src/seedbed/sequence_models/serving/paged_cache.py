"""Paged KV cache: fixed-size blocks in one pool per layer, and a block table per sequence.

A sequence's token ``t`` lives in block ``block_table[t // block_size]`` at offset
``t % block_size``. Blocks come from a free list and go back to it when the sequence finishes,
is aborted, preempted or truncated (speculative decoding rolls back rejected tokens), so memory
is bounded by the number of blocks rather than by ``max_batch * max_len``.

A forward pass over a batch of sequences uses :meth:`PagedKVCache.batch`, which returns a
:class:`PagedBatch`: it holds the write slots of the new tokens, the padded block tables to
gather each sequence's keys/values into a contiguous ``(B, T, H_kv, D)`` tensor, and the boolean
attention masks. ``PagedBatch.layer(i)`` is the per-layer object the model's attention calls
``update(k, v) -> (k_all, v_all)`` on (the same protocol as ``seedbed.core_layers.KVCache``).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Sequence

import torch

from seedbed.core_layers import KVCache

__all__ = ["BlockAllocator", "OutOfBlocksError", "PagedBatch", "PagedKVCache", "PagedLayerView"]


class OutOfBlocksError(RuntimeError):
    """The pool has fewer free blocks than a reservation needs."""


class BlockAllocator:
    """A free list of block ids ``0 .. num_blocks - 1``."""

    def __init__(self, num_blocks: int) -> None:
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive int, got {num_blocks!r}")
        self.num_blocks = num_blocks
        self._free = list(range(num_blocks - 1, -1, -1))  # pop() hands out low ids first
        self._used: set[int] = set()

    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_used(self) -> int:
        return len(self._used)

    def allocate(self, n: int) -> list[int]:
        """Take ``n`` blocks; raises :class:`OutOfBlocksError` (taking none) if too few are free."""
        if n > len(self._free):
            raise OutOfBlocksError(f"need {n} free blocks, have {len(self._free)}")
        out = [self._free.pop() for _ in range(n)]
        self._used.update(out)
        return out

    def free(self, blocks: Sequence[int]) -> None:
        """Return blocks to the pool (each must be in use)."""
        for b in blocks:
            if b not in self._used:
                raise ValueError(f"block {b} is not allocated")
        for b in blocks:
            self._used.remove(b)
            self._free.append(b)


class PagedKVCache:
    """Block pools for every layer plus per-sequence block tables.

    Args:
        num_layers: decoder layers (one K and one V pool each).
        num_blocks: blocks per pool.
        block_size: tokens per block.
        num_kv_heads: H_kv.
        head_dim: D.
        dtype, device: of the pools.
    """

    def __init__(
        self,
        num_layers: int,
        num_blocks: int,
        block_size: int,
        num_kv_heads: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        for name, v in (
            ("num_layers", num_layers),
            ("block_size", block_size),
            ("num_kv_heads", num_kv_heads),
            ("head_dim", head_dim),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.allocator = BlockAllocator(num_blocks)
        self.num_layers, self.block_size = num_layers, block_size
        self.num_kv_heads, self.head_dim = num_kv_heads, head_dim
        shape = (num_blocks, block_size, num_kv_heads, head_dim)
        self.k_pools = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v_pools = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.block_tables: dict[Hashable, list[int]] = {}
        self.seq_lens: dict[Hashable, int] = {}  # tokens stored per sequence

    # ------------------------------------------------------------------ bookkeeping
    @property
    def num_blocks(self) -> int:
        return self.allocator.num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self.allocator.num_free

    @property
    def num_used_blocks(self) -> int:
        return self.allocator.num_used

    def blocks_needed(self, n_tokens: int) -> int:
        """Blocks that hold ``n_tokens`` tokens."""
        return -(-n_tokens // self.block_size)

    def add_sequence(self, seq_id: Hashable) -> None:
        if seq_id in self.block_tables:
            raise ValueError(f"sequence {seq_id!r} is already in the cache")
        self.block_tables[seq_id] = []
        self.seq_lens[seq_id] = 0

    def has_sequence(self, seq_id: Hashable) -> bool:
        return seq_id in self.block_tables

    def extra_blocks_for(self, seq_id: Hashable, n_new: int) -> int:
        """Blocks that must be allocated before ``n_new`` more tokens of ``seq_id`` fit."""
        need = self.blocks_needed(self.seq_lens[seq_id] + n_new)
        return max(0, need - len(self.block_tables[seq_id]))

    def can_append(self, seq_id: Hashable, n_new: int) -> bool:
        return self.extra_blocks_for(seq_id, n_new) <= self.num_free_blocks

    def reserve(self, seq_id: Hashable, n_new: int) -> None:
        """Allocate the blocks for ``n_new`` more tokens (raises OutOfBlocksError, changing nothing)."""
        extra = self.extra_blocks_for(seq_id, n_new)
        if extra:
            self.block_tables[seq_id].extend(self.allocator.allocate(extra))

    def truncate(self, seq_id: Hashable, new_len: int) -> None:
        """Forget tokens ``new_len ..`` of ``seq_id``; blocks past the new end are freed."""
        if not 0 <= new_len <= self.seq_lens[seq_id]:
            raise ValueError(f"new_len must be in [0, {self.seq_lens[seq_id]}], got {new_len}")
        self.seq_lens[seq_id] = new_len
        keep = self.blocks_needed(new_len)
        table = self.block_tables[seq_id]
        if len(table) > keep:
            self.allocator.free(table[keep:])
            del table[keep:]

    def free_sequence(self, seq_id: Hashable) -> None:
        """Drop ``seq_id`` and return all its blocks (no-op for an unknown id)."""
        table = self.block_tables.pop(seq_id, None)
        self.seq_lens.pop(seq_id, None)
        if table:
            self.allocator.free(table)

    # ------------------------------------------------------------------ batched forward
    def batch(
        self,
        seq_ids: Sequence[Hashable],
        n_new: Sequence[int],
        *,
        windows: Sequence[int | None] = (None,),
    ) -> PagedBatch:
        """Prepare one forward over ``seq_ids``, each appending ``n_new[i]`` tokens.

        Reserves the blocks first (all or nothing) and advances ``seq_lens`` (the caller's
        forward must then write exactly those tokens).

        Args:
            seq_ids: B sequences already added.
            n_new: new tokens per sequence (>= 1); the batch is padded to S = max(n_new).
            windows: the distinct sliding windows used by the layers (None = full attention).
        """
        if len(seq_ids) != len(n_new) or not seq_ids:
            raise ValueError(
                f"need one n_new per sequence, got {len(seq_ids)} ids and {len(n_new)} counts"
            )
        if any(n < 1 for n in n_new):
            raise ValueError(f"n_new must be >= 1 for every sequence, got {list(n_new)}")
        extra = sum(self.extra_blocks_for(s, n) for s, n in zip(seq_ids, n_new))
        if extra > self.num_free_blocks:
            raise OutOfBlocksError(f"batch needs {extra} new blocks, {self.num_free_blocks} free")
        ctx = [self.seq_lens[s] for s in seq_ids]
        for s, n in zip(seq_ids, n_new):
            self.reserve(s, n)
            self.seq_lens[s] += n
        return PagedBatch(self, [self.block_tables[s] for s in seq_ids], ctx, list(n_new), windows)


class PagedBatch:
    """Index tensors and masks for one forward over a batch of paged sequences.

    Attributes:
        positions: (B, S) int64 absolute positions of the new tokens (padding repeats the last).
        masks: {window: (B, 1, S, T) bool}, True = attend; T = max total length in the batch.
        valid: (B, S) bool, True for real (non-padding) new tokens.
    """

    def __init__(
        self,
        cache: PagedKVCache,
        tables: Sequence[Sequence[int]],
        ctx: Sequence[int],
        n_new: Sequence[int],
        windows: Sequence[int | None],
    ) -> None:
        self.cache = cache
        dev = cache.k_pools[0].device
        bs = cache.block_size
        b, s = len(ctx), max(n_new)
        total = [c + n for c, n in zip(ctx, n_new)]
        t_max = max(total)
        nb = cache.blocks_needed(t_max)
        self.batch_size, self.seq_len, self.kv_len = b, s, t_max
        padded = [list(tb[:nb]) + [0] * (nb - len(tb[:nb])) for tb in tables]
        self.block_table = torch.tensor(padded, dtype=torch.long, device=dev)  # (B, nb)

        ctx_t = torch.tensor(ctx, dtype=torch.long, device=dev)  # (B,)
        n_t = torch.tensor(n_new, dtype=torch.long, device=dev)  # (B,)
        i = torch.arange(s, device=dev)  # (S,)
        self.valid = i[None, :] < n_t[:, None]  # (B, S)
        pos = ctx_t[:, None] + torch.minimum(i[None, :], (n_t - 1)[:, None])  # (B, S)
        self.positions = pos
        # Flat write slots of the valid new tokens, in (b, i) row-major order.
        blk = self.block_table.gather(1, pos // bs)  # (B, S)
        slots = blk * bs + pos % bs  # (B, S)
        self.all_valid = bool(self.valid.all())
        self.write_slots = slots.reshape(-1) if self.all_valid else slots[self.valid]
        self.write_rows = None if self.all_valid else self.valid.reshape(-1).nonzero().squeeze(1)

        j = torch.arange(t_max, device=dev)  # (T,)
        tot_t = ctx_t + n_t
        qpos = ctx_t[:, None] + i[None, :]  # (B, S) unclamped: padding rows see all valid keys
        base = (j[None, None, :] <= qpos[:, :, None]) & (j[None, None, :] < tot_t[:, None, None])
        self.masks: dict[int | None, torch.Tensor] = {}
        for w in dict.fromkeys(windows):
            m = base if w is None else base & ((qpos[:, :, None] - j[None, None, :]) < w)
            self.masks[w] = m[:, None]  # (B, 1, S, T)

    def layer(self, layer_idx: int) -> PagedLayerView:
        """The cache object layer ``layer_idx``'s attention appends to."""
        return PagedLayerView(self, layer_idx)


class PagedLayerView(KVCache):
    """One layer's pools seen as a :class:`~seedbed.core_layers.KVCache` for a :class:`PagedBatch`.

    ``update(k, v) -> (k_all, v_all)`` writes into the blocks and gathers every sequence's
    keys/values, so ``MultiHeadAttention`` runs over paged storage unchanged. The buffers of
    the base class are not used (its constructor is not called); the properties read the pools.
    """

    def __init__(
        self, batch: PagedBatch, layer_idx: int
    ) -> None:  # base __init__ not called on purpose
        self.batch, self.layer_idx = batch, layer_idx
        self._pool = batch.cache.k_pools[layer_idx]

    @property
    def size(self) -> int:
        """Longest context stored before this step (positions are passed explicitly)."""
        return self.batch.kv_len - self.batch.seq_len

    @property
    def max_seq_len(self) -> int:
        return sys.maxsize // 2  # bounded by the block pool, checked by PagedKVCache.batch

    @property
    def batch_size(self) -> int:
        return self.batch.batch_size

    @property
    def n_kv_heads(self) -> int:
        return self._pool.shape[2]

    @property
    def head_dim(self) -> int:
        return self._pool.shape[3]

    @property
    def dtype(self) -> torch.dtype:
        return self._pool.dtype

    @property
    def device(self) -> torch.device:
        return self._pool.device

    def reset(self) -> None:
        raise TypeError("a paged layer view cannot be reset; free sequences in the PagedKVCache")

    def __repr__(self) -> str:
        b = self.batch
        return (
            f"PagedLayerView(layer={self.layer_idx}, B={b.batch_size}, S={b.seq_len}, T={b.kv_len})"
        )

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys/values and return every sequence's keys/values, padded.

        Args:
            k, v: (B, S, H_kv, D) new keys/values (already rotated).

        Returns:
            (k_all, v_all): (B, T, H_kv, D); positions past a sequence's length are garbage and
            masked out by ``PagedBatch.masks``.
        """
        pb, c = self.batch, self.batch.cache
        kp, vp = c.k_pools[self.layer_idx], c.v_pools[self.layer_idx]
        n, bs, h, d = kp.shape
        kf, vf = kp.view(n * bs, h, d), vp.view(n * bs, h, d)
        k_new, v_new = k.reshape(-1, h, d), v.reshape(-1, h, d)
        if pb.write_rows is not None:
            k_new, v_new = k_new[pb.write_rows], v_new[pb.write_rows]
        kf.index_copy_(0, pb.write_slots, k_new.to(kf.dtype))
        vf.index_copy_(0, pb.write_slots, v_new.to(vf.dtype))
        b, t = pb.batch_size, pb.kv_len
        k_all = kp[pb.block_table].view(b, -1, h, d)[:, :t]  # (B, T, H_kv, D)
        v_all = vp[pb.block_table].view(b, -1, h, d)[:, :t]
        return k_all, v_all
