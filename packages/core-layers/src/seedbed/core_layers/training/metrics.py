"""Measured records: per-step :class:`TrainingMetrics` (JSON lines) and run-level
:class:`BenchmarkResults` (seed 003), which reports only the fields that were measured."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from torch import nn

__all__ = ["BenchmarkResults", "MetricsLogger", "TrainingMetrics"]


@dataclass
class TrainingMetrics:
    """What one optimizer step measured."""

    step: int  # optimizer steps completed, this one included
    loss: float  # mean loss over the step's micro-batches (and ranks)
    lr: float  # learning rate used by this step (first param group)
    grad_norm: float | None = None  # global gradient L2 norm before clipping
    step_time_ms: float = 0.0  # wall time of the step
    micro_batches: int = 1  # micro-batches accumulated (per rank)
    epoch: int = 0  # passes over the data completed before this step
    skipped: bool = False  # no optimizer update was applied (instability or fp16 overflow)
    recovery: str | None = None  # recovery strategy applied after an instability
    issues: list[str] = field(default_factory=list)  # what the stability checks found
    loss_scale: float | None = None  # fp16 GradScaler scale, when one is used
    peak_memory_mb: float | None = None  # CUDA peak allocated memory during the step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MetricsLogger:
    """Appends one JSON object per line to ``path`` (created with its parent directories)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[str] | None = self.path.open("a", encoding="utf-8")

    def log(self, record: TrainingMetrics | dict[str, Any]) -> None:
        if self._fh is None:
            raise ValueError(f"MetricsLogger for {self.path} is closed")
        data = record.to_dict() if isinstance(record, TrainingMetrics) else record
        self._fh.write(json.dumps(data, allow_nan=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """All records of a JSON-lines file."""
        with Path(path).open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


@dataclass
class BenchmarkResults:
    """Results of a training run or benchmark. Every field but ``config_name`` is optional and
    :meth:`print_summary` shows only those that were measured (not None); nothing is estimated.
    """

    config_name: str
    final_loss: float | None = None  # last loss of a step that was applied
    final_perplexity: float | None = None  # exp(final_loss) for a token-level cross-entropy
    baseline_perplexity: float | None = None  # same measure for the baseline run
    training_time_s: float | None = None  # wall time of the steps
    tokens_per_second: float | None = None  # training or decoding throughput
    num_parameters: int | None = None
    model_size_mb: float | None = None  # parameters + buffers, bytes / 2**20
    peak_memory_mb: float | None = None
    speedup_vs_baseline: float | None = None  # baseline time / this time, measured side by side
    memory_reduction_vs_baseline: float | None = None  # baseline peak / this peak
    extra: dict[str, float] = field(default_factory=dict)  # other measured numbers, by name

    def __post_init__(self) -> None:
        if not isinstance(self.config_name, str):
            raise TypeError(f"config_name must be a str, got {type(self.config_name).__name__}")
        for f in fields(self):
            if f.name in ("config_name", "extra"):
                continue
            val = getattr(self, f.name)
            if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
                raise TypeError(f"{f.name} must be a number or None, got {type(val).__name__}")

    @property
    def perplexity_ratio(self) -> float | None:
        """final / baseline perplexity, when both were measured."""
        if self.final_perplexity is None or not self.baseline_perplexity:
            return None
        return self.final_perplexity / self.baseline_perplexity

    @classmethod
    def from_training(
        cls,
        config_name: str,
        history: Sequence[TrainingMetrics],
        model: nn.Module | None = None,
        **measured: Any,
    ) -> BenchmarkResults:
        """Fill the fields a :class:`Trainer` history (and the model) measured.

        ``final_perplexity`` is set to exp(final_loss) only if ``perplexity=True`` is passed
        (the loss must be a token-level cross-entropy for that to mean anything).
        """
        as_ppl = bool(measured.pop("perplexity", False))
        applied = [m for m in history if not m.skipped]
        res = cls(config_name, **measured)
        if applied:
            res.final_loss = applied[-1].loss
            if as_ppl and math.isfinite(res.final_loss):
                res.final_perplexity = math.exp(res.final_loss)
        if history:
            res.training_time_s = sum(m.step_time_ms for m in history) / 1000.0
        if model is not None:
            res.num_parameters = sum(p.numel() for p in model.parameters())
            nbytes = sum(
                t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())
            )
            res.model_size_mb = nbytes / 2**20
        return res

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """The measured fields as text."""
        rows: list[tuple[str, str]] = []

        def add(label: str, val: Any, fmt: str) -> None:
            if val is not None:
                rows.append((label, format(val, fmt)))

        add("final loss", self.final_loss, ".4f")
        add("perplexity", self.final_perplexity, ".2f")
        add("baseline perplexity", self.baseline_perplexity, ".2f")
        add("perplexity ratio", self.perplexity_ratio, ".2%")
        add("training time (s)", self.training_time_s, ".2f")
        add("tokens/s", self.tokens_per_second, ",.1f")
        add("parameters", self.num_parameters, ",d")
        add("model size (MiB)", self.model_size_mb, ".2f")
        add("peak memory (MiB)", self.peak_memory_mb, ".1f")
        add("speedup vs baseline", self.speedup_vs_baseline, ".2f")
        add("memory reduction vs baseline", self.memory_reduction_vs_baseline, ".2f")
        for k, v in self.extra.items():
            rows.append((k, f"{v:.4g}"))
        width = max((len(label) for label, _ in rows), default=0)
        bar = "=" * 60
        lines = [bar, f"Benchmark results: {self.config_name}", bar]
        lines += [f"  {label:<{width}}  {val}" for label, val in rows] or ["  (nothing measured)"]
        lines.append(bar)
        return "\n".join(lines)

    def print_summary(self) -> None:
        print(self.summary())
