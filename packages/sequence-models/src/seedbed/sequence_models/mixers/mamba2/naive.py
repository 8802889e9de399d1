"""Mamba-2 state space duality (SSD), naive quadratic form.

With a scalar decay per head (``a_t = exp(dt_t A_h)``) the selective SSM

    h_t = a_t h_{t-1} + dt_t x_t ⊗ B_t,      y_t = h_t C_t        (h: (P, N) per head)

equals masked "attention": ``Y = (L ∘ C B^T) (dt X)`` with the 1-semiseparable mask
``L[t, s] = exp(sum_{s<r<=t} dt_r A)`` for ``s <= t`` (a stable segment sum), O(L^2): the
reference. Layout: x (B, L, H, P); dt (B, L, H); A (H,); B, C (B, L, G, N) with G groups
shared by H/G heads each; state (B, H, P, N).
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype, segsum
from seedbed.sequence_models.mixers.mamba2._checks import check_ssd_inputs

__all__ = ["expand_groups", "naive_ssd"]


def expand_groups(t: torch.Tensor, n_heads: int, dim: int = 2) -> torch.Tensor:
    """(B, L, G, N) -> (B, L, H, N), each group shared by H/G consecutive heads; ``dim`` names
    the group dim for other layouts. Always a new contiguous tensor."""
    return t.repeat_interleave(n_heads // t.shape[dim], dim=dim)


def naive_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quadratic reference SSD.

    Args:
        x: (B, L, H, P) inputs; dt: (B, L, H) positive step sizes; A: (H,) negative.
        B, C: (B, L, G, N) with H % G == 0.
        initial_state: (B, H, P, N) or None (zeros).
        output_final_state: also return the state after the last token.

    Returns:
        y: (B, L, H, P) in x's dtype (no D skip); final state (B, H, P, N) or None. At L = 0,
        an empty y and the initial state (zeros if None).

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit.
    """
    check_ssd_inputs("naive_ssd", x, dt, A, B, C, initial_state)
    dtype = compute_dtype(x.dtype)
    h = x.shape[2]
    if x.shape[1] == 0:
        bsz, _, _, p = x.shape
        h0 = initial_state if initial_state is not None else x.new_zeros(bsz, h, p, B.shape[-1])
        return x.new_empty(x.shape), (h0.to(dtype) if output_final_state else None)

    xf, dtf, A = x.to(dtype), dt.to(dtype), A.to(dtype)
    Bf, Cf = expand_groups(B.to(dtype), h), expand_groups(C.to(dtype), h)  # (B, L, H, N)
    log_a = (dtf * A).transpose(1, 2)  # (B, H, L), <= 0
    decay = torch.exp(segsum(log_a))  # (B, H, L_t, L_s)
    xdt = xf * dtf[..., None]  # (B, L, H, P)
    scores = torch.einsum("bthn,bshn->bhts", Cf, Bf) * decay
    y = torch.einsum("bhts,bshp->bthp", scores, xdt)
    final = None
    if initial_state is not None or output_final_state:
        acum = torch.cumsum(log_a, dim=-1)  # (B, H, L)
        h0 = (
            initial_state.to(dtype)
            if initial_state is not None
            else torch.zeros(x.shape[0], h, x.shape[3], Bf.shape[-1], device=x.device, dtype=dtype)
        )
        y = y + torch.einsum("bthn,bhpn,bht->bthp", Cf, h0, torch.exp(acum))
        if output_final_state:
            final = torch.einsum("bshn,bhs,bshp->bhpn", Bf, decay[:, :, -1, :], xdt)
            final = final + torch.exp(acum[:, :, -1])[..., None, None] * h0
    return y.to(x.dtype), final
