"""``MultiScaleRetention``: the RetNet mixer (seed system C-1)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers import RMSNorm, RotaryEmbedding
from seedbed.sequence_models.mixers._utils import check_chunk_size
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer, check_mode
from seedbed.sequence_models.mixers.retnet.chunk import chunk_retention
from seedbed.sequence_models.mixers.retnet.naive import naive_retention
from seedbed.sequence_models.mixers.retnet.recurrent import recurrent_retention, retention_step

__all__ = ["MultiScaleRetention", "RetentionState"]


@dataclasses.dataclass
class RetentionState(MixerState):
    """State of :class:`MultiScaleRetention`.

    Attributes:
        kv: (B, H, D_k, D_v) decayed sum of ``k^T v`` (compute dtype, >= float32).
        offset: number of tokens seen (position of the next token, for the rotation).
    """

    mixer = "MultiScaleRetention"
    kv: torch.Tensor
    offset: int = 0


class MultiScaleRetention(SequenceMixer[RetentionState]):
    """Multi-scale retention (RetNet): per-head decays ``gamma_h = 1 - 2^(-5-h)``.

    ``q, k`` are rotated by RoPE (the xPos/RoPE-style relative-position rotation of RetNet,
    here without the xPos length scaling, as in flash-linear-attention), ``o = retention(q,
    k, v)`` in the chosen form, then a per-head RMS group norm and a swish gate:
    ``y = o_proj(GroupNorm(o) * silu(g_proj(x)))``.

    Args:
        d_model: model dimension D.
        n_heads: number of heads H (head h decays with gamma_h).
        expand_k: key dimension is ``expand_k * D`` (split over heads; per head even).
        expand_v: value dimension is ``expand_v * D``.
        mode: retention form for ``forward``/``stream``: "chunk", "recurrent" or "naive".
        chunk_size: chunk length of the chunkwise form.
        norm_eps: epsilon of the group norm.
        rope_theta: RoPE base.

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = RetentionState

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        *,
        expand_k: float = 1.0,
        expand_v: float = 2.0,
        mode: str = "chunk",
        chunk_size: int = 64,
        norm_eps: float = 1e-5,
        rope_theta: float = 10000.0,
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if not isinstance(n_heads, int) or n_heads < 1:
            raise ValueError(f"n_heads must be a positive int, got {n_heads!r}")
        key_dim, value_dim = d_model * expand_k, d_model * expand_v
        if key_dim != int(key_dim) or int(key_dim) % (2 * n_heads):
            raise ValueError(
                f"expand_k * d_model must be an integer divisible by 2 * n_heads = {2 * n_heads} "
                f"(even head dim for the rotation), got {key_dim}"
            )
        if value_dim != int(value_dim) or int(value_dim) % n_heads:
            raise ValueError(
                f"expand_v * d_model must be an integer divisible by n_heads={n_heads}, got {value_dim}"
            )
        check_chunk_size(chunk_size)
        self.d_model, self.n_heads = d_model, n_heads
        self.key_dim, self.value_dim = int(key_dim), int(value_dim)
        self.head_k_dim, self.head_v_dim = self.key_dim // n_heads, self.value_dim // n_heads
        self.mode = check_mode(mode)
        self.chunk_size = chunk_size
        self.q_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.key_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.g_proj = nn.Linear(d_model, self.value_dim, bias=False)
        self.o_proj = nn.Linear(self.value_dim, d_model, bias=False)
        self.g_norm = RMSNorm(self.head_v_dim, eps=norm_eps)  # group norm: one per head
        self.rotary = RotaryEmbedding(self.head_k_dim, rope_theta=rope_theta)

    def init_state(self, batch_size, *, device=None, dtype=None) -> RetentionState:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        dtype = torch.promote_types(pdtype if dtype is None else dtype, torch.float32)
        kv = torch.zeros(
            batch_size, self.n_heads, self.head_k_dim, self.head_v_dim,
            device=pdevice if device is None else device, dtype=dtype,
        )  # fmt: skip
        return RetentionState(kv=kv, offset=0)

    def _qkvg(self, x: torch.Tensor, offset: int):  # type: ignore[no-untyped-def]
        bsz, length, _ = x.shape
        q = self.q_proj(x).view(bsz, length, self.n_heads, self.head_k_dim)
        k = self.k_proj(x).view(bsz, length, self.n_heads, self.head_k_dim)
        v = self.v_proj(x).view(bsz, length, self.n_heads, self.head_v_dim)
        g = self.g_proj(x)  # (B, L, D_v)
        cos, sin = self.rotary(torch.arange(offset, offset + length, device=x.device))
        q, k = self.rotary.rotate(q, cos, sin), self.rotary.rotate(k, cos, sin)
        return q, k, v, g

    def _out(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        o = self.g_norm(o.to(g.dtype))  # (..., H, D_v) normalised per head
        return self.o_proj(o.flatten(-2) * F.silu(g))

    def _stream(
        self, x: torch.Tensor, state: RetentionState | None
    ) -> tuple[torch.Tensor, RetentionState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        q, k, v, g = self._qkvg(x, state.offset)
        if self.mode == "chunk":
            o, kv = chunk_retention(q, k, v, None, state.kv, True, chunk_size=self.chunk_size)
        elif self.mode == "recurrent":
            o, kv = recurrent_retention(q, k, v, None, state.kv, True)
        else:
            o, kv = naive_retention(q, k, v, None, state.kv, True)
        assert kv is not None
        return self._out(o, g), RetentionState(kv=kv, offset=state.offset + x.shape[1])

    def _step(self, x: torch.Tensor, state: RetentionState) -> tuple[torch.Tensor, RetentionState]:
        q, k, v, g = self._qkvg(x[:, None], state.offset)  # (B, 1, H, D)
        sd = state.kv.dtype
        o, kv = retention_step(q[:, 0].to(sd), k[:, 0].to(sd), v[:, 0].to(sd), state.kv)
        return self._out(o, g[:, 0]), RetentionState(kv=kv, offset=state.offset + 1)
