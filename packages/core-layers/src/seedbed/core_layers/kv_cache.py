"""Preallocated key/value cache for autoregressive decoding (seed 004)."""

from __future__ import annotations

import torch

from seedbed.core_layers._checks import check_positive_int, check_tensor

__all__ = ["KVCache"]


class KVCache:
    """Keys and values of the tokens seen so far, in buffers allocated once.

    ``update`` copies new keys/values in place after those already stored and returns views of
    everything stored, so decoding costs no reallocation. Meant for inference (run under
    ``torch.no_grad()``). A failed ``update`` (wrong shape, overflow) leaves the cache as it was.

    Args:
        batch_size: B.
        max_seq_len: capacity in tokens.
        n_kv_heads: H_kv.
        head_dim: D.
        dtype: buffer dtype (floating); incoming keys/values are cast to it.
        device: buffer device.

    Example:
        >>> cache = KVCache(1, 16, 2, 8)
        >>> k_all, v_all = cache.update(torch.randn(1, 3, 2, 8), torch.randn(1, 3, 2, 8))
        >>> k_all.shape, cache.size
        (torch.Size([1, 3, 2, 8]), 3)
    """

    def __init__(
        self,
        batch_size: int,
        max_seq_len: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        for name, val in (
            ("batch_size", batch_size),
            ("max_seq_len", max_seq_len),
            ("n_kv_heads", n_kv_heads),
            ("head_dim", head_dim),
        ):
            check_positive_int(val, name)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        shape = (batch_size, max_seq_len, n_kv_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (B, T_max, H_kv, D)
        self.v = torch.zeros(shape, dtype=dtype, device=device)  # (B, T_max, H_kv, D)
        self._size = 0

    @property
    def size(self) -> int:
        """Number of tokens stored."""
        return self._size

    @property
    def max_seq_len(self) -> int:
        return self.k.shape[1]

    @property
    def batch_size(self) -> int:
        return self.k.shape[0]

    @property
    def n_kv_heads(self) -> int:
        return self.k.shape[2]

    @property
    def head_dim(self) -> int:
        return self.k.shape[3]

    @property
    def dtype(self) -> torch.dtype:
        return self.k.dtype

    @property
    def device(self) -> torch.device:
        return self.k.device

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k``, ``v`` of shape (B, S_new, H_kv, D).

        Returns:
            ``(k_all, v_all)``: views (B, size, H_kv, D) of everything stored, new tokens last.

        Raises:
            TypeError: non-tensor or non-floating input.
            ValueError: wrong shape, or more tokens than ``max_seq_len`` in total.
        """
        check_tensor(k, "k", ndim=4)
        check_tensor(v, "v", ndim=4)
        b, _, h, d = self.k.shape
        if k.shape != v.shape:
            raise ValueError(
                f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}"
            )
        if k.shape[0] != b or k.shape[2] != h or k.shape[3] != d:
            raise ValueError(
                f"KVCache expects k, v of shape (B={b}, S_new, H_kv={h}, D={d}), got {tuple(k.shape)}"
            )
        s_new = k.shape[1]
        end = self._size + s_new
        if end > self.max_seq_len:
            raise ValueError(
                f"KVCache overflow: max_seq_len is {self.max_seq_len}, got {self._size} stored + "
                f"{s_new} new = {end} tokens"
            )
        return self._append(k, v)

    def _append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`update` without its checks, for callers that validated shapes and capacity
        already (the decode hot path of a model that checks its caches once per forward)."""
        start = self._size
        end = start + k.shape[1]
        self.k[:, start:end].copy_(k)
        self.v[:, start:end].copy_(v)
        self._size = end
        return self.k[:, :end], self.v[:, :end]

    def truncate(self, size: int) -> None:
        """Keep only the first ``size`` tokens (e.g. to drop rejected speculative tokens or to
        decode again from the same prompt); the buffers are kept."""
        check_positive_int(size, "size", allow_zero=True)
        if size > self._size:
            raise ValueError(f"truncate size must be <= the {self._size} tokens stored, got {size}")
        self._size = size

    def reset(self) -> None:
        """Forget every stored token (the buffers are kept)."""
        self._size = 0

    def __repr__(self) -> str:
        b, t, h, d = self.k.shape
        return f"KVCache(B={b}, size={self._size}/{t}, H_kv={h}, D={d}, dtype={self.dtype}, device={self.device})"
