"""The shared sequence-mixer contract (DESIGN.md) and the checks every mixer runs.

A sequence mixer is an ``nn.Module`` mapping ``(B, L, D) -> (B, L, D)``. A recurrent-capable
mixer also offers

* ``stream(x, state)``: run one chunk given the state left by the previous chunk and return
  ``(y, new_state)``; feeding consecutive chunks gives the same output as one ``forward``
  over the whole sequence;
* ``step(x_t, state)``: the same for one token ``x_t`` of shape ``(B, D)``;
* ``init_state(batch_size)``: the state before the first token.

States are small dataclasses of tensors (one class per mixer, subclasses of
:class:`MixerState`). Calls are functional: a call never modifies the state it is given, it
returns a new one, so a failed call leaves the caller's state as it was.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import nn

__all__ = [
    "MODES",
    "MixerState",
    "SequenceMixer",
    "check_mode",
    "check_sequence",
    "check_state",
    "check_token",
]

MODES = ("chunk", "naive", "recurrent")


@dataclasses.dataclass
class MixerState:
    """Base class of every mixer's carried state: a dataclass whose tensor fields have the
    batch as their first dimension (except those named in ``unbatched``; non-tensor fields,
    such as a position offset, are plain Python values shared by the whole batch)."""

    mixer: ClassVar[str] = "mixer"  # name of the mixer the state belongs to, for messages
    unbatched: ClassVar[tuple[str, ...]] = ()  # tensor fields without a batch dimension

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields by name (nested states are flattened with dotted names)."""
        out: dict[str, torch.Tensor] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                out[f.name] = value
            elif isinstance(value, MixerState):
                out.update({f"{f.name}.{k}": v for k, v in value.tensors().items()})
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, torch.Tensor):
                        out[f"{f.name}.{i}"] = item
                    elif isinstance(item, MixerState):
                        out.update({f"{f.name}.{i}.{k}": v for k, v in item.tensors().items()})
        return out

    @property
    def batch_size(self) -> int:
        """Size of the batch dimension shared by all tensor fields."""
        sizes = {
            t.shape[0]
            for name, t in self.tensors().items()
            if name.rsplit(".", 1)[-1] not in self._all_unbatched()
        }
        if len(sizes) != 1:
            raise ValueError(f"{type(self).__name__} has inconsistent batch sizes {sorted(sizes)}")
        return sizes.pop()

    def _all_unbatched(self) -> set[str]:
        names = set(self.unbatched)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, MixerState):
                    names |= item._all_unbatched()
        return names

    def _map(self, fn: Any) -> Any:
        kwargs = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = fn(value)
            elif isinstance(value, MixerState):
                value = value._map(fn)
            elif isinstance(value, (list, tuple)):
                items = [
                    fn(v)
                    if isinstance(v, torch.Tensor)
                    else v._map(fn)
                    if isinstance(v, MixerState)
                    else v
                    for v in value
                ]
                value = type(value)(items)
            kwargs[f.name] = value
        return type(self)(**kwargs)

    def detach(self):  # type: ignore[no-untyped-def]
        """A copy whose tensors are cut from the autograd graph (truncated BPTT)."""
        return self._map(lambda t: t.detach())

    def to(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
        """A copy with every tensor moved/cast like ``Tensor.to(*args, **kwargs)``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def clone(self):  # type: ignore[no-untyped-def]
        """A deep copy of the tensors."""
        return self._map(lambda t: t.clone())


S = TypeVar("S", bound=MixerState)


class SequenceMixer(nn.Module, Generic[S]):
    """Base class of the recurrent-capable mixers: ``forward``, ``stream``, ``step``.

    Subclasses set ``d_model`` and ``state_cls`` and implement :meth:`_stream`,
    :meth:`_step` and :meth:`init_state`; this class does the input and state checks so that
    every mixer reports bad input in the same words.
    """

    d_model: int
    state_cls: type[MixerState] = MixerState
    mode: str = "chunk"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-sequence output. x: (B, L, D) -> (B, L, D)."""
        check_sequence(x, self.d_model, type(self).__name__)
        y, _ = self._stream(x, None)
        return y

    def stream(self, x: torch.Tensor, state: S | None = None) -> tuple[torch.Tensor, S]:
        """One chunk of a stream. x: (B, L, D); state: from ``init_state``/a previous call
        (None = start of the sequence). Returns (y (B, L, D), state after the chunk)."""
        check_sequence(x, self.d_model, type(self).__name__)
        if state is not None:
            check_state(state, self.state_cls, x.shape[0], type(self).__name__)
        return self._stream(x, state)

    def step(self, x: torch.Tensor, state: S | None = None) -> tuple[torch.Tensor, S]:
        """One token. x: (B, D); returns (y (B, D), state after the token)."""
        check_token(x, self.d_model, type(self).__name__)
        if state is not None:
            check_state(state, self.state_cls, x.shape[0], type(self).__name__)
        else:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        return self._step(x, state)

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> S:
        """The state before the first token, for a batch of ``batch_size`` sequences."""
        raise NotImplementedError

    def _stream(self, x: torch.Tensor, state: S | None) -> tuple[torch.Tensor, S]:
        raise NotImplementedError

    def _step(self, x: torch.Tensor, state: S) -> tuple[torch.Tensor, S]:
        raise NotImplementedError

    def _param_dtype_device(self) -> tuple[torch.dtype, torch.device]:
        p = next(self.parameters())
        return p.dtype, p.device


def check_mode(mode: str, allowed: tuple[str, ...] = MODES) -> str:
    """Validate a ``mode`` name (one of ``allowed``)."""
    if mode not in allowed:
        raise ValueError(f"mode must be one of {allowed}, got {mode!r}")
    return mode


def check_sequence(x: Any, d_model: int, who: str) -> None:
    """x must be a floating tensor (B, L, d_model) with B >= 1 and L >= 1."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor (B, L, {d_model}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who} expects a floating tensor, got dtype {x.dtype}")
    if x.ndim != 3:
        raise ValueError(f"{who} expects x of shape (B, L, {d_model}), got shape {tuple(x.shape)}")
    if x.shape[-1] != d_model:
        raise ValueError(
            f"{who} expects model dim {d_model} (x of shape (B, L, {d_model})), "
            f"got last dimension {x.shape[-1]} (shape {tuple(x.shape)})"
        )
    if x.shape[1] == 0:
        raise ValueError(
            f"{who} expects a sequence of length L >= 1, got L=0 (shape {tuple(x.shape)})"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{who} expects a batch of size B >= 1, got B=0 (shape {tuple(x.shape)})")


def check_token(x: Any, d_model: int, who: str) -> None:
    """x must be a floating tensor (B, d_model), one token per sequence."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who}.step expects a torch.Tensor (B, {d_model}), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{who}.step expects a floating tensor, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[-1] != d_model or x.shape[0] == 0:
        raise ValueError(
            f"{who}.step expects one token per sequence, x of shape (B, {d_model}) with B >= 1, "
            f"got shape {tuple(x.shape)}"
        )


def check_state(state: Any, state_cls: type[MixerState], batch_size: int, who: str) -> None:
    """``state`` must be a ``state_cls`` for ``batch_size`` sequences."""
    if not isinstance(state, state_cls):
        given = type(state).__name__
        if isinstance(state, MixerState):
            given += f" (a state of {state.mixer})"
        raise TypeError(f"{who} expects a {state_cls.__name__} as state, got {given}")
    if state.batch_size != batch_size:
        raise ValueError(
            f"{who} got a state for batch size {state.batch_size} but an input of batch size "
            f"{batch_size}"
        )
