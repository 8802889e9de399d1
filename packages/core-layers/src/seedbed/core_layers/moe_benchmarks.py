"""MoE benchmarks from seed 002 (``benchmark_moe``, ``moe_vs_dense``) and the dispatch benchmark.

Everything printed is measured in the run: parameter counts are counted, forward FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` (matmul-class ops; the gathers and scatters of the
dispatch are not FLOPs it counts), and times are medians of interleaved side-by-side runs
(:func:`seedbed.core_layers.benchmarking.timed_ratio`). No ratio is estimated.

CLIs (``[project.scripts]``)::

    seedbed-benchmark-moe --router switch        # one MoE layer vs one dense FFN
    seedbed-moe-vs-dense --router hash           # a small byte LM, dense vs MoE blocks
    seedbed-moe-dispatch                         # grouped dispatch vs per-expert loop

Registered benchmarks (``seedbed-eval --only 'core_layers:<name>'``): :func:`bench_moe_dispatch`,
:func:`bench_benchmark_moe`, :func:`bench_moe_vs_dense` (these two run both routers).
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula

from seedbed.core_layers.benchmarking import Metric, timed_ratio
from seedbed.core_layers.mlp import SwiGLU
from seedbed.core_layers.moe import MoELayer, moe_dispatch, naive_moe
from seedbed.core_layers.moe.dispatch import resolve_backend

__all__ = [
    "bench_benchmark_moe",
    "bench_moe_dispatch",
    "bench_moe_vs_dense",
    "benchmark_moe_main",
    "moe_dispatch_main",
    "moe_vs_dense_main",
]

ROUTERS = ("hash", "switch")


# FlopCounterMode has no formula for grouped_mm; count 2·M·K·N like any GEMM.
def _grouped_mm_flops(
    a_shape: Sequence[int], b_shape: Sequence[int], *args: Any, **kwargs: Any
) -> int:
    if len(a_shape) == 2 and len(b_shape) == 3:  # (M, K) x (G, K, N), jagged M
        return 2 * a_shape[0] * a_shape[1] * b_shape[2]
    if len(a_shape) == 2 and len(b_shape) == 2:  # (K, M) x (M, N) jagged M -> (G, K, N)
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    if len(a_shape) == 3 and len(b_shape) == 3:  # batched (G, M, K) x (G, K, N)
        return 2 * a_shape[0] * a_shape[1] * a_shape[2] * b_shape[2]
    return 2 * a_shape[-2] * a_shape[-1] * b_shape[-1]  # (G, M, K) x (K, N), N jagged over G


if hasattr(torch.ops.aten, "_grouped_mm") and torch.ops.aten._grouped_mm not in flop_registry:
    register_flop_formula(torch.ops.aten._grouped_mm)(_grouped_mm_flops)


def count_params(module: nn.Module) -> int:
    """Number of parameter elements (counted, shared tensors once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def forward_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as measured by FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _fwd_bwd(module: nn.Module, loss_of: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        loss_of().backward()

    return run


def _metric(
    name: str,
    value: float,
    unit: str = "",
    target: float | None = None,
    higher: bool = True,
    note: str = "",
) -> dict[str, Any]:
    return Metric(name, float(value), unit, target, higher, note=note).as_dict()


# --------------------------------------------------------------------------------------------
# grouped dispatch vs per-expert loop


def _dispatch_sizes(full: bool) -> dict[str, int]:
    if full:
        return dict(num_experts=64, top_k=2, tokens=8192, d_model=512, d_ff=1024)
    return dict(num_experts=64, top_k=2, tokens=2048, d_model=128, d_ff=256)


def bench_moe_dispatch(full: bool = False) -> list[dict[str, Any]]:
    """Sort-based grouped dispatch against the plain per-expert loop, same routing, side by side.

    The loop is :func:`naive_moe`, which indexes the stacked expert weights per expert as HF
    transformers' ``MixtralExperts`` does. Reported for each backend: max abs error, forward
    speedup, forward+backward speedup; for the default backend also the fwd+bwd speedup over the
    stronger loop that unbinds the weights once (``naive_moe(..., unbind_weights=True)``).

    Target: >= 1.5x fwd+bwd speedup of the default (``auto``) dispatch over the loop, at the full
    size (64 experts, top-2, 8192 tokens, d=512, d_ff=1024) and at the quick size (64 experts,
    top-2, 2048 tokens, d=128, d_ff=256). The forward alone is GEMM-bound on CPU and is reported
    without a target (see the package README).
    """
    s = _dispatch_sizes(full)
    e, k, t, d, f = s["num_experts"], s["top_k"], s["tokens"], s["d_model"], s["d_ff"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, d, generator=g)
    layer = MoELayer(d, f, e, top_k=k)
    with torch.no_grad():
        r = layer.router(x)
    idx, gates, keep = r.expert_index, r.gates.detach(), r.keep
    wgu, wd = layer.gate_up_proj, layer.down_proj
    auto = resolve_backend("auto", x.device, x.dtype, d, f)
    backends = ["batched"] + (["grouped_mm"] if _gmm_ok(x, d, f) else [])
    ref = naive_moe(x, idx, gates, keep, wgu, wd).detach()
    note = (
        f"E={e} top-{k} T={t} D={d} F={f} fp32 {x.device.type}, "
        f"{torch.get_num_threads()} threads; auto={auto}"
    )
    out: list[dict[str, Any]] = []
    rep_fwd, rep_fb = (3, 3)  # the HF-style loop backward is slow (~2 s a run at the quick size)
    xr = x.clone().requires_grad_(True)

    def fwd_bwd(fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            wgu.grad = wd.grad = xr.grad = None
            fn().square().mean().backward()

        return run

    loop_fb = fwd_bwd(lambda: naive_moe(xr, idx, gates, keep, wgu, wd))
    for b in backends:
        with torch.no_grad():
            err = (moe_dispatch(x, idx, gates, keep, wgu, wd, b) - ref).abs().max().item()
            _, _, fwd = timed_ratio(
                lambda: naive_moe(x, idx, gates, keep, wgu, wd),
                lambda b=b: moe_dispatch(x, idx, gates, keep, wgu, wd, b),  # type: ignore[misc]
                repeats=rep_fwd,
            )
        grouped_fb = fwd_bwd(lambda b=b: moe_dispatch(xr, idx, gates, keep, wgu, wd, b))  # type: ignore[misc]
        _, _, fwdbwd = timed_ratio(loop_fb, grouped_fb, repeats=rep_fb)
        target = 1.5 if b == auto else None
        out.append(_metric(f"moe_{b}_max_abs_err_vs_loop", err, "", 1e-5, False, note))
        out.append(_metric(f"moe_{b}_fwd_speedup_vs_loop", fwd, "x", None, True, note))
        out.append(_metric(f"moe_{b}_fwdbwd_speedup_vs_loop", fwdbwd, "x", target, True, note))
        if b == auto:
            unbound_fb = fwd_bwd(
                lambda: naive_moe(xr, idx, gates, keep, wgu, wd, unbind_weights=True)
            )
            _, _, vs_unbound = timed_ratio(unbound_fb, grouped_fb, repeats=rep_fb)
            out.append(
                _metric(
                    f"moe_{b}_fwdbwd_speedup_vs_unbound_loop", vs_unbound, "x", None, True, note
                )
            )
    return out


def _gmm_ok(x: torch.Tensor, d: int, f: int) -> bool:
    try:
        resolve_backend("grouped_mm", x.device, x.dtype, d, f)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# seed 002: benchmark_moe (one layer) and moe_vs_dense (a small model)


def _layer_sizes(full: bool) -> dict[str, int]:
    if full:
        return dict(d_model=512, d_ff=2048, num_experts=8, top_k=2, tokens=8192)
    return dict(d_model=64, d_ff=256, num_experts=8, top_k=2, tokens=512)


def run_benchmark_moe(router: str, full: bool = False) -> dict[str, float]:
    """One MoE layer (E SwiGLU experts, top-k) against one dense SwiGLU FFN of an expert's size."""
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
    s = _layer_sizes(full)
    d, f, e, t = s["d_model"], s["d_ff"], s["num_experts"], s["tokens"]
    k = s["top_k"]
    torch.manual_seed(0)
    dense = SwiGLU(d, f)
    moe = MoELayer(d, f, e, router=router, top_k=k)
    x = torch.randn(t, d)
    ids = torch.randint(0, 50_000, (t,))
    moe_ids = ids if router == "hash" else None
    res: dict[str, float] = dict(d_model=d, d_ff=f, num_experts=e, top_k=k, tokens=t)
    res["dense_params"] = count_params(dense)
    res["moe_params"] = count_params(moe)
    res["dense_fwd_flops"] = forward_flops(lambda: dense(x))
    res["moe_fwd_flops"] = forward_flops(lambda: moe(x, moe_ids))

    def dense_loss() -> torch.Tensor:
        return dense(x).square().mean()

    def moe_loss() -> torch.Tensor:
        y, aux = moe(x, moe_ids)
        return y.square().mean() + aux

    t_dense, t_moe, _ = timed_ratio(_fwd_bwd(dense, dense_loss), _fwd_bwd(moe, moe_loss), repeats=3)
    res["dense_fwdbwd_s"], res["moe_fwdbwd_s"] = t_dense, t_moe
    return res


def _default_corpus(max_bytes: int) -> bytes:
    # the Python standard library's own source, present on every machine (DESIGN: offline data)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    data = b""
    for name in (
        "argparse.py",
        "typing.py",
        "dataclasses.py",
        "functools.py",
        "collections/__init__.py",
    ):
        p = stdlib / name
        if p.exists():
            data += p.read_bytes()
        if len(data) >= max_bytes:
            break
    if not data:
        raise FileNotFoundError(f"no standard-library sources found under {stdlib}")
    return data[:max_bytes]


class _ByteLM(nn.Module):
    """Byte embedding -> L pre-norm residual feed-forward blocks (dense or MoE) -> logits."""

    def __init__(self, d_model: int, d_ff: int, n_layers: int, moe: dict[str, Any] | None) -> None:
        super().__init__()
        self.embed = nn.Embedding(256, d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(n_layers))
        self.ffns = nn.ModuleList(
            (MoELayer(d_model, d_ff, **moe) if moe is not None else SwiGLU(d_model, d_ff))
            for _ in range(n_layers)
        )
        self.head = nn.Linear(d_model, 256, bias=False)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(ids)  # (B, S, D)
        aux = h.new_zeros(())
        for norm, ffn in zip(self.norms, self.ffns):
            if isinstance(ffn, MoELayer):
                y, a = ffn(norm(h), ids)
                aux = aux + a
            else:
                y = ffn(norm(h))
            h = h + y
        return self.head(h), aux  # (B, S, 256)


def _model_sizes(full: bool) -> dict[str, int]:
    if full:
        return dict(d_model=512, d_ff=1024, n_layers=4, num_experts=16, top_k=2, batch=8, seq=512)
    return dict(d_model=64, d_ff=128, n_layers=2, num_experts=8, top_k=2, batch=2, seq=128)


def run_moe_vs_dense(
    router: str, full: bool = False, data: bytes | None = None
) -> dict[str, float]:
    """A byte-level LM with dense FFN blocks against the same LM with MoE blocks.

    The hash router hashes the byte ids (Hash Layers); the switch router learns its gate.
    """
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
    s = _model_sizes(full)
    b, sl = s["batch"], s["seq"]
    raw = data if data is not None else _default_corpus(b * (sl + 1) * 4)
    if len(raw) < b * (sl + 1):
        raise ValueError(f"need at least {b * (sl + 1)} bytes of text, got {len(raw)}")
    tokens = torch.tensor(list(raw[: b * (sl + 1)]), dtype=torch.long).view(b, sl + 1)
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    torch.manual_seed(0)
    dense = _ByteLM(s["d_model"], s["d_ff"], s["n_layers"], None)
    moe = _ByteLM(
        s["d_model"],
        s["d_ff"],
        s["n_layers"],
        dict(num_experts=s["num_experts"], router=router, top_k=s["top_k"]),
    )
    res: dict[str, float] = {k: float(v) for k, v in s.items()}
    res["dense_params"] = count_params(dense)
    res["moe_params"] = count_params(moe)
    res["dense_fwd_flops"] = forward_flops(lambda: dense(inp))
    res["moe_fwd_flops"] = forward_flops(lambda: moe(inp))

    def loss_of(model: _ByteLM) -> Callable[[], torch.Tensor]:
        def f() -> torch.Tensor:
            logits, aux = model(inp)
            return F.cross_entropy(logits.reshape(-1, 256), tgt.reshape(-1)) + aux

        return f

    t_dense, t_moe, _ = timed_ratio(
        _fwd_bwd(dense, loss_of(dense)), _fwd_bwd(moe, loss_of(moe)), repeats=3
    )
    res["dense_fwdbwd_s"], res["moe_fwdbwd_s"] = t_dense, t_moe
    return res


def _as_metrics(prefix: str, router: str, res: dict[str, float], note: str) -> list[dict[str, Any]]:
    p = f"{prefix}_{router}"
    return [
        _metric(f"{p}_dense_params", res["dense_params"], "params", note=note),
        _metric(f"{p}_moe_params", res["moe_params"], "params", note=note),
        _metric(f"{p}_param_ratio", res["moe_params"] / res["dense_params"], "x", note=note),
        _metric(f"{p}_dense_fwd_gflops", res["dense_fwd_flops"] / 1e9, "GFLOP", note=note),
        _metric(f"{p}_moe_fwd_gflops", res["moe_fwd_flops"] / 1e9, "GFLOP", note=note),
        _metric(f"{p}_flop_ratio", res["moe_fwd_flops"] / res["dense_fwd_flops"], "x", note=note),
        _metric(
            f"{p}_fwdbwd_time_ratio",
            res["moe_fwdbwd_s"] / res["dense_fwdbwd_s"],
            "x",
            None,
            False,
            note,
        ),
    ]


def bench_benchmark_moe(full: bool = False) -> list[dict[str, Any]]:
    """Seed 002 ``benchmark_moe``: one MoE layer vs one dense FFN, hash and switch routers."""
    out: list[dict[str, Any]] = []
    for router in ROUTERS:
        res = run_benchmark_moe(router, full)
        note = (
            f"D={res['d_model']:.0f} F={res['d_ff']:.0f} E={res['num_experts']:.0f} "
            f"top-{res['top_k']:.0f} T={res['tokens']:.0f} fp32 CPU"
        )
        out += _as_metrics("benchmark_moe", router, res, note)
    return out


def bench_moe_vs_dense(full: bool = False) -> list[dict[str, Any]]:
    """Seed 002 ``moe_vs_dense``: byte LM with dense vs MoE blocks, hash and switch routers."""
    out: list[dict[str, Any]] = []
    for router in ROUTERS:
        res = run_moe_vs_dense(router, full)
        note = (
            f"D={res['d_model']:.0f} F={res['d_ff']:.0f} L={res['n_layers']:.0f} "
            f"E={res['num_experts']:.0f} top-{res['top_k']:.0f} B={res['batch']:.0f} "
            f"S={res['seq']:.0f} fp32 CPU"
        )
        out += _as_metrics("moe_vs_dense", router, res, note)
    return out


# --------------------------------------------------------------------------------------------
# CLIs


def _print_side_by_side(title: str, res: dict[str, float]) -> None:
    print(title)
    print(f"{'':<24}{'dense':>16}{'moe':>16}{'moe/dense':>12}")
    rows = [
        ("parameters (counted)", "dense_params", "moe_params", "{:>16,.0f}"),
        ("fwd FLOPs (measured)", "dense_fwd_flops", "moe_fwd_flops", "{:>16,.0f}"),
        ("fwd+bwd time (s)", "dense_fwdbwd_s", "moe_fwdbwd_s", "{:>16.4f}"),
    ]
    for label, a, b, fmt in rows:
        print(
            f"{label:<24}" + fmt.format(res[a]) + fmt.format(res[b]) + f"{res[b] / res[a]:>12.2f}"
        )


def benchmark_moe_main(argv: Sequence[str] | None = None) -> int:
    """``seedbed-benchmark-moe``: one MoE layer vs one dense FFN."""
    ap = argparse.ArgumentParser(
        prog="seedbed-benchmark-moe", description=run_benchmark_moe.__doc__
    )
    ap.add_argument("--router", choices=ROUTERS, default="hash")
    ap.add_argument(
        "--full", action="store_true", help="D=512 F=2048 E=8 T=8192 instead of the quick size"
    )
    args = ap.parse_args(argv)
    res = run_benchmark_moe(args.router, args.full)
    _print_side_by_side(
        f"benchmark_moe --router {args.router}: D={res['d_model']:.0f} F={res['d_ff']:.0f} "
        f"E={res['num_experts']:.0f} top-{res['top_k']:.0f} T={res['tokens']:.0f} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)",
        res,
    )
    return 0


def moe_vs_dense_main(argv: Sequence[str] | None = None) -> int:
    """``seedbed-moe-vs-dense``: a byte LM with dense vs MoE feed-forward blocks."""
    ap = argparse.ArgumentParser(prog="seedbed-moe-vs-dense", description=run_moe_vs_dense.__doc__)
    ap.add_argument("--router", choices=ROUTERS, default="hash")
    ap.add_argument("--full", action="store_true", help="paper-ish size instead of the quick size")
    ap.add_argument("--data", type=Path, default=None, help="text file to take the bytes from")
    args = ap.parse_args(argv)
    data = args.data.read_bytes() if args.data is not None else None
    res = run_moe_vs_dense(args.router, args.full, data)
    _print_side_by_side(
        f"moe_vs_dense --router {args.router}: D={res['d_model']:.0f} F={res['d_ff']:.0f} "
        f"L={res['n_layers']:.0f} E={res['num_experts']:.0f} top-{res['top_k']:.0f} "
        f"B={res['batch']:.0f} S={res['seq']:.0f} (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        res,
    )
    return 0


def moe_dispatch_main(argv: Sequence[str] | None = None) -> int:
    """``seedbed-moe-dispatch``: grouped dispatch vs per-expert loop."""
    ap = argparse.ArgumentParser(
        prog="seedbed-moe-dispatch", description=bench_moe_dispatch.__doc__
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help="E=64 top-2 T=8192 D=512 F=1024 (quick: T=2048 D=128 F=256)",
    )
    args = ap.parse_args(argv)
    for m in bench_moe_dispatch(args.full):
        passed = {None: "", True: "PASS", False: "FAIL"}[m["passed"]]
        target = "" if m["target"] is None else f"(target {m['target']:g})"
        print(f"{m['name']:<36}{m['value']:>12.4g} {m['unit']:<3}{target:<18}{passed}")
    print(m["note"])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(moe_dispatch_main())
