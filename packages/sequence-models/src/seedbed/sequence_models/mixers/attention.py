"""Softmax attention as a sequence mixer (the baseline every mixer is compared with)."""

from __future__ import annotations

import dataclasses

import torch

from seedbed.core_layers import MultiHeadAttention, RotaryEmbedding, attention
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer

__all__ = ["AttentionMixer", "AttentionState"]


@dataclasses.dataclass
class AttentionState(MixerState):
    """State of :class:`AttentionMixer`: the keys and values so far (grows with context).

    Attributes:
        k, v: (B, T, H, D) rotated keys and values of the T tokens seen.
    """

    mixer = "AttentionMixer"
    k: torch.Tensor
    v: torch.Tensor

    @property
    def offset(self) -> int:
        return self.k.shape[1]


class AttentionMixer(SequenceMixer[AttentionState]):
    """Causal multi-head softmax attention with RoPE, wrapping core-layers'
    :class:`MultiHeadAttention` (SDPA / flash backends).

    ``stream``/``step`` keep all past keys and values (no constant-size state exists);
    decoding costs O(T) per token at context T.

    Args:
        d_model: model dimension D.
        n_heads: number of heads (head dim D / n_heads, even).
        bias: biases in the projections. With RoPE and no positional embedding, the q/k
            biases are what lets a head attend by relative position alone (e.g. to the
            previous token, the first half of an induction circuit).
        rope_theta: RoPE base, or None for no rotation: positions must then come from
            outside the mixer (e.g. :class:`MixerLM`'s learned absolute positions, as in
            Zoology's attention baseline), else the mixer cannot tell token order.
        backend: attention backend for core-layers' :func:`attention`.

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = AttentionState
    mode = "parallel"

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        *,
        bias: bool = True,
        rope_theta: float | None = 10000.0,
        backend: str = "auto",
    ):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if (
            isinstance(n_heads, bool)
            or not isinstance(n_heads, int)
            or n_heads < 1
            or d_model % n_heads
        ):
            raise ValueError(
                f"n_heads must be a positive int dividing d_model={d_model}, got {n_heads!r}"
            )
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.attn = MultiHeadAttention(
            d_model,
            n_heads,
            bias=bias,
            rope=None
            if rope_theta is None
            else RotaryEmbedding(self.head_dim, rope_theta=rope_theta),
            backend=backend,
        )

    def init_state(self, batch_size, *, device=None, dtype=None) -> AttentionState:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        shape = (batch_size, 0, self.n_heads, self.head_dim)
        device = pdevice if device is None else device
        dtype = pdtype if dtype is None else dtype
        return AttentionState(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-sequence causal attention. x: (B, L, D) -> (B, L, D)."""
        from seedbed.sequence_models.mixers.base import check_sequence

        check_sequence(x, self.d_model, type(self).__name__)
        return self.attn(x, causal=True)

    def _stream(
        self, x: torch.Tensor, state: AttentionState | None
    ) -> tuple[torch.Tensor, AttentionState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        b, s, _ = x.shape
        a = self.attn
        q = a.q_proj(x).view(b, s, self.n_heads, self.head_dim)  # (B, S, H, D)
        k = a.k_proj(x).view(b, s, self.n_heads, self.head_dim)
        v = a.v_proj(x).view(b, s, self.n_heads, self.head_dim)
        if a.rope is not None:
            cos, sin = a.rope(torch.arange(state.offset, state.offset + s, device=x.device))
            q, k = a.rope.rotate(q, cos, sin), a.rope.rotate(k, cos, sin)
        k_all = torch.cat([state.k.to(k.dtype), k], dim=1)  # (B, T+S, H, D)
        v_all = torch.cat([state.v.to(v.dtype), v], dim=1)
        out = attention(q, k_all, v_all, causal=True, backend=a.backend)  # bottom-right aligned
        return a.o_proj(out.reshape(b, s, self.d_model)), AttentionState(k=k_all, v=v_all)

    def _step(self, x: torch.Tensor, state: AttentionState) -> tuple[torch.Tensor, AttentionState]:
        y, state = self._stream(x[:, None], state)
        return y[:, 0], state
