"""``MambaBlock``: the Mamba-1 selective-SSM mixer (seed system C-2)."""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.sequence_models.mixers._conv import causal_depthwise_conv
from seedbed.sequence_models.mixers._native import NativeUnavailable
from seedbed.sequence_models.mixers._utils import check_chunk_size
from seedbed.sequence_models.mixers.base import MODES, MixerState, SequenceMixer, check_mode
from seedbed.sequence_models.mixers.mamba.chunk import chunk_selective_scan
from seedbed.sequence_models.mixers.mamba.fused import fused_selective_scan
from seedbed.sequence_models.mixers.mamba.naive import naive_selective_scan
from seedbed.sequence_models.mixers.mamba.recurrent import (
    recurrent_selective_scan,
    selective_scan_step,
)

__all__ = ["MambaBlock", "MambaState"]

MAMBA_MODES = ("auto", "fused", *MODES)
_warned_fallback = False


def _warn_fallback(reason: str) -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"MambaBlock: the fused CPU scan is unavailable ({reason}); using the slower "
            "PyTorch chunked scan",
            RuntimeWarning,
            stacklevel=4,
        )


@dataclasses.dataclass
class MambaState(MixerState):
    """State of :class:`MambaBlock`.

    Attributes:
        conv: (B, E, K-1) last K-1 inputs of the depthwise convolution.
        ssm: (B, E, N) selective-SSM state (compute dtype, >= float32).
    """

    mixer = "MambaBlock"
    conv: torch.Tensor
    ssm: torch.Tensor


class MambaBlock(SequenceMixer[MambaState]):
    """Mamba-1 mixer (Gu & Dao, 2023): gated, convolved, selective state space model.

    ``x, z = in_proj(u)``; ``x = silu(conv1d(x))`` (depthwise, causal);
    ``delta, B, C`` from ``x`` (``delta = softplus(dt_proj(x_proj(x)[:R]))``);
    ``y = SSM(x; delta, A=-exp(A_log), B, C) + D x``; ``out = out_proj(y * silu(z))``.
    Parameter names equal HF transformers' ``MambaMixer`` and mambapy's ``MambaBlock``, so
    their state dicts load directly.

    Args:
        d_model: model dimension D.
        d_state: SSM state size N per channel.
        d_conv: depthwise convolution width K.
        expand: inner dimension E = expand * D.
        dt_rank: rank R of the delta projection ("auto" = ceil(D / 16)).
        mode: scan form for ``forward``/``stream``: "auto" (the fused kernel for CPU tensors
            when it builds here, else "chunk"), "fused" (``fused.py``, CPU only), "chunk"
            (pure PyTorch, any device), "recurrent" or "naive".
        chunk_size: chunk length of the chunked scan (the checkpoint interval of the fused
            one's backward pass).
        conv_bias, bias: biases of the convolution / of in_proj and out_proj.
        dt_min, dt_max, dt_init_floor: range of the initial step sizes (Mamba's init).

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = MambaState

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        *,
        mode: str = "auto",
        chunk_size: int = 32,
        conv_bias: bool = True,
        bias: bool = False,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        for name, val in (
            ("d_model", d_model),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
        ):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
        check_chunk_size(chunk_size)
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner, self.dt_rank = expand * d_model, dt_rank
        self.mode = check_mode(mode, MAMBA_MODES)
        self.chunk_size = chunk_size
        e = self.d_inner
        self.in_proj = nn.Linear(d_model, 2 * e, bias=bias)
        self.conv1d = nn.Conv1d(
            e, e, kernel_size=d_conv, groups=e, padding=d_conv - 1, bias=conv_bias
        )
        self.x_proj = nn.Linear(e, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, e, bias=True)
        self.A_log = nn.Parameter(
            torch.log(torch.arange(1, d_state + 1, dtype=torch.float).repeat(e, 1))
        )
        self.D = nn.Parameter(torch.ones(e))
        self.out_proj = nn.Linear(e, d_model, bias=bias)
        with torch.no_grad():  # Mamba's dt init: softplus(bias) log-uniform in [dt_min, dt_max]
            std = dt_rank**-0.5
            nn.init.uniform_(self.dt_proj.weight, -std, std)
            dt = torch.exp(torch.rand(e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def init_state(self, batch_size, *, device=None, dtype=None) -> MambaState:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        device = pdevice if device is None else device
        dtype = pdtype if dtype is None else dtype
        return MambaState(
            conv=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm=torch.zeros(
                batch_size, self.d_inner, self.d_state, device=device,
                dtype=torch.promote_types(dtype, torch.float32),
            ),
        )  # fmt: skip

    def _ssm_inputs(self, xc: torch.Tensor):  # type: ignore[no-untyped-def]
        """xc: (..., E) convolved input -> delta (..., E), B (..., N), C (..., N)."""
        dt, B, C = torch.split(self.x_proj(xc), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        return delta, B, C

    def _scan(self, xc, delta, A, B, C, h0):  # type: ignore[no-untyped-def]
        """The selective scan in this block's ``mode``: (y (B, L, E), final state)."""
        mode = self.mode
        if mode in ("auto", "fused"):
            if xc.device.type == "cpu":
                try:
                    return fused_selective_scan(
                        xc, delta, A, B, C, h0, True, chunk_size=self.chunk_size
                    )
                except NativeUnavailable as exc:
                    if mode == "fused":
                        raise
                    _warn_fallback(str(exc))
            elif mode == "fused":
                raise ValueError(f"mode='fused' runs on the CPU only; the input is on {xc.device}")
            mode = "chunk"
        if mode == "chunk":
            return chunk_selective_scan(xc, delta, A, B, C, h0, True, chunk_size=self.chunk_size)
        if mode == "recurrent":
            return recurrent_selective_scan(xc, delta, A, B, C, h0, True)
        return naive_selective_scan(xc, delta, A, B, C, h0, True)

    def _stream(self, x: torch.Tensor, state: MambaState | None) -> tuple[torch.Tensor, MambaState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, L, E) each
        xc, tail = causal_depthwise_conv(
            xs.transpose(1, 2), self.conv1d.weight, self.conv1d.bias, state.conv
        )
        xc = F.silu(xc).transpose(1, 2)  # (B, L, E)
        delta, B, C = self._ssm_inputs(xc)
        A = -torch.exp(self.A_log.float())  # (E, N)
        y, h = self._scan(xc, delta, A, B, C, state.ssm)
        assert h is not None
        y = (y + xc * self.D.to(xc.dtype)) * F.silu(z)
        return self.out_proj(y), MambaState(conv=tail, ssm=h)

    def _step(self, x: torch.Tensor, state: MambaState) -> tuple[torch.Tensor, MambaState]:
        xs, z = self.in_proj(x).chunk(2, dim=-1)  # (B, E) each
        xc, tail = causal_depthwise_conv(
            xs[..., None], self.conv1d.weight, self.conv1d.bias, state.conv
        )
        xc = F.silu(xc[..., 0])  # (B, E)
        delta, B, C = self._ssm_inputs(xc)
        sd = state.ssm.dtype
        A = -torch.exp(self.A_log.to(sd))
        y, h = selective_scan_step(xc.to(sd), delta.to(sd), A, B.to(sd), C.to(sd), state.ssm)
        y = (y.to(x.dtype) + xc * self.D.to(xc.dtype)) * F.silu(z)
        return self.out_proj(y), MambaState(conv=tail, ssm=h)
