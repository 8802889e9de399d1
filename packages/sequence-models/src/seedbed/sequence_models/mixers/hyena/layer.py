"""``HyenaFilter`` (implicit long filter) and ``HyenaOperator`` (seed system C-3)."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from seedbed.sequence_models.mixers._conv import causal_depthwise_conv
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer, check_mode
from seedbed.sequence_models.mixers.hyena.chunk import fft_causal_conv
from seedbed.sequence_models.mixers.hyena.naive import direct_causal_conv
from seedbed.sequence_models.mixers.hyena.recurrent import cached_conv_step

__all__ = ["HyenaFilter", "HyenaOperator", "HyenaState"]


class _Sin(nn.Module):
    """``sin(freq * x)`` with a learnable per-feature frequency (Hyena's filter activation)."""

    def __init__(self, dim: int, w: float) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """Hyena's implicit long filter: an FFN on positional features times a decay window.

    For lag ``t`` (an integer >= 0) the taps of all ``channels`` are

        h(t) = FFN(z(t)) * exp(-|delta_c| t / (l_max - 1)),
        z(t) = [t / (l_max - 1), cos(2 pi f_b t / l_max), -sin(2 pi f_b t / l_max)]_b

    (``emb_dim = 1 + 2 * bands`` features; the FFN is Linear -> Sin -> (Linear -> Sin) x
    ``num_inner_mlps`` -> Linear(no bias); the decay rates ``|delta_c|`` span
    ``[-log(target)/slow_decay_pct, -log(target)/fast_decay_pct]`` across channels), as in
    Hyena (Poli et al., 2023) and Zoology. The filter is a function of the lag, defined for
    every t (``l_max`` only sets the normalisation), so a stream may run past ``l_max``.

    ``forward(u)`` is the long causal convolution ``y = h * u + bias ⊙ u`` by FFT, O(L log L).

    Args:
        channels: number of independent filters C.
        l_max: length the positions are normalised by.
        emb_dim: positional feature size (odd, >= 3).
        order: width of the FFN.
        num_inner_mlps: hidden layers of the FFN.
        w: initial frequency of the Sin activations.
        fast_decay_pct, slow_decay_pct, target: decay window range (Hyena's defaults).
        bias: learn the per-channel skip ``bias ⊙ u`` (else no skip).

    Shapes:
        u: (B, C, L) -> (B, C, L); ``kernel(L)``: (C, L).
    """

    freqs: torch.Tensor
    deltas: torch.Tensor

    def __init__(
        self,
        channels: int,
        l_max: int,
        *,
        emb_dim: int = 3,
        order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 1.0,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        bias: bool = True,
    ) -> None:
        super().__init__()
        for name, val in (("channels", channels), ("l_max", l_max), ("order", order)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")
        if not isinstance(emb_dim, int) or emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be an odd int >= 3, got {emb_dim!r}")
        if not 0 < target < 1:
            raise ValueError(f"target must be in (0, 1), got {target}")
        self.channels, self.l_max, self.emb_dim = channels, l_max, emb_dim
        bands = (emb_dim - 1) // 2
        self.register_buffer("freqs", torch.linspace(1e-4, bands - 1, bands), persistent=False)
        layers: list[nn.Module] = [nn.Linear(emb_dim, order), _Sin(order, w)]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(order, order), _Sin(order, w)]
        layers.append(nn.Linear(order, channels, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        max_decay, min_decay = math.log(target) / fast_decay_pct, math.log(target) / slow_decay_pct
        self.register_buffer(
            "deltas", torch.linspace(min_decay, max_decay, channels), persistent=True
        )
        self.bias = nn.Parameter(torch.randn(channels)) if bias else None

    def taps(self, lags: torch.Tensor) -> torch.Tensor:
        """Filter values at integer ``lags`` (T,) -> (C, T) in the parameters' dtype."""
        dtype = next(self.implicit_filter.parameters()).dtype
        t = lags.to(dtype)[:, None]  # (T, 1)
        w = 2 * math.pi * t / self.l_max
        phase = self.freqs.to(dtype)[None, :] * w  # (T, bands)
        z = torch.cat([t / max(self.l_max - 1, 1), torch.cos(phase), -torch.sin(phase)], dim=-1)
        h = self.implicit_filter(z)  # (T, C)
        window = torch.exp(-t / max(self.l_max - 1, 1) * self.deltas.to(dtype).abs())  # (T, C)
        return (h * window).transpose(0, 1)  # (C, T)

    def kernel(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """Taps for lags 0..length-1: (C, length)."""
        device = self.deltas.device if device is None else device
        return self.taps(torch.arange(length, device=device))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Long causal convolution of u (B, C, L) with this filter, by FFT."""
        if not isinstance(u, torch.Tensor) or u.ndim != 3 or u.shape[1] != self.channels:
            got = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"HyenaFilter expects u of shape (B, {self.channels}, L), got {got}")
        if u.shape[-1] == 0:
            raise ValueError("HyenaFilter expects a sequence of length L >= 1, got L=0")
        return fft_causal_conv(u, self.kernel(u.shape[-1], u.device), self.bias)


@dataclasses.dataclass
class HyenaState(MixerState):
    """State of :class:`HyenaOperator` (a cache: it grows with the context).

    Attributes:
        short: (B, (N+1) D, K-1) tail of the short convolution's input.
        history: (B, (N-1) D, T) inputs of the N-1 long convolutions so far.
        taps: ((N-1) D, T) filter taps for lags 0..T-1 (no batch dimension), computed with
            the weights current when the state was made (like a KV cache, a state is tied
            to the weights).
        offset: T, the number of tokens seen.
    """

    mixer = "HyenaOperator"
    unbatched = ("taps",)
    short: torch.Tensor
    history: torch.Tensor
    taps: torch.Tensor
    offset: int = 0


class HyenaOperator(SequenceMixer[HyenaState]):
    """Hyena operator of order N: gated long convolutions of projections (Poli et al. 2023).

    ``x_1 .. x_N, v = split(shortconv(in_proj(u)))``; then ``v = h_i * (v ⊙ x_i)`` (long
    causal convolution with implicit filter i, plus its skip) for i = 1..N-1, and
    ``y = out_proj(v ⊙ x_N)``. With N = 2 this is Zoology's / safari's Hyena.

    Forms (``mode``): "chunk" convolves by FFT (O(L log L)); "naive" by the direct sum
    (O(L^2)); "recurrent" token by token from the cache.

    Decoding: Hyena has **no constant-size recurrent state**: the implicit filter spans the
    whole context and is not a finite-order state space model (turning it into one needs a
    distillation step, e.g. "Laughing Hyena", which changes the model). ``step`` is therefore
    a cached decode form: the state keeps the past inputs of each long convolution (like a KV
    cache) and each token costs O(T) at context T. ``stream`` does the same for chunks.

    Args:
        d_model: model dimension D.
        l_max: length the filter positions are normalised by (longer inputs are allowed).
        order: N (>= 2).
        filter_order: width of the implicit filter FFN.
        short_filter_order: width K of the short depthwise convolution.
        emb_dim: positional feature size of the filter.
        mode: "chunk", "naive" or "recurrent".
        **filter_kwargs: passed to :class:`HyenaFilter`.

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = HyenaState

    def __init__(
        self,
        d_model: int,
        l_max: int,
        order: int = 2,
        *,
        filter_order: int = 64,
        short_filter_order: int = 3,
        emb_dim: int = 3,
        mode: str = "chunk",
        **filter_kwargs: float | int | bool,
    ) -> None:
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        if isinstance(order, bool) or not isinstance(order, int) or order < 2:
            raise ValueError(f"order must be an int >= 2, got {order!r}")
        if (
            isinstance(short_filter_order, bool)
            or not isinstance(short_filter_order, int)
            or short_filter_order < 1
        ):
            raise ValueError(
                f"short_filter_order must be a positive int, got {short_filter_order!r}"
            )
        self.d_model, self.l_max, self.order = d_model, l_max, order
        self.short_filter_order = short_filter_order
        self.mode = check_mode(mode)
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        self.short_filter = nn.Conv1d(
            width, width, short_filter_order, groups=width, padding=short_filter_order - 1
        )
        self.filter_fn = HyenaFilter(
            (order - 1) * d_model,
            l_max,
            emb_dim=emb_dim,
            order=filter_order,
            **filter_kwargs,  # type: ignore[arg-type]
        )
        self.out_proj = nn.Linear(d_model, d_model)

    def init_state(self, batch_size, *, device=None, dtype=None) -> HyenaState:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        device = pdevice if device is None else device
        dtype = pdtype if dtype is None else dtype
        width, n_long = (self.order + 1) * self.d_model, (self.order - 1) * self.d_model
        return HyenaState(
            short=torch.zeros(
                batch_size, width, self.short_filter_order - 1, device=device, dtype=dtype
            ),
            history=torch.zeros(batch_size, n_long, 0, device=device, dtype=dtype),
            taps=torch.zeros(n_long, 0, device=device, dtype=pdtype),
            offset=0,
        )

    def _gates(self, x: torch.Tensor, short: torch.Tensor):  # type: ignore[no-untyped-def]
        u = self.in_proj(x).transpose(1, 2)  # (B, (N+1) D, L)
        uc, tail = causal_depthwise_conv(u, self.short_filter.weight, self.short_filter.bias, short)
        return uc.split(self.d_model, dim=1), tail  # N+1 tensors (B, D, L)

    def _stream(self, x: torch.Tensor, state: HyenaState | None) -> tuple[torch.Tensor, HyenaState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        if self.mode == "recurrent":
            ys = []
            for x_t in x.unbind(1):
                y_t, state = self._step(x_t, state)
                ys.append(y_t)
            return torch.stack(ys, dim=1), state
        d, _length, total = self.d_model, x.shape[1], state.offset + x.shape[1]
        (*xs, v), tail = self._gates(x, state.short)
        taps = self.filter_fn.kernel(total, x.device)  # ((N-1) D, T+L)
        bias = self.filter_fn.bias
        conv = fft_causal_conv if self.mode == "chunk" else direct_causal_conv
        inputs = []
        for i in range(self.order - 1):
            v = v * xs[i]  # (B, D, L)
            inputs.append(v)
            sl = slice(i * d, (i + 1) * d)
            v = conv(v, taps[sl], None if bias is None else bias[sl], state.history[:, sl])
        y = self.out_proj((v * xs[-1]).transpose(1, 2))  # (B, L, D)
        history = torch.cat([state.history, torch.cat(inputs, dim=1)], dim=-1)
        return y, HyenaState(short=tail, history=history, taps=taps, offset=total)

    def _step(self, x: torch.Tensor, state: HyenaState) -> tuple[torch.Tensor, HyenaState]:
        d, t = self.d_model, state.offset
        (*xs, v), tail = self._gates(x[:, None], state.short)  # (B, D, 1) each
        taps = state.taps
        if taps.shape[-1] < t + 1:  # extend the tap cache (amortised doubling)
            n_new = max(t + 1, 2 * taps.shape[-1], 16)
            taps = self.filter_fn.kernel(n_new, x.device)
        bias = self.filter_fn.bias
        v, xs = v[..., 0], [xi[..., 0] for xi in xs]  # (B, D)
        inputs, hists = [], []
        for i in range(self.order - 1):
            v = v * xs[i]
            inputs.append(v)
            sl = slice(i * d, (i + 1) * d)
            v, hist = cached_conv_step(
                v, taps[sl], state.history[:, sl], None if bias is None else bias[sl]
            )
            hists.append(hist)
        y = self.out_proj(v * xs[-1])  # (B, D)
        return y, HyenaState(short=tail, history=torch.cat(hists, dim=1), taps=taps, offset=t + 1)
