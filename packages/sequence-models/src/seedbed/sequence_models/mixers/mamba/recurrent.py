"""Mamba-1 selective scan, recurrent form: one token at a time, O(E N) memory.

h_t = exp(delta_t A) ⊙ h_{t-1} + delta_t B_t u_t,      y_t = C_t · h_t
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.mamba._checks import check_scan_inputs

__all__ = ["recurrent_selective_scan", "selective_scan_step"]


def selective_scan_step(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. u, delta: (B, E); A: (E, N); B, C: (B, N); state: (B, E, N).

    Returns (y (B, E), new state)."""
    state = torch.exp(delta[..., None] * A) * state + (delta * u)[..., None] * B[:, None, :]
    y = torch.einsum("ben,bn->be", state, C)
    return y, state


def recurrent_selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sequential selective scan. Same arguments, results and errors as
    :func:`naive_selective_scan`."""
    check_scan_inputs("recurrent_selective_scan", u, delta, A, B, C, initial_state)
    dtype = compute_dtype(u.dtype)
    uf, df, A, Bf, Cf = u.to(dtype), delta.to(dtype), A.to(dtype), B.to(dtype), C.to(dtype)
    state = (
        torch.zeros(u.shape[0], u.shape[2], A.shape[1], device=u.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    ys = []
    for u_t, d_t, b_t, c_t in zip(uf.unbind(1), df.unbind(1), Bf.unbind(1), Cf.unbind(1)):
        y, state = selective_scan_step(u_t, d_t, A, b_t, c_t, state)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_empty(u.shape)
    return y.to(u.dtype), (state if output_final_state else None)
