"""Newton–Schulz orthogonalization: an approximate polar factor U Vᵀ of M = U Σ Vᵀ.

Odd matrix polynomials X ← a·X + b·(X Xᵀ) X + c·(X Xᵀ)² X act on every singular value
separately (σ ← a σ + b σ³ + c σ⁵) and leave the singular vectors alone:

- ``CUBIC = (1.5, -0.5, 0.0)`` is the classical Newton–Schulz iteration X(3I − XᵀX)/2, i.e. one
  gradient step on ‖XᵀX − I‖²_F as in the Nested Learning paper's reading of it; it converges
  to σ = 1 for every σ in (0, √3), quadratically near 1 but slowly for small σ;
- ``MUON = (3.4445, -4.7750, 2.0315)`` are the quintic coefficients of Muon (Jordan et al.
  2024): fast growth of small σ, but they only bring σ into roughly [0.7, 1.2].

:func:`newton_schulz` runs ``steps`` iterations with ``coefficients`` and then
``polish_steps`` cubic ones, so MUON × 5 followed by 2 cubic steps puts the singular values of
a full-rank matrix within a few percent of 1.
"""

from __future__ import annotations

import torch

__all__ = ["CUBIC", "MUON", "newton_schulz"]

CUBIC: tuple[float, float, float] = (1.5, -0.5, 0.0)
MUON: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)


def _iterate(x: torch.Tensor, coeffs: tuple[float, float, float], steps: int) -> torch.Tensor:
    a, b, c = coeffs
    for _ in range(steps):
        gram = x @ x.mT  # (r, r) with r = min(rows, cols)
        poly = b * gram + c * (gram @ gram) if c else b * gram
        x = a * x + poly @ x
    return x


def newton_schulz(
    m: torch.Tensor,
    steps: int = 5,
    *,
    coefficients: tuple[float, float, float] = MUON,
    polish_steps: int = 2,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Approximately orthogonalize ``m`` (its singular values pushed to 1).

    Tensors with more than two dims are treated as (shape[0], prod(rest)); a 1-D tensor is a
    column, whose polar factor m / ‖m‖ is returned directly. Computed in fp32 (fp64 for fp64).

    Args:
        m: tensor to orthogonalize.
        steps: iterations with ``coefficients``.
        coefficients: (a, b, c) of the odd polynomial.
        polish_steps: extra cubic Newton–Schulz iterations afterwards.
        eps: added to the Frobenius norm used to scale m into the convergence region.

    Returns:
        Tensor of m's shape and dtype.
    """
    if steps < 0 or polish_steps < 0:
        raise ValueError(f"steps and polish_steps must be >= 0, got {steps}, {polish_steps}")
    shape, dtype = m.shape, m.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    if m.dim() < 2:  # a column's polar factor is the normalised column itself
        v = m.to(work)
        return (v / (torch.linalg.vector_norm(v) + eps)).to(dtype)
    x = m.reshape(shape[0], -1).to(work)
    transpose = x.shape[0] > x.shape[1]
    if transpose:
        x = x.mT  # iterate on the smaller Gram matrix
    x = x / (torch.linalg.matrix_norm(x) + eps)  # all singular values now <= 1
    x = _iterate(x, coefficients, steps)
    x = _iterate(x, CUBIC, polish_steps)
    if transpose:
        x = x.mT
    return x.reshape(shape).to(dtype)
