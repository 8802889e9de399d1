"""Mamba-2 SSD, recurrent form: ``h_t = exp(dt_t A) h_t-1 + dt_t x_t ⊗ B_t``, ``y_t = h_t C_t``.

O(H P N) memory per token: the decoding path.
"""

from __future__ import annotations

import torch

from seedbed.sequence_models.mixers._utils import compute_dtype
from seedbed.sequence_models.mixers.mamba2._checks import check_ssd_inputs
from seedbed.sequence_models.mixers.mamba2.naive import expand_groups

__all__ = ["recurrent_ssd", "ssd_step"]


def ssd_step(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token. x: (B, H, P); dt: (B, H); A: (H,); B, C: (B, G, N); state (B, H, P, N).

    Returns (y (B, H, P), new state)."""
    h = x.shape[1]  # heads; B, C groups are shared by h // G heads each
    Bh, Ch = expand_groups(B, h, dim=1), expand_groups(C, h, dim=1)  # (B, H, N)
    decay = torch.exp(dt * A)[..., None, None]  # (B, H, 1, 1)
    state = decay * state + (dt[..., None] * x)[..., :, None] * Bh[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, Ch)
    return y, state


def recurrent_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token-by-token SSD. Same arguments, results and errors as :func:`naive_ssd`."""
    check_ssd_inputs("recurrent_ssd", x, dt, A, B, C, initial_state)
    dtype = compute_dtype(x.dtype)
    bsz, _length, h, p = x.shape
    xf, dtf, A, Bf, Cf = x.to(dtype), dt.to(dtype), A.to(dtype), B.to(dtype), C.to(dtype)
    state = (
        torch.zeros(bsz, h, p, B.shape[-1], device=x.device, dtype=dtype)
        if initial_state is None
        else initial_state.to(dtype)
    )
    ys = []
    for x_t, dt_t, b_t, c_t in zip(xf.unbind(1), dtf.unbind(1), Bf.unbind(1), Cf.unbind(1)):
        y, state = ssd_step(x_t, dt_t, A, b_t, c_t, state)
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else x.new_empty(x.shape)
    return y.to(x.dtype), (state if output_final_state else None)
