"""SwiGLU feed-forward block (Shazeer, 2020), with HF's Llama/Qwen2 module names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers._checks import check_positive_int, check_tensor

__all__ = ["SwiGLU"]


class SwiGLU(nn.Module):
    """``down_proj(silu(gate_proj(x)) * up_proj(x))``, identical to HF's ``Qwen2MLP``.

    Args:
        dim: model dimension.
        hidden_dim: inner dimension of the gated projection.
        bias: whether the three projections have biases.

    Shapes:
        x: (..., dim) -> (..., dim).
    """

    def __init__(self, dim: int, hidden_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.hidden_dim = check_positive_int(hidden_dim, "hidden_dim")
        self.gate_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.up_proj = nn.Linear(dim, hidden_dim, bias=bias)
        self.down_proj = nn.Linear(hidden_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"SwiGLU expects x with last dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (..., dim)
