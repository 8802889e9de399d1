"""RMSNorm (Zhang & Sennrich, 2019), as used by LLaMA, Qwen2 and Gemma."""

from __future__ import annotations

import torch
from torch import nn

from seedbed.core_layers._checks import check_positive_int, check_tensor

__all__ = ["RMSNorm"]


class RMSNorm(nn.Module):
    """Root-mean-square layer normalisation: ``y = x / sqrt(mean(x^2) + eps) * weight``.

    The statistics, the scaling and the multiplication by ``weight`` are computed in float32
    whatever the input dtype, and the result is cast back to the input dtype. In float32 this
    is exactly HF transformers' ``Qwen2RMSNorm`` / ``LlamaRMSNorm``.

    Args:
        dim: size of the normalised (last) dimension.
        eps: added to the mean square before the square root; must be > 0.

    Shapes:
        x: (..., dim) -> (..., dim), same dtype as x.

    Example:
        >>> norm = RMSNorm(64)
        >>> norm(torch.randn(2, 10, 64)).shape
        torch.Size([2, 10, 64])
    """

    def __init__(
        self,
        dim: int,
        eps: float = 1e-6,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))  # (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension of ``x`` (..., dim)."""
        check_tensor(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"RMSNorm expects x with last dimension {self.dim}, got shape {tuple(x.shape)}"
            )
        return self._norm(x)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without its checks (for callers that validated ``x`` already)."""
        w = self._parameters["weight"]
        assert w is not None
        if x.dtype == torch.float32 and w.dtype == torch.float32:  # no casts needed
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., dim)
        return (x32 * w.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"
