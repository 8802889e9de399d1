"""Sort-based MoE dispatch: permute tokens by expert, one grouped matmul, scatter back.

    assignments (T·k) --argsort by expert--> contiguous per-expert runs of tokens
    --grouped matmul (all experts in one call)--> SwiGLU --grouped matmul--> scale by gate
    --index_add--> (T, D)

Two grouped-matmul backends, no per-expert Python loop in either:

- ``"grouped_mm"``: ``torch.nn.functional.grouped_mm`` (or ``torch._grouped_mm`` on torches that
  only have the private op) over the jagged runs, given as int32 end offsets.
- ``"batched"``: the runs are scattered into a zero-padded (E, C_max, D) buffer and multiplied
  with ``torch.bmm``; padding rows are zero and are never gathered back.

``"auto"`` uses grouped_mm wherever this torch runs it (forward and backward) for the device,
dtype and shapes (e.g. fp32/bf16 on CPU, bf16 on recent CUDA GPUs), and ``"batched"`` otherwise
(e.g. float64, or rows that are not 16-byte aligned). Both are compared with the per-expert loop
in ``seedbed.core_layers.moe_benchmarks.bench_moe_dispatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "DISPATCH_BACKENDS",
    "DispatchBackend",
    "grouped_mm_supported",
    "moe_dispatch",
    "resolve_backend",
]

DispatchBackend = Literal["auto", "grouped_mm", "batched"]
DISPATCH_BACKENDS = ("auto", "grouped_mm", "batched")
_PROBED: dict[tuple[str, torch.dtype], bool] = {}


def _grouped_mm_fn() -> Callable[..., torch.Tensor] | None:
    fn = getattr(F, "grouped_mm", None)
    if fn is None:
        fn = getattr(torch, "_grouped_mm", None)
    return fn


def grouped_mm_supported(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether this torch runs grouped_mm forward and backward for (device type, dtype).

    Probed once per (device type, dtype) on a tiny problem and cached.
    """
    fn = _grouped_mm_fn()
    if fn is None:
        return False
    key = (device.type, dtype)
    if key not in _PROBED:
        try:
            with torch.enable_grad():
                a = torch.randn(8, 16, device=device, dtype=dtype, requires_grad=True)
                b = torch.randn(2, 16, 16, device=device, dtype=dtype, requires_grad=True)
                offs = torch.tensor([3, 8], device=device, dtype=torch.int32)
                out = fn(a, b, offs=offs)
                out.backward(torch.ones_like(out))
            _PROBED[key] = bool(a.grad is not None and b.grad is not None)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            _PROBED[key] = False
    return _PROBED[key]


def _shapes_ok_for_grouped_mm(dtype: torch.dtype, dims: tuple[int, ...]) -> bool:
    # grouped GEMM kernels need every row stride to be a multiple of 16 bytes
    itemsize = torch.empty((), dtype=dtype).element_size()
    return all((d * itemsize) % 16 == 0 for d in dims)


def resolve_backend(
    backend: str, device: torch.device, dtype: torch.dtype, d_model: int, d_ff: int
) -> Literal["grouped_mm", "batched"]:
    """Turn ``"auto"`` into a concrete backend; check that an explicit ``"grouped_mm"`` can run.

    Raises:
        ValueError: unknown backend, or ``"grouped_mm"`` requested where it cannot run.
    """
    if backend not in DISPATCH_BACKENDS:
        raise ValueError(f"backend must be one of {DISPATCH_BACKENDS}, got {backend!r}")
    if backend == "batched":
        return "batched"
    usable = grouped_mm_supported(device, dtype) and _shapes_ok_for_grouped_mm(
        dtype, (d_model, d_ff, 2 * d_ff)
    )
    if backend == "grouped_mm":
        if not usable:
            raise ValueError(
                f"grouped_mm is not available for device={device.type}, dtype={dtype}, "
                f"d_model={d_model}, d_ff={d_ff} in torch {torch.__version__} "
                "(needs F.grouped_mm/torch._grouped_mm and 16-byte aligned rows); use 'batched' or 'auto'"
            )
        return "grouped_mm"
    return "grouped_mm" if usable else "batched"


def _ffn_grouped_mm(
    xs: torch.Tensor, counts: torch.Tensor, gate_up_proj: torch.Tensor, down_proj: torch.Tensor
) -> torch.Tensor:
    fn = _grouped_mm_fn()
    assert fn is not None
    offs = torch.cumsum(counts, 0).to(torch.int32)  # (E,) end offset of each expert's run
    h = fn(xs, gate_up_proj.transpose(-2, -1), offs=offs)  # (M, 2F)
    gate, up = h.chunk(2, dim=-1)
    return fn(F.silu(gate) * up, down_proj.transpose(-2, -1), offs=offs)  # (M, D)


