"""RWKV-4 modules: time-mix (the WKV mixer), channel-mix, and the full block ``RWKVLoop``.

Parameter names follow HF transformers' ``RwkvSelfAttention`` / ``RwkvFeedForward`` /
``RwkvBlock`` so that ``RWKVLoop.load_state_dict(hf_block.state_dict())`` loads a checkpoint
block as it is (the embedding ``pre_ln`` of HF's layer 0 is not part of a block here).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from seedbed.sequence_models.mixers._utils import check_chunk_size
from seedbed.sequence_models.mixers.base import MixerState, SequenceMixer, check_mode
from seedbed.sequence_models.mixers.rwkv.chunk import chunk_wkv
from seedbed.sequence_models.mixers.rwkv.naive import empty_wkv_state, naive_wkv
from seedbed.sequence_models.mixers.rwkv.recurrent import recurrent_wkv, wkv_step

__all__ = [
    "RWKVChannelMix",
    "RWKVLoop",
    "RWKVState",
    "RWKVTimeMix",
    "RWKVTimeMixState",
]


def _check_layer_args(layer_id: int, n_layers: int) -> None:
    if not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    if not isinstance(layer_id, int) or not 0 <= layer_id < n_layers:
        raise ValueError(f"layer_id must be an int in [0, {n_layers}), got {layer_id!r}")


def _token_shift(x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """x: (B, L, D), prev: (B, D) the token before x[:, 0] -> (B, L, D) shifted by one."""
    return torch.cat([prev[:, None, :].to(x.dtype), x[:, :-1]], dim=1)


@dataclasses.dataclass
class RWKVTimeMixState(MixerState):
    """State of :class:`RWKVTimeMix`.

    Attributes:
        shift: (B, D) the last input token (for the token shift).
        wkv: (B, 3, D_att) ``[num, den, max]``: past sums scaled by ``e^{-max}``.
    """

    mixer = "RWKVTimeMix"
    shift: torch.Tensor
    wkv: torch.Tensor


class RWKVTimeMix(SequenceMixer[RWKVTimeMixState]):
    """RWKV-4 time-mix: token shift, receptance-gated WKV (a per-channel decaying average).

    ``y = output(sigmoid(r) * wkv(k, v))`` with ``k, v, r`` projections of the token mixed
    with its predecessor (learned per-channel mix). The WKV runs in the chosen ``mode``:
    ``"chunk"`` (chunkwise-parallel, training), ``"recurrent"`` (token loop) or ``"naive"``
    (quadratic reference). ``step`` always uses the recurrence (O(1) memory per token).

    Args:
        d_model: model dimension D.
        d_att: WKV dimension (default D).
        mode: WKV form used by ``forward``/``stream``.
        chunk_size: chunk length of the chunkwise form.
        layer_id, n_layers: position in a stack, used only by the RWKV-4 initialisation.

    Shapes:
        x: (B, L, D) -> (B, L, D).
    """

    state_cls = RWKVTimeMixState

    def __init__(
        self,
        d_model: int,
        d_att: int | None = None,
        *,
        mode: str = "chunk",
        chunk_size: int = 32,
        layer_id: int = 0,
        n_layers: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        d_att = d_model if d_att is None else d_att
        if not isinstance(d_att, int) or d_att < 1:
            raise ValueError(f"d_att must be a positive int, got {d_att!r}")
        _check_layer_args(layer_id, n_layers)
        self.d_model, self.d_att = d_model, d_att
        self.mode = check_mode(mode)
        check_chunk_size(chunk_size)
        self.chunk_size = chunk_size
        self.time_decay = nn.Parameter(torch.empty(d_att))  # w = exp(time_decay) > 0
        self.time_first = nn.Parameter(torch.empty(d_att))  # u, bonus of the current token
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_value = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, d_att, bias=False)
        self.value = nn.Linear(d_model, d_att, bias=False)
        self.receptance = nn.Linear(d_model, d_att, bias=False)
        self.output = nn.Linear(d_att, d_model, bias=False)
        self.reset_parameters(layer_id, n_layers)

    @torch.no_grad()
    def reset_parameters(self, layer_id: int = 0, n_layers: int = 1) -> None:
        """RWKV-4's initialisation: decay speeds from -5 to 3 across channels, zigzag bonus."""
        ratio_0_to_1 = layer_id / max(n_layers - 1, 1)
        ratio_1_to_0 = 1.0 - layer_id / n_layers
        h = torch.arange(self.d_att, dtype=torch.float)
        self.time_decay.copy_(-5 + 8 * (h / max(self.d_att - 1, 1)) ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = ((h + 1) % 3 - 1) * 0.5
        self.time_first.copy_(math.log(0.3) + zigzag)
        tw = (torch.arange(self.d_model, dtype=torch.float) / self.d_model)[None, None, :]
        self.time_mix_key.copy_(tw**ratio_1_to_0)
        self.time_mix_value.copy_(tw**ratio_1_to_0 + 0.3 * ratio_0_to_1)
        self.time_mix_receptance.copy_(tw ** (0.5 * ratio_1_to_0))
        for lin in (self.key, self.value, self.receptance, self.output):
            nn.init.normal_(lin.weight, std=lin.in_features**-0.5)

    def init_state(self, batch_size, *, device=None, dtype=None) -> RWKVTimeMixState:  # type: ignore[no-untyped-def]
        pdtype, pdevice = self._param_dtype_device()
        device = pdevice if device is None else device
        dtype = pdtype if dtype is None else dtype
        sdtype = torch.promote_types(dtype, torch.float32)
        return RWKVTimeMixState(
            shift=torch.zeros(batch_size, self.d_model, device=device, dtype=dtype),
            wkv=empty_wkv_state(batch_size, self.d_att, device=device, dtype=sdtype),
        )

    def _mix(self, x: torch.Tensor, shifted: torch.Tensor):  # type: ignore[no-untyped-def]
        # (D,) views broadcast against both (B, L, D) and (B, D)
        mk, mv, mr = (
            m.reshape(-1)
            for m in (self.time_mix_key, self.time_mix_value, self.time_mix_receptance)
        )
        k = self.key(x * mk + shifted * (1 - mk))
        v = self.value(x * mv + shifted * (1 - mv))
        r = torch.sigmoid(self.receptance(x * mr + shifted * (1 - mr)))
        return r, k, v

    def _stream(
        self, x: torch.Tensor, state: RWKVTimeMixState | None
    ) -> tuple[torch.Tensor, RWKVTimeMixState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        r, k, v = self._mix(x, _token_shift(x, state.shift))  # (B, L, D_att) each
        w, u = torch.exp(self.time_decay), self.time_first
        if self.mode == "chunk":
            o, wkv = chunk_wkv(w, u, k, v, state.wkv, True, chunk_size=self.chunk_size)
        elif self.mode == "recurrent":
            o, wkv = recurrent_wkv(w, u, k, v, state.wkv, True)
        else:
            o, wkv = naive_wkv(w, u, k, v, state.wkv, True)
        assert wkv is not None
        y = self.output(r * o)  # (B, L, D)
        return y, RWKVTimeMixState(shift=x[:, -1], wkv=wkv)

    def _step(
        self, x: torch.Tensor, state: RWKVTimeMixState
    ) -> tuple[torch.Tensor, RWKVTimeMixState]:
        r, k, v = self._mix(x, state.shift.to(x.dtype))  # (B, D_att) each
        wkv_dtype = state.wkv.dtype
        o, wkv = wkv_step(
            torch.exp(self.time_decay).to(wkv_dtype),
            self.time_first.to(wkv_dtype),
            k.to(wkv_dtype),
            v.to(wkv_dtype),
            state.wkv,
        )
        y = self.output(r * o.to(x.dtype))  # (B, D)
        return y, RWKVTimeMixState(shift=x, wkv=wkv)


class RWKVChannelMix(nn.Module):
    """RWKV-4 channel-mix: ``sigmoid(r) * value(relu(key(x'))^2)`` on token-shifted input.

    Shapes:
        x: (B, L, D), prev: (B, D) the token before x -> (B, L, D).
    """

    def __init__(
        self, d_model: int, d_ffn: int | None = None, *, layer_id: int = 0, n_layers: int = 1
    ):
        super().__init__()
        d_ffn = 4 * d_model if d_ffn is None else d_ffn
        if not isinstance(d_ffn, int) or d_ffn < 1:
            raise ValueError(f"d_ffn must be a positive int, got {d_ffn!r}")
        _check_layer_args(layer_id, n_layers)
        self.d_model, self.d_ffn = d_model, d_ffn
        self.time_mix_key = nn.Parameter(torch.empty(1, 1, d_model))
        self.time_mix_receptance = nn.Parameter(torch.empty(1, 1, d_model))
        self.key = nn.Linear(d_model, d_ffn, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_ffn, d_model, bias=False)
        with torch.no_grad():
            tw = (torch.arange(d_model, dtype=torch.float) / d_model)[None, None, :]
            ratio_1_to_0 = 1.0 - layer_id / n_layers
            self.time_mix_key.copy_(tw**ratio_1_to_0)
            self.time_mix_receptance.copy_(tw**ratio_1_to_0)

    def forward(self, x: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        shifted = _token_shift(x, prev)
        mk, mr = self.time_mix_key.reshape(-1), self.time_mix_receptance.reshape(-1)  # (D,)
        k = torch.square(torch.relu(self.key(x * mk + shifted * (1 - mk))))
        r = torch.sigmoid(self.receptance(x * mr + shifted * (1 - mr)))
        return r * self.value(k)


@dataclasses.dataclass
class RWKVState(MixerState):
    """State of :class:`RWKVLoop`: everything one RWKV-4 block carries between tokens.

    Attributes:
        att_shift: (B, D) last ``ln1`` output (time-mix token shift).
        wkv: (B, 3, D_att) ``[num, den, max]`` of the WKV recurrence (float32 or float64).
        ffn_shift: (B, D) last ``ln2`` output (channel-mix token shift).
    """

    mixer = "RWKVLoop"
    att_shift: torch.Tensor
    wkv: torch.Tensor
    ffn_shift: torch.Tensor


class RWKVLoop(SequenceMixer[RWKVState]):
    """One RWKV-4 block with a constant-size recurrent state (seed system C-6).

    ``x = x + TimeMix(LN1(x)); x = x + ChannelMix(LN2(x))``, the block of HF's
    ``RwkvBlock`` (without the embedding ``pre_ln`` of layer 0). It is a sequence mixer in
    the sense of DESIGN.md: ``(B, L, D) -> (B, L, D)``.

    State API (for infinite-context / chunk-wise training):

    * ``state = loop.init_state(batch_size)`` -> :class:`RWKVState` (all zeros, empty WKV);
    * ``y, state = loop.stream(x_chunk, state)`` processes one chunk (B, L, D) with the
      chunkwise-parallel WKV and returns the state after it; consecutive chunks give the
      same outputs as one ``forward`` over their concatenation;
    * ``y_t, state = loop.step(x_t, state)`` processes one token (B, D) in O(1) memory;
    * ``state.detach()`` cuts the graph between chunks (truncated BPTT), ``state.to(...)``
      moves it, ``state.batch_size`` reports its batch. Calls never modify the given state.

    A state from another mixer or for another batch size is rejected with TypeError /
    ValueError.

    Args:
        d_model: model dimension D.
        d_ffn: channel-mix hidden size (default 4 D).
        d_att: WKV dimension (default D).
        mode: WKV form used by ``forward``/``stream``: "chunk", "recurrent" or "naive".
        chunk_size: chunk length of the chunkwise WKV.
        layer_norm_eps: LayerNorm epsilon.
        layer_id, n_layers: position in a stack (RWKV-4 initialisation only).

    Example:
        >>> loop = RWKVLoop(64)
        >>> state = loop.init_state(2)
        >>> for chunk in torch.randn(2, 256, 64).split(64, dim=1):
        ...     y, state = loop.stream(chunk, state.detach())
    """

    state_cls = RWKVState

    def __init__(
        self,
        d_model: int,
        d_ffn: int | None = None,
        d_att: int | None = None,
        *,
        mode: str = "chunk",
        chunk_size: int = 32,
        layer_norm_eps: float = 1e-5,
        layer_id: int = 0,
        n_layers: int = 1,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.attention = RWKVTimeMix(
            d_model, d_att, mode=mode, chunk_size=chunk_size, layer_id=layer_id, n_layers=n_layers
        )
        self.feed_forward = RWKVChannelMix(d_model, d_ffn, layer_id=layer_id, n_layers=n_layers)
        self.ln1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.ln2 = nn.LayerNorm(d_model, eps=layer_norm_eps)

    @property
    def mode(self) -> str:  # type: ignore[override]
        return self.attention.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.attention.mode = check_mode(value)

    def init_state(self, batch_size, *, device=None, dtype=None) -> RWKVState:  # type: ignore[no-untyped-def]
        att = self.attention.init_state(batch_size, device=device, dtype=dtype)
        return RWKVState(att_shift=att.shift, wkv=att.wkv, ffn_shift=torch.zeros_like(att.shift))

    def _stream(self, x: torch.Tensor, state: RWKVState | None) -> tuple[torch.Tensor, RWKVState]:
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        h = self.ln1(x)
        att, att_state = self.attention._stream(h, RWKVTimeMixState(state.att_shift, state.wkv))
        x = x + att
        h2 = self.ln2(x)
        x = x + self.feed_forward(h2, state.ffn_shift)
        return x, RWKVState(att_shift=att_state.shift, wkv=att_state.wkv, ffn_shift=h2[:, -1])

    def _step(self, x: torch.Tensor, state: RWKVState) -> tuple[torch.Tensor, RWKVState]:
        h = self.ln1(x)
        att, att_state = self.attention._step(h, RWKVTimeMixState(state.att_shift, state.wkv))
        x = x + att
        h2 = self.ln2(x)
        x = x + self.feed_forward(h2[:, None], state.ffn_shift)[:, 0]
        return x, RWKVState(att_shift=att_state.shift, wkv=att_state.wkv, ffn_shift=h2)
