"""Multi-head (grouped-query) attention module with injectable projections, RoPE and KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers._checks import broadcastable, check_positive_int, check_tensor
from seedbed.core_layers.attention.functional import BACKENDS, _attention_unchecked
from seedbed.core_layers.attention.masks import check_attn_mask
from seedbed.core_layers.kv_cache import KVCache
from seedbed.core_layers.mlp import FusedLinear, _fused_linear, _linear
from seedbed.core_layers.rope import RotaryEmbedding

__all__ = ["MultiHeadAttention", "cached_attention", "split_qkv"]


class MultiHeadAttention(nn.Module):
    """Self-attention ``o_proj(attention(rope(q_proj x), rope(k_proj x), v_proj x))``.

    Projections are ordinary modules with HF names (``q_proj``, ``k_proj``, ``v_proj``,
    ``o_proj``), so a LoRA or quantised linear can be injected and HF weights load by name.
    With ``n_kv_heads < n_heads`` it is grouped-query attention. Given a :class:`KVCache`, the
    new keys/values are appended and the queries attend over everything cached, so decoding
    token by token equals one forward pass over the whole sequence.

    Args:
        d_model: model dimension.
        n_heads: query heads H.
        n_kv_heads: key/value heads H_kv (default H); H % H_kv == 0.
        head_dim: per-head dimension D (default d_model // n_heads).
        bias: bias on q/k/v projections (and on o_proj unless ``o_bias`` says otherwise).
        o_bias: bias on o_proj; default: same as ``bias`` (Qwen2 uses bias=True, o_bias=False).
        q_proj, k_proj, v_proj, o_proj: modules mapping d_model -> H*D, H_kv*D, H_kv*D and
            H*D -> d_model; default ``nn.Linear``.
        rope: a :class:`RotaryEmbedding` with ``head_dim == D``, or None for no positions.
        backend: attention backend (see :func:`attention`).
        window: sliding-window size for ``attention`` (None: full).

    Shapes:
        x: (B, S, d_model) -> (B, S, d_model).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        head_dim: int | None = None,
        *,
        bias: bool = False,
        o_bias: bool | None = None,
        q_proj: nn.Module | None = None,
        k_proj: nn.Module | None = None,
        v_proj: nn.Module | None = None,
        o_proj: nn.Module | None = None,
        rope: RotaryEmbedding | None = None,
        backend: str = "auto",
        window: int | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(d_model, "d_model")
        check_positive_int(n_heads, "n_heads")
        n_kv_heads = n_heads if n_kv_heads is None else check_positive_int(n_kv_heads, "n_kv_heads")
        if n_heads % n_kv_heads != 0:
            raise ValueError(
                f"n_heads must be a multiple of n_kv_heads, got {n_heads} and {n_kv_heads}"
            )
        if head_dim is None:
            if d_model % n_heads != 0:
                raise ValueError(
                    f"d_model must be divisible by n_heads when head_dim is not given, got {d_model} and {n_heads}"
                )
            head_dim = d_model // n_heads
        check_positive_int(head_dim, "head_dim")
        if rope is not None:
            if not isinstance(rope, RotaryEmbedding):
                raise TypeError(
                    f"rope must be a RotaryEmbedding or None, got {type(rope).__name__}"
                )
            if rope.head_dim != head_dim:
                raise ValueError(
                    f"rope.head_dim must equal head_dim {head_dim}, got {rope.head_dim}"
                )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if window is not None:
            check_positive_int(window, "window")
        self.d_model, self.n_heads, self.n_kv_heads, self.head_dim = (
            d_model,
            n_heads,
            n_kv_heads,
            head_dim,
        )
        self.backend, self.window = backend, window
        o_bias = bias if o_bias is None else o_bias
        self.q_proj = (
            q_proj if q_proj is not None else nn.Linear(d_model, n_heads * head_dim, bias=bias)
        )
        self.k_proj = (
            k_proj if k_proj is not None else nn.Linear(d_model, n_kv_heads * head_dim, bias=bias)
        )
        self.v_proj = (
            v_proj if v_proj is not None else nn.Linear(d_model, n_kv_heads * head_dim, bias=bias)
        )
        self.o_proj = (
            o_proj if o_proj is not None else nn.Linear(n_heads * head_dim, d_model, bias=o_bias)
        )
        self.rope = rope
        self._qkv: FusedLinear | None = None  # inference copy of [q; k; v], see _attend

    def forward(
        self,
        x: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        causal: bool = True,
    ) -> torch.Tensor:
        """Attend ``x`` (B, S, d_model) to itself (and to the cache contents, if given).

        Args:
            positions: (S,) or (B, S) integer positions for RoPE; default
                ``cache.size + arange(S)`` (``arange(S)`` without a cache).
            attn_mask: as in :func:`attention`, over (B, H, S, S_total) where S_total counts
                the cached tokens too.
            cache: a :class:`KVCache` of matching (B, H_kv, D); updated in place.
            causal: causal masking (bottom-right aligned against the cache).

        Returns:
            (B, S, d_model).
        """
        check_tensor(x, "x", ndim=3)
        b, s, dm = x.shape
        if dm != self.d_model:
            raise ValueError(f"x must be (B, S, d_model={self.d_model}), got {tuple(x.shape)}")
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"cache must be a KVCache or None, got {type(cache).__name__}")
            want = (b, self.n_kv_heads, self.head_dim)
            got = (cache.batch_size, cache.n_kv_heads, cache.head_dim)
            if got != want:
                raise ValueError(f"cache must have (B, H_kv, D) = {want}, got {got}")
            if cache.dtype != x.dtype:
                raise TypeError(f"cache dtype must equal x's dtype {x.dtype}, got {cache.dtype}")
            if cache.size + s > cache.max_seq_len:
                raise ValueError(
                    f"KVCache overflow: max_seq_len is {cache.max_seq_len}, got {cache.size} stored + {s} new"
                )
        if positions is not None:
            if self.rope is None:
                raise ValueError("positions were given but this MultiHeadAttention has no rope")
            check_tensor(positions, "positions", ndim=(1, 2), floating=False)
        if self.rope is not None:
            if positions is None:
                start = cache.size if cache is not None else 0
                positions = torch.arange(start, start + s, device=x.device)  # (S,)
            elif positions.shape[-1] != s:
                raise ValueError(
                    f"positions must be (S,) or (B, S) with S={s}, got {tuple(positions.shape)}"
                )
            cos, sin = self.rope._fast_tables(positions)  # (S, 1, D) or (B, S, 1, D)
            if not broadcastable(cos.shape[:-2], (b, s)):
                raise ValueError(
                    f"positions must be (S,) or (B, S) with B={b}, S={s}, got {tuple(positions.shape)}"
                )
        else:
            cos = sin = None  # type: ignore[assignment]
        if attn_mask is not None:
            n_keys = s + (cache.size if cache is not None else 0)
            check_attn_mask(attn_mask, b, self.n_heads, s, n_keys)
        if not isinstance(causal, bool):
            raise TypeError(f"causal must be a bool, got {type(causal).__name__}")
        return self._attend(x, cos, sin, attn_mask, cache, causal)

    def _attend(
        self,
        x: torch.Tensor,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        attn_mask: torch.Tensor | None,
        cache: KVCache | None,
        causal: bool,
    ) -> torch.Tensor:
        """:meth:`forward` on checked arguments, with the RoPE tables already computed.

        A model that validates its inputs once per forward calls this for every layer with
        one shared ``(cos, sin) = rope._fast_tables(positions)`` (None without rope) and skips
        the per-layer re-validation. At inference, plain ``nn.Linear`` q/k/v projections run as
        one matmul against a cached concatenation of their weights, and RoPE rotates q and k in
        one pass; the values are those of the separate projections and rotations.
        """
        b, s, _ = x.shape
        h, h_kv, d = self.n_heads, self.n_kv_heads, self.head_dim
        mods = self._modules  # direct lookups: nn.Module.__getattr__ is slow on this path
        rope = self.rope
        fused = _fused_linear((mods["q_proj"], mods["k_proj"], mods["v_proj"]), self._qkv)
        if fused is not None:
            if fused is not self._qkv:
                self._qkv = fused
            qkv = F.linear(x, fused[1], fused[2]).view(b, s, h + 2 * h_kv, d)  # (B, S, H+2H_kv, D)
            q, k, v = split_qkv(qkv, h, rope, cos, sin)
        else:
            q = self.q_proj(x).view(b, s, h, d)  # (B, S, H, D)
            k = self.k_proj(x).view(b, s, h_kv, d)  # (B, S, H_kv, D)
            v = self.v_proj(x).view(b, s, h_kv, d)  # (B, S, H_kv, D)
            if rope is not None and cos is not None and sin is not None:
                q, k = rope._fast_rotate(q, cos, sin), rope._fast_rotate(k, cos, sin)
        out = cached_attention(q, k, v, cache, attn_mask, causal, self.window, self.backend)
        return _linear(mods["o_proj"], out)  # (B, S, d_model)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, "
            f"head_dim={self.head_dim}, backend={self.backend!r}, window={self.window}"
        )


