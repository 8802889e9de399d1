"""Mamba-1 selective scan, naive materialised form.

The selective SSM (per channel e and state n, input-dependent step ``delta`` and ``B, C``):

    h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t B_t u_t,      y_t = C_t · h_t

unrolled: ``y_t = sum_{s<=t} C_t · (exp(sum_{s<r<=t} delta_r A) ⊙ B_s) delta_s u_s`` (+ the
carried ``h_0`` decayed from the start). The (L, L) decay matrices per (channel, state) are
materialised with a stable segment sum, O(L^2 E N): the reference the other forms are
checked against. Layout: u, delta (B, L, E); A (E, N); B, C (B, L, N); state (B, E, N).
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype, segsum
from seedbed.sequence_models.mixers.mamba._checks import check_scan_inputs

__all__ = ["naive_selective_scan"]


def naive_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Quadratic reference selective scan.

    Args:
        u: (B, L, E) input; delta: (B, L, E) positive step sizes (after softplus).
        A: (E, N) negative state matrix (diagonal per channel).
        B, C: (B, L, N) input and output projections.
        initial_state: (B, E, N) or None (zeros).
        output_final_state: also return the state after the last token.

    Returns:
        y: (B, L, E) in u's dtype (no D skip, no gate); final state (B, E, N) or None. At
        L = 0, an empty y and the initial state (zeros if None).

    Raises:
        ValueError, TypeError: shapes, dtypes or devices that do not fit.
    """
    check_scan_inputs("naive_selective_scan", u, delta, A, B, C, initial_state)
    dtype = compute_dtype(u.dtype)
    uf, df, A, Bf, Cf = u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype), C.to(dtype)
    if u.shape[1] == 0:
        h0 = initial_state if initial_state is not None else u.new_zeros(u.shape[0], *A.shape)
        return u.new_empty(u.shape), (h0.to(dtype) if output_final_state else None)
    log_a = (df[..., None] * A).permute(0, 2, 3, 1)  # (B, E, N, L): delta_t A, <= 0
    seg = segsum(log_a)  # (B, E, N, L_t, L_s)
    decay = torch.exp(seg)  # zero above the diagonal
    x = df * uf  # (B, L, E)
    y = torch.einsum("btn,bents,bsn,bse->bte", Cf, decay, Bf, x)
    final = None
    if initial_state is not None or output_final_state:
        acum = torch.cumsum(log_a, dim=-1)  # (B, E, N, L): sum_{r<=t} delta_r A
        h0 = (
            initial_state.to(dtype)
            if initial_state is not None
            else torch.zeros(u.shape[0], u.shape[2], A.shape[1], device=u.device, dtype=dtype)
        )
        y = y + torch.einsum("btn,bent,ben->bte", Cf, torch.exp(acum), h0)
        if output_final_state:
            final = torch.einsum("bens,bsn,bse->ben", decay[..., -1, :], Bf, x)
            final = final + torch.exp(acum[..., -1]) * h0
    return y.to(u.dtype), final