def _ffn_batched(
    xs: torch.Tensor,
    sorted_expert: torch.Tensor,
    counts: torch.Tensor,
    gate_up_proj: torch.Tensor,
    down_proj: torch.Tensor,
) -> torch.Tensor:
    e, m, d = counts.numel(), xs.shape[0], xs.shape[1]
    starts = torch.cumsum(counts, 0) - counts  # (E,)
    pos = torch.arange(m, device=xs.device) - starts[sorted_expert]  # (M,) row inside its expert
    cap = int(counts.max())
    buf = xs.new_zeros(e, cap, d).index_put((sorted_expert, pos), xs)  # (E, C, D)
    h = torch.bmm(buf, gate_up_proj.transpose(1, 2))  # (E, C, 2F)
    gate, up = h.chunk(2, dim=-1)
    y = torch.bmm(F.silu(gate) * up, down_proj.transpose(1, 2))  # (E, C, D)
    return y[sorted_expert, pos]  # (M, D)


def moe_dispatch(
    x: torch.Tensor,
    expert_index: torch.Tensor,
    gates: torch.Tensor,
    keep: torch.Tensor | None,
    gate_up_proj: torch.Tensor,
    down_proj: torch.Tensor,
    backend: str = "auto",
) -> torch.Tensor:
    """Σ_slots gate · SwiGLU_expert(x) for every token, all experts in one grouped matmul.

    Args:
        x: (T, D) tokens.
        expert_index: (T, k) int64 expert ids.
        gates: (T, k) combine weights.
        keep: (T, k) bool or None; dropped assignments (False) contribute nothing, so a token
            whose every assignment was dropped gets a zero row (it passes through the residual).
        gate_up_proj: (E, 2F, D) fused gate/up weights, gate rows first (HF Mixtral layout).
        down_proj: (E, D, F).
        backend: ``"auto"``, ``"grouped_mm"`` or ``"batched"``.

    Returns:
        (T, D) in x's dtype.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be (T, D), got shape {tuple(x.shape)}")
    t, d = x.shape
    if gate_up_proj.dim() != 3 or gate_up_proj.shape[2] != d or gate_up_proj.shape[1] % 2:
        raise ValueError(f"gate_up_proj must be (E, 2F, {d}), got {tuple(gate_up_proj.shape)}")
    n_exp, two_f, _ = gate_up_proj.shape
    if tuple(down_proj.shape) != (n_exp, d, two_f // 2):
        raise ValueError(
            f"down_proj must be ({n_exp}, {d}, {two_f // 2}), got {tuple(down_proj.shape)}"
        )
    if expert_index.dim() != 2 or expert_index.shape[0] != t:
        raise ValueError(f"expert_index must be ({t}, k), got {tuple(expert_index.shape)}")
    if gates.shape != expert_index.shape:
        raise ValueError(
            f"gates must match expert_index {tuple(expert_index.shape)}, got {tuple(gates.shape)}"
        )
    if keep is not None and keep.shape != expert_index.shape:
        raise ValueError(
            f"keep must match expert_index {tuple(expert_index.shape)}, got {tuple(keep.shape)}"
        )
    kind = resolve_backend(backend, x.device, x.dtype, d, two_f // 2)
    k = expert_index.shape[1]

    flat_expert = expert_index.reshape(-1)  # (T·k,)
    flat_gate = gates.reshape(-1)
    if keep is not None and not bool(keep.all()):
        kept = keep.reshape(-1).nonzero().squeeze(1)  # (M,)
        flat_expert, flat_gate, flat_token = flat_expert[kept], flat_gate[kept], kept // k
    else:
        flat_token = torch.arange(t * k, device=x.device) // k
    out = x.new_zeros(t, d)
    if flat_expert.numel() == 0:
        return out
    order = torch.argsort(flat_expert, stable=True)  # group assignments by expert
    sorted_expert = flat_expert[order]
    token = flat_token[order]  # (M,)
    counts = torch.bincount(flat_expert, minlength=n_exp)  # (E,)
    xs = x[token]  # (M, D)
    if kind == "grouped_mm":
        ys = _ffn_grouped_mm(xs, counts, gate_up_proj, down_proj)
    else:
        ys = _ffn_batched(xs, sorted_expert, counts, gate_up_proj, down_proj)
    ys = ys * flat_gate[order, None].to(ys.dtype)  # (M, D)
    return out.index_add(0, token, ys)
