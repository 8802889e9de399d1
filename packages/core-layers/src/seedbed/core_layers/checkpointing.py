"""Gradient (activation) checkpointing wrapper (seed 001, pattern 3)."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["Checkpointed", "checkpointed"]


class Checkpointed(nn.Module):
    """Runs the wrapped module under ``torch.utils.checkpoint`` while training.

    The wrapped module's activations are not kept for backward; they are recomputed from its
    inputs during the backward pass (non-reentrant checkpointing, so keyword arguments and
    inputs that do not require grad both work). In eval mode, or with gradients disabled, it
    is a plain call. RNG state is restored for the recomputation, so dropout matches.

    Args:
        module: the module to wrap (kept as ``self.module``; its state-dict keys gain the
            prefix ``module.``).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"checkpointed expects an nn.Module, got {type(module).__name__}")
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training:
            return checkpoint(self.module, *args, use_reentrant=False, **kwargs)
        return self.module(*args, **kwargs)


def checkpointed(module: nn.Module) -> Checkpointed:
    """Wrap ``module`` so that its activations are recomputed in backward (see
    :class:`Checkpointed`)."""
    return Checkpointed(module)