def cached_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache: KVCache | None,
    attn_mask: torch.Tensor | None,
    causal: bool,
    window: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Append ``k``, ``v`` to ``cache`` (if any) and attend ``q`` over everything cached.

    The unchecked core that :class:`MultiHeadAttention` and models with their own projections
    (e.g. a fused decode path, after :func:`split_qkv`) share: arguments must already be
    validated (shapes, cache capacity, mask shape), as :meth:`MultiHeadAttention.forward` does.

    Args:
        q: (B, S, H, D) rotated queries.
        k, v: (B, S, H_kv, D) rotated keys and values of the S new tokens.
        cache: a :class:`KVCache` (or a subclass with ``update``), or None.
        attn_mask, causal, window, backend: as in :func:`attention`, over the cached + new keys.

    Returns:
        (B, S, H * D), heads flattened, ready for the output projection.
    """
    b, s, h, d = q.shape
    if cache is not None:  # (B, S_total, H_kv, D)
        k, v = cache._append(k, v) if type(cache) is KVCache else cache.update(k, v)
    out = _attention_unchecked(q, k, v, causal, attn_mask, window, backend)  # (B, S, H, D)
    return out.reshape(b, s, h * d)


def split_qkv(
    qkv: torch.Tensor,
    n_heads: int,
    rope: RotaryEmbedding | None,
    cos: torch.Tensor | None,
    sin: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split one fused q/k/v projection into heads, rotating q and k in one pass.

    Args:
        qkv: (B, S, H + 2 H_kv, D): the heads of q, then k, then v (the output of one matmul
            against the row-concatenated q/k/v weights, viewed per head).
        n_heads: H (H_kv follows from the shape).
        rope: the :class:`RotaryEmbedding` whose ``_fast_tables`` gave ``cos``, ``sin``; None
            (or None tables) for no rotation.

    Returns:
        q (B, S, H, D), k and v (B, S, H_kv, D), ready for :func:`cached_attention`; the
        values of separate projections rotated one by one.
    """
    h = n_heads
    h_kv = (qkv.shape[2] - h) // 2
    qk = qkv.narrow(2, 0, h + h_kv)  # (B, S, H+H_kv, D)
    if rope is not None and cos is not None and sin is not None:
        qk = rope._fast_rotate(qk, cos, sin)
    v = qkv.narrow(2, h + h_kv, h_kv)  # (B, S, H_kv, D)
    return qk.narrow(2, 0, h), qk.narrow(2, h, h_kv), v
