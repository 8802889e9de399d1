"""``Mamba2Block``: the Mamba-2 mixer with the SSD chunkwise algorithm."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.sequence_models.mixers._conv import causal_depthwise_conv
from seedbed.sequence_models.mixers._utils import check_chunk_size
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer, check_mode
from seedbed.sequence_models.mixers.mamba2.chunk import chunk_ssd
from seedbed.sequence_models.mixers.mamba2.naive import naive_ssd
from seedbed.sequence_models.mixers.mamba2.recurrent import recurrent_ssd, ssd_step

__all__ = ["Mamba2Block", "Mamba2State"]


class GroupRMSNorm(nn.Module):
    """RMS norm over each of ``n_groups`` equal slices of the last dim (Mamba-2's gated norm
    normalises per group of B/C heads), with one weight of the full width; float32 inside.
    With one group it is core-layers' RMSNorm."""

    def __init__(self, dim: int, n_groups: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % n_groups:
            raise ValueError(f"dim={dim} must be divisible by n_groups={n_groups}")
        self.n_groups, self.eps = n_groups, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float().unflatten(-1, (self.n_groups, -1))  # (..., G, dim / G)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32.flatten(-2) * self.weight.float()).to(x.dtype)


@dataclasses.dataclass
class Mamba2State(MixerState):
    """State of :class:`Mamba2Block`.

    Attributes:
        conv: (B, E + 2 G N, K-1) last K-1 inputs of the depthwise convolution.
        ssm: (B, H, P, N) SSD state per head (compute dtype, >= float32).
    """

    mixer = "Mamba2Block"
    conv: torch.Tensor
    ssm: torch.Tensor


class Mamba2Block(SequenceMixer[Mamba2State]):
    """Mamba-2 mixer (Dao & Gu, 2024): SSD with a scalar decay per head.

    ``z, xBC, dt = in_proj(u)``; ``x, B, C = split(silu(conv1d(xBC)))``;
    ``dt = softplus(dt + dt_bias)``; ``y = SSD(x; dt, A=-exp(A_log), B, C) + D x``;
    ``out = out_proj(RMSNorm(y * silu(z)))`` (the gated norm, per group). Parameter names
    follow HF transformers' ``Mamba2Mixer``, whose state dict loads directly.

    Args:
        d_model: model dimension D.
        d_state: state size N per head.
        d_conv: depthwise convolution width K.
        expand: inner dimension E = expand * D.
        head_dim: head dimension P (H = E / P heads).
        n_groups: G groups of B/C shared by H/G heads.
        mode: SSD form for ``forward``/``stream``: "chunk", "recurrent" or "naive".
        chunk_size: chunk length of the chunkwise SSD.
        dt_min, dt_max, dt_init_floor: range of the initial step sizes.
        A_init_range: A_h = -U(A_init_range) at initialisation.
        norm_eps: epsilon of the gated RMSNorm.

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = Mamba2State

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 64,
        n_groups: int = 1,
        *,
        mode: str = "chunk",
        chunk_size: int = 64,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        for name, val in (
            ("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand),
            ("head_dim", head_dim), ("n_groups", n_groups),
        ):  # fmt: skip
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        e = expand * d_model
        if e % head_dim:
            raise ValueError(f"expand * d_model = {e} must be divisible by head_dim={head_dim}")
        n_heads = e // head_dim
        if n_heads % n_groups:
            raise ValueError(f"n_heads={n_heads} must be divisible by n_groups={n_groups}")
        check_chunk_size(chunk_size)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"A_init_range must be 0 < lo <= hi, got {A_init_range}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner, self.head_dim, self.n_heads, self.n_groups = e, head_dim, n_heads, n_groups
        self.conv_dim = e + 2 * n_groups * d_state
        self.mode = check_mode(mode)
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * e + 2 * n_groups * d_state + n_heads, bias=False)
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            kernel_size=d_conv,
            groups=self.conv_dim,
            padding=d_conv - 1,
        )
        dt = torch.exp(
            torch.rand(n_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        )
        dt = dt.clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(*A_init_range)))
        self.D = nn.Parameter(torch.ones(n_heads))
        self.norm = GroupRMSNorm(e, n_groups, eps=norm_eps)
        self.out_proj = nn.Linear(e, d_model, bias=False)

    def init_state(self, batch_size, *, device=None, dtype=None) -> Mamba2State:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        device = pdevice if device is None else device
        dtype = pdtype if dtype is None else dtype
        return Mamba2State(
            conv=torch.zeros(batch_size, self.conv_dim, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(
                batch_size, self.n_heads, self.head_dim, self.d_state, device=device,
                dtype=torch.promote_types(dtype, torch.float32),
            ),
        )  # fmt: skip

    def _split(self, zxbcdt: torch.Tensor):  # type: ignore[no-untyped-def]
        e, gn = self.d_inner, self.n_groups * self.d_state
        return torch.split(zxbcdt, [e, e + 2 * gn, self.n_heads], dim=-1)

    def _stream(
        self, x: torch.Tensor, state: Mamba2State | None
    ) -> tuple[torch.Tensor, Mamba2State]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        bsz, length, _ = x.shape
        z, xbc, dt = self._split(self.in_proj(x))
        xbc, tail = causal_depthwise_conv(
            xbc.transpose(1, 2), self.conv1d.weight, self.conv1d.bias, state.conv
        )
        xbc = F.silu(xbc).transpose(1, 2)  # (B, L, E + 2GN)
        gn = self.n_groups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        xs = xs.reshape(bsz, length, self.n_heads, self.head_dim)  # (B, L, H, P)
        B = B.reshape(bsz, length, self.n_groups, self.d_state)  # (B, L, G, N)
        C = C.reshape(bsz, length, self.n_groups, self.d_state)
        dt = F.softplus(dt + self.dt_bias)  # (B, L, H)
        A = -torch.exp(self.A_log.float())  # (H,)
        if self.mode == "chunk":
            y, h = chunk_ssd(xs, dt, A, B, C, state.ssm, True, chunk_size=self.chunk_size)
        elif self.mode == "recurrent":
            y, h = recurrent_ssd(xs, dt, A, B, C, state.ssm, True)
        else:
            y, h = naive_ssd(xs, dt, A, B, C, state.ssm, True)
        assert h is not None
        y = y + xs * self.D[:, None].to(xs.dtype)
        y = self.norm(y.reshape(bsz, length, self.d_inner) * F.silu(z))
        return self.out_proj(y), Mamba2State(conv=tail, ssm=h)

    def _step(self, x: torch.Tensor, state: Mamba2State) -> tuple[torch.Tensor, Mamba2State]:
        bsz = x.shape[0]
        z, xbc, dt = self._split(self.in_proj(x))
        xbc, tail = causal_depthwise_conv(
            xbc[..., None], self.conv1d.weight, self.conv1d.bias, state.conv
        )
        xbc = F.silu(xbc[..., 0])  # (B, E + 2GN)
        gn = self.n_groups * self.d_state
        xs, B, C = torch.split(xbc, [self.d_inner, gn, gn], dim=-1)
        sd = state.ssm.dtype
        xh = xs.reshape(bsz, self.n_heads, self.head_dim)
        dt = F.softplus(dt + self.dt_bias).to(sd)  # (B, H)
        A = -torch.exp(self.A_log.to(sd))
        y, h = ssd_step(
            xh.to(sd), dt, A,
            B.reshape(bsz, self.n_groups, self.d_state).to(sd),
            C.reshape(bsz, self.n_groups, self.d_state).to(sd),
            state.ssm,
        )  # fmt: skip
        y = y.to(x.dtype) + xh * self.D[:, None].to(x.dtype)
        y = self.norm(y.reshape(bsz, self.d_inner) * F.silu(z))
        return self.out_proj(y), Mamba2State(conv=tail, ssm=h)
