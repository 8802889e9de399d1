"""Measuring the peak memory of a call, on CPU as on CUDA.

On CPU, PyTorch has no allocator statistics, so :func:`peak_memory_bytes` runs the call under
``torch.profiler`` with ``profile_memory=True``: the profiler records every allocation and
free made through PyTorch's CPU allocator (tensor storage, including scratch buffers that a
kernel allocates internally) with the allocator's running total of bytes allocated. The peak
is the largest running total seen during the call less the total just before its first
allocation. It counts PyTorch tensor memory only, not Python objects or memory that
third-party libraries malloc themselves. Tensors that existed before the call are not
counted; tensors the call returns are.

On CUDA it uses ``torch.cuda.max_memory_allocated`` after resetting the peak, minus the memory
allocated before the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["peak_memory_bytes"]


def _walk(node: Any, out: list[Any]) -> None:
    out.append(node)
    for child in node.children:
        _walk(child, out)


def peak_memory_bytes(fn: Callable[[], Any], device: str | torch.device = "cpu") -> int:
    """Peak bytes of tensor memory allocated while ``fn()`` runs (see the module docstring).

    Args:
        fn: the call to measure.
        device: where ``fn`` allocates: ``"cpu"`` or a CUDA device.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        fn()
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev) - base)
    if dev.type != "cpu":
        raise ValueError(f"peak_memory_bytes supports 'cpu' and CUDA devices, got {device!r}")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    nodes: list[Any] = []
    for root in prof.profiler.kineto_results.experimental_event_tree():  # type: ignore[union-attr]
        _walk(root, nodes)
    allocs = sorted(
        (n for n in nodes if type(n.extra_fields).__name__ == "_ExtraFields_Allocation"),
        key=lambda n: n.start_time_ns,
    )
    events = [
        (n.extra_fields.alloc_size, n.extra_fields.total_allocated)
        for n in allocs
        if n.extra_fields.device.type == "cpu"
    ]
    if not events:
        return 0
    # The running total is kept across profiler sessions and can carry an offset (a tensor
    # allocated while profiling but freed outside): measure from the total before the first event.
    base = events[0][1] - events[0][0]
    return int(max(0, max(total for _, total in events) - base))
