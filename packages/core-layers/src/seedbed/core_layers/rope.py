"""Rotary position embedding (RoFormer, Su et al. 2021).

Two conventions for pairing the dimensions of a head are in use and both are offered:

* rotate-half (``interleaved=False``, HF transformers' Llama/Qwen2 and GPT-NeoX): dimension
  ``i`` is paired with ``i + D/2``;
* interleaved (``interleaved=True``, Meta's original LLaMA and GPT-J): dimension ``2i`` is
  paired with ``2i + 1``.

``RotaryEmbedding(positions)`` returns ``(cos, sin)`` laid out for its own convention, so pass
the same ``interleaved`` to :func:`apply_rotary_emb` (or call :meth:`RotaryEmbedding.rotate`,
which does so for you). Positions are explicit, so offsets (a KV cache, packed sequences,
left padding) are just different position values.
"""

from __future__ import annotations

import torch
from torch import nn

from seedbed.core_layers._checks import broadcastable, check_positive_int, check_tensor

__all__ = ["RotaryEmbedding", "apply_rotary_emb"]


class RotaryEmbedding(nn.Module):
    """Cos/sin tables for rotary embeddings, computed on the fly from integer positions.

    ``inv_freq[i] = rope_theta ** (-2i / head_dim)``, the same frequencies as HF's default
    rope (``Qwen2RotaryEmbedding``). cos/sin are computed in float32.

    Args:
        head_dim: per-head dimension D; must be even.
        rope_theta: base of the geometric frequency progression.
        interleaved: pairing convention of the returned tables (see module docstring).

    Shapes:
        positions: (S,) or (B, S) integer tensor.
        returns cos, sin: (S, 1, D) or (B, S, 1, D), float32, broadcastable against
        x of shape (B, S, H, D).
    """

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, rope_theta: float = 10000.0, interleaved: bool = False):
        super().__init__()
        check_positive_int(head_dim, "head_dim")
        if head_dim % 2 != 0:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {head_dim}")
        if isinstance(rope_theta, bool) or not isinstance(rope_theta, (int, float)):
            raise TypeError(f"rope_theta must be a number, got {type(rope_theta).__name__}")
        if not rope_theta > 1.0:
            raise ValueError(f"rope_theta must be > 1, got {rope_theta}")
        self.head_dim = head_dim
        self.rope_theta = float(rope_theta)
        self.interleaved = bool(interleaved)
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim  # (D/2,)
        self.register_buffer("inv_freq", 1.0 / (self.rope_theta**exponent), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(cos, sin)`` for integer ``positions`` (S,) or (B, S)."""
        check_tensor(positions, "positions", ndim=(1, 2), floating=False)
        if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
            raise TypeError(f"positions must be an integer tensor, got {positions.dtype}")
        inv_freq = self.inv_freq.to(device=positions.device, dtype=torch.float)
        freqs = positions[..., None].float() * inv_freq  # (..., S, D/2)
        if self.interleaved:
            emb = freqs.repeat_interleave(2, dim=-1)  # (..., S, D): f0 f0 f1 f1 ...
        else:
            emb = torch.cat((freqs, freqs), dim=-1)  # (..., S, D): f0 f1 ... f0 f1 ...
        return emb.cos().unsqueeze(-2), emb.sin().unsqueeze(-2)  # (..., S, 1, D)

    def _fast_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin')`` for :meth:`_fast_rotate`: with rotate-half pairing, ``sin'`` is
        ``sin`` with its first half negated (the sign of ``rotate_half`` moved into the table,
        computed once per forward instead of once per rotation)."""
        cos, sin = self(positions)  # (..., S, 1, D)
        if not self.interleaved:
            half = self.head_dim // 2
            sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        return cos, sin

    def _fast_rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """:meth:`rotate` on tables from :meth:`_fast_tables`, without checks; same values.

        Rotate-half as ``x * cos + swap_halves(x) * sin'``: ``(-x2) * s == x2 * (-s)`` exactly,
        so this equals ``x * cos + rotate_half(x) * sin`` bit for bit, with fewer kernels.
        """
        if self.interleaved:
            return _apply_rotary(x, cos, sin, True)
        x32 = x.float()
        swapped = x32.unflatten(-1, (2, -1)).flip(-2).flatten(-2)  # (..., D): x2 x1
        return (x32 * cos + swapped * sin).to(x.dtype)

    def rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """:func:`apply_rotary_emb` with this embedding's own convention."""
        return apply_rotary_emb(x, cos, sin, interleaved=self.interleaved)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, rope_theta={self.rope_theta}, interleaved={self.interleaved}"


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # (..., D/2) each
    return torch.cat((-x2, x1), dim=-1)


def _rotate_interleaved(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., D/2) each
    return torch.stack((-x2, x1), dim=-1).flatten(-2)  # (..., D): -x1 x0 -x3 x2 ...


def apply_rotary_emb(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False
) -> torch.Tensor:
    """Rotate ``x`` by the angles whose cos/sin are given: ``x * cos + rot(x) * sin``.

    Computed in float32 and cast back to ``x.dtype``. With ``interleaved=False`` this is HF's
    ``apply_rotary_pos_emb`` (rotate-half).

    Args:
        x: (B, S, H, D) queries or keys (any shape whose last dim is D works).
        cos, sin: (S, 1, D) or (B, S, 1, D) from :class:`RotaryEmbedding` built with the same
            ``interleaved`` value; must broadcast against ``x``.
        interleaved: pairing convention (see module docstring).

    Returns:
        (B, S, H, D), same dtype as x.
    """
    check_tensor(x, "x")
    check_tensor(cos, "cos")
    check_tensor(sin, "sin")
    d = x.shape[-1] if x.ndim else 0
    if x.ndim < 2 or d % 2 != 0:
        raise ValueError(f"x must be (..., D) with even D, got shape {tuple(x.shape)}")
    if cos.shape != sin.shape:
        raise ValueError(
            f"cos and sin must have the same shape, got {tuple(cos.shape)} and {tuple(sin.shape)}"
        )
    if cos.shape[-1] != d:
        raise ValueError(
            f"cos/sin last dimension must equal x's head dim {d}, got {tuple(cos.shape)}"
        )
    if not broadcastable(cos.shape, x.shape):
        raise ValueError(
            f"cos/sin of shape {tuple(cos.shape)} do not broadcast against x of shape {tuple(x.shape)}"
        )
    return _apply_rotary(x, cos, sin, interleaved)


def _apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool
) -> torch.Tensor:
    """:func:`apply_rotary_emb` without its checks (for callers that validated the shapes)."""
    x32 = x.float()
    rot = _rotate_interleaved(x32) if interleaved else _rotate_half(x32)
    return (x32 * cos.float() + rot * sin.float()).to(x.dtype)
