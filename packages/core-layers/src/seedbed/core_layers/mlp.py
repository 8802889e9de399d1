"""SwiGLU feed-forward block (Shazeer, 2020), with HF's Llama/Qwen2 module names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

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
        self._gate_up: FusedLinear | None = None  # inference copy of [gate; up], see _mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"SwiGLU expects x with last dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        return self._mlp(x)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without its checks (for callers that validated ``x`` already).

        At inference, plain ``nn.Linear`` gate/up projections run as one matmul against a
        cached row-concatenation of their weights (same values, one kernel launch fewer).
        """
        mods = self._modules  # direct lookups: nn.Module.__getattr__ is slow on this path
        fused = _fused_linear((mods["gate_proj"], mods["up_proj"]), self._gate_up)
        if fused is None:
            h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (..., hidden)
        else:
            if fused is not self._gate_up:
                self._gate_up = fused
            gate, up = F.linear(x, fused[1], fused[2]).chunk(2, dim=-1)  # (..., hidden) each
            h = F.silu(gate) * up
        return _linear(mods["down_proj"], h)  # (..., dim)


# (key of the source tensors, fused weight (sum of outs, in), fused bias or None, the source
# tensors themselves: held so that no new tensor can reuse their addresses while cached)
FusedLinear = tuple[tuple[int, ...], torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, ...]]


def _plain_linear(m: nn.Module | None) -> bool:
    """Whether ``m`` is an ``nn.Linear`` whose ``__call__`` is just ``F.linear`` (no hooks)."""
    return (
        type(m) is nn.Linear
        and not m._forward_hooks
        and not m._forward_pre_hooks
        and not _global_forward_hooks
        and not _global_forward_pre_hooks
    )


def _linear(m: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """``m(x)``, skipping the module-call machinery when ``m`` is a hook-free ``nn.Linear``."""
    assert m is not None
    if _plain_linear(m):
        p = m._parameters
        w = p["weight"]
        assert w is not None
        return F.linear(x, w, p["bias"])
    out: torch.Tensor = m(x)
    return out


def _fused_linear(
    mods: tuple[nn.Module | None, ...], cached: FusedLinear | None
) -> FusedLinear | None:
    """Row-concatenated weight (and bias) of several linears that read the same input.

    Returns None (run them one by one) unless all are hook-free ``nn.Linear`` with biases on
    all or none, and no gradient is needed for their parameters. ``cached`` is reused while
    every source tensor keeps its storage and version counter (so in-place updates such as
    ``load_state_dict``, ``nn.init`` or an optimiser step rebuild it); otherwise a new copy is
    made. Writes through ``param.data`` bypass the version counter and are not seen: set the
    owner's cache attribute (``_qkv`` / ``_gate_up``) to None after such edits. Costs one extra
    copy of the fused weights in memory.
    """
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor] = []
    for m in mods:
        if not _plain_linear(m):
            return None
        assert m is not None
        p = m._parameters
        w, b = p["weight"], p["bias"]
        assert w is not None
        weights.append(w)
        if b is not None:
            biases.append(b)
    if biases and len(biases) != len(weights):
        return None
    tensors = weights + biases
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None
    key = tuple([t.data_ptr() for t in tensors] + [t._version for t in tensors])
    if cached is not None and cached[0] == key:
        return cached
    with torch.no_grad():
        w_cat = torch.cat(weights).detach()  # (sum of outs, in)
        b_cat = torch.cat(biases).detach() if biases else None
    return key, w_cat, b_cat, tuple(tensors)
