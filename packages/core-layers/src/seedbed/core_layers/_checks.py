"""Argument checks shared by the public entry points.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, wrong
value) with a message that names what was expected and what was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["broadcastable", "check_floating", "check_positive_int", "check_tensor"]


def check_tensor(
    x: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    floating: bool = True,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given rank and, optionally, a floating dtype.

    Returns:
        ``x`` itself, typed as a tensor.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{n}-D" for n in allowed)
            raise ValueError(f"{name} must be {want}, got {x.ndim}-D with shape {tuple(x.shape)}")
    if floating:
        check_floating(x, name)
    return x


def check_floating(x: torch.Tensor, name: str) -> None:
    """Raise TypeError unless ``x`` has a floating-point dtype."""
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")


def check_positive_int(value: object, name: str, *, allow_zero: bool = False) -> int:
    """Check that ``value`` is an int > 0 (or >= 0 with ``allow_zero``); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    lo = 0 if allow_zero else 1
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return value


def broadcastable(shape: Sequence[int], target: Sequence[int]) -> bool:
    """Whether ``shape`` broadcasts to exactly ``target`` (a cheap ``torch.broadcast_shapes``)."""
    if len(shape) > len(target):
        return False
    return all(s == t or s == 1 for s, t in zip(reversed(tuple(shape)), reversed(tuple(target))))
