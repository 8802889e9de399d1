"""Training loop: mixed precision, accumulation, clipping, warm-up + cosine LR, atomic
checkpoints with bit-for-bit resume, DDP under ``torchrun``, and a stability monitor.

Typical use::

    trainer = Trainer(model, TrainerConfig(max_steps=1000, lr=3e-4, checkpoint_dir="ckpt"),
                      loss_fn=lambda model, batch: F.cross_entropy(model(batch["x"]), batch["y"]))
    trainer.resume()          # continues from ckpt/ if a checkpoint is there
    history = trainer.fit(loader)

Data is a re-iterable of micro-batches (a list, a ``DataLoader`` with a fixed order) or a
function ``i -> micro-batch`` of the global micro-batch index. Each optimizer step consumes
``grad_accum_steps`` micro-batches; on resume the ones already consumed are skipped, so the
data must come in the same order on every pass. Under DDP each process passes its own shard.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from seedbed.core_layers.device import get_device
from seedbed.core_layers.stability import NumericalStabilityMonitor
from seedbed.core_layers.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from seedbed.core_layers.training.metrics import MetricsLogger, TrainingMetrics
from seedbed.core_layers.training.schedule import SCHEDULES, lr_multiplier

__all__ = ["Trainer", "TrainerConfig"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")
_STATE_VERSION = 1


@dataclass
class TrainerConfig:
    """Settings of a :class:`Trainer` run."""

    max_steps: int = 1000  # optimizer steps in the whole run (a resumed run counts from 0 too)
    lr: float | None = 3e-4  # peak LR of every param group; None keeps a given optimizer's LRs
    weight_decay: float = 0.0  # AdamW weight decay (only for the optimizer the Trainer builds)
    betas: tuple[float, float] = (
        0.9,
        0.95,
    )  # AdamW betas (only for the optimizer the Trainer builds)
    warmup_steps: int = 0  # linear warm-up steps
    schedule: str = "cosine"  # after warm-up: "cosine" (to min_lr_ratio * lr) or "constant"
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of the peak LR
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    precision: str = "fp32"  # "fp32"; "bf16": autocast; "fp16": autocast + GradScaler (CUDA only)
    device: str | None = None  # default: get_device() (under DDP on CUDA: cuda:LOCAL_RANK)
    checkpoint_dir: str | None = None  # where checkpoints go; None: no checkpoints
    save_every: int | None = None  # checkpoint every N steps (a final one is always written)
    keep_last: int | None = 3  # checkpoints kept on disk; None keeps all
    snapshot_every: int = 50  # steps between in-memory stable snapshots for roll-back
    metrics_path: str | None = None  # JSON-lines metrics; default <checkpoint_dir>/metrics.jsonl
    log_every: int = 1  # write metrics every N steps (steps with issues are always written)
    progress: bool = True  # tqdm progress bar (rank 0 only)

    def __post_init__(self) -> None:
        for name in ("max_steps", "grad_accum_steps", "log_every", "snapshot_every"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an int >= 1, got {val!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        for name in ("save_every", "keep_last"):
            val = getattr(self, name)
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise ValueError(f"{name} must be an int >= 1 or None, got {val!r}")
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0 or None, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def _default_loss(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, Mapping):
        out = model(**batch)
    elif isinstance(batch, (tuple, list)):
        out = model(*batch)
    else:
        out = model(batch)
    if isinstance(out, Mapping):
        return out["loss"]
    return getattr(out, "loss", out)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _rng_state() -> dict[str, Any]:
    np_state: Any = np.random.get_state()  # noqa: NPY002 (the global legacy RNG is what user code seeds)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (
            str(np_state[0]),
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002


class Trainer:
    """Runs optimizer steps on a model (see the module docstring for the data contract).

    Args:
        model: the module to train; moved to the configured device. Under ``torchrun``
            (``WORLD_SIZE > 1``) it is wrapped in DistributedDataParallel (gloo on CPU, NCCL on
            CUDA) and the process group is created if needed.
        config: a :class:`TrainerConfig`.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; default calls ``model`` on the
            batch (dict as keywords, tuple as positionals) and takes ``out``, ``out["loss"]``
            or ``out.loss``. It receives the DDP wrapper under DDP and must call it.
        optimizer: default AdamW(lr, betas, weight_decay) over the trainable parameters.
        monitor: a :class:`NumericalStabilityMonitor` on the same (unwrapped) model; a default
            one is built.

    Attributes:
        step: optimizer steps done. history: the :class:`TrainingMetrics` of this process.
        rank, world_size: DDP coordinates (0 and 1 without DDP).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig | None = None,
        *,
        loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        monitor: NumericalStabilityMonitor | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.config = cfg = config if config is not None else TrainerConfig()
        if not isinstance(cfg, TrainerConfig):
            raise TypeError(f"config must be a TrainerConfig, got {type(cfg).__name__}")
        self.loss_fn = loss_fn if loss_fn is not None else _default_loss

        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.distributed = dist.is_available() and (dist.is_initialized() or self.world_size > 1)
        self._owns_process_group = False
        device = get_device(cfg.device)
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            if device.index is None:  # plain "cuda": the current device, with its index
                device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(device)  # needs an index (PyTorch >= 2.11 rejects bare "cuda")
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self._owns_process_group = True
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.device = device
        if cfg.precision == "fp16" and device.type != "cuda":
            raise ValueError(
                f"precision='fp16' needs a CUDA device (GradScaler), got {device}; use 'bf16' on CPU"
            )

        self.module = model.to(device)  # the unwrapped model (for weights, monitor, checkpoints)
        self.model: nn.Module = (
            DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
            if self.distributed
            else model
        )
        if optimizer is None:
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(
                params, lr=cfg.lr or 3e-4, betas=cfg.betas, weight_decay=cfg.weight_decay
            )
        else:
            if (cfg.weight_decay, cfg.betas) != (0.0, (0.9, 0.95)):
                raise ValueError(
                    "weight_decay and betas configure the optimizer the Trainer builds; set them on the "
                    f"optimizer you pass instead (got weight_decay={cfg.weight_decay}, betas={cfg.betas})"
                )
        self.optimizer = optimizer
        self._peak_lrs = [
            float(cfg.lr) if cfg.lr is not None else float(g["lr"]) for g in optimizer.param_groups
        ]
        self.scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
        if monitor is None:
            monitor = NumericalStabilityMonitor(self.module, optimizer)
        elif monitor.model is not self.module:
            raise ValueError(
                "monitor must watch the model given to the Trainer (the unwrapped module)"
            )
        elif monitor.optimizer is None:
            monitor.optimizer = optimizer
        self.monitor = monitor

        self.step = 0
        self.micro_batches_consumed = 0
        self.epoch = 0
        self.history: list[TrainingMetrics] = []
        self._logger: MetricsLogger | None = None
        metrics_path = cfg.metrics_path
        if metrics_path is None and cfg.checkpoint_dir is not None:
            metrics_path = str(Path(cfg.checkpoint_dir) / "metrics.jsonl")
        self.metrics_path = metrics_path
        if metrics_path is not None and self.rank == 0:
            self._logger = MetricsLogger(metrics_path)

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def current_lr(self) -> float:
        """LR of the first param group for the next step (schedule x stability reductions)."""
        return self._peak_lrs[0] * self._lr_mult()

    def _lr_mult(self) -> float:
        c = self.config
        mult = lr_multiplier(
            self.step,
            warmup_steps=c.warmup_steps,
            max_steps=c.max_steps,
            schedule=c.schedule,
            min_lr_ratio=c.min_lr_ratio,
        )
        return mult * self.monitor.lr_scale

    def train_step(self, micro_batches: list[Any]) -> TrainingMetrics:
        """One optimizer step over ``micro_batches`` (their gradients are accumulated).

        The loss of each micro-batch is divided by their number, so k micro-batches of n rows
        give the same update as one batch of k*n rows when the loss is a per-row mean.

        Raises:
            RuntimeError: from the stability monitor when recovery is exhausted.
        """
        if not micro_batches:
            raise ValueError("train_step needs at least one micro-batch, got none")
        t0 = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model.train()
        mult = self._lr_mult()
        for g, peak in zip(self.optimizer.param_groups, self._peak_lrs):
            g["lr"] = peak * mult
        lr = self.optimizer.param_groups[0]["lr"]

        n = len(micro_batches)
        losses = []
        try:
            for i, mb in enumerate(micro_batches):
                sync = not (isinstance(self.model, DistributedDataParallel) and i < n - 1)
                ctx = contextlib.nullcontext() if sync else self.model.no_sync()  # type: ignore[operator]
                with ctx:
                    with self._autocast():
                        loss = self.loss_fn(self.model, _to_device(mb, self.device))
                    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                        raise TypeError(
                            f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                            f"{tuple(getattr(loss, 'shape', ()))}"
                        )
                    scaled = loss.reshape(()) / n
                    if self.scaler is not None:
                        self.scaler.scale(scaled).backward()
                    else:
                        scaled.backward()
                losses.append(loss.detach().float().reshape(()))
        except BaseException:
            self.optimizer.zero_grad(set_to_none=True)  # a failed step leaves no partial gradients
            raise
        self.micro_batches_consumed += n
        loss_t = torch.stack(losses).mean()
        if self.distributed:
            dist.all_reduce(loss_t)
            loss_t /= self.world_size

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.config.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params])  # type: ignore[misc]
        ok_loss, issues = self.monitor.check_tensors([loss_t], ["loss"])
        fp16_overflow = self.scaler is not None and not math.isfinite(float(grad_norm))
        ok_grad, grad_issues = (
            (True, []) if fp16_overflow else self.monitor.check_gradients(grad_norm)
        )
        issues = issues + grad_issues

        recovery = None
        skipped = False
        if ok_loss and ok_grad:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)  # skips the update itself on fp16 overflow
                self.scaler.update()
                skipped = fp16_overflow
                if fp16_overflow:
                    issues = ["fp16 gradient overflow: step skipped, loss scale reduced"]
            else:
                self.optimizer.step()
            if not skipped:
                self.monitor.record_stable(float(grad_norm))
        else:
            skipped = True
            if self.scaler is not None:
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            try:
                recovery = self.monitor.recover(issues)
            except RuntimeError:  # exhausted: record the failing step, then stop
                self._record(
                    self.step + 1, loss_t, lr, grad_norm, t0, n, skipped, "exhausted", issues
                )
                raise
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return self._record(self.step, loss_t, lr, grad_norm, t0, n, skipped, recovery, issues)

    def _record(
        self,
        step: int,
        loss_t: torch.Tensor,
        lr: float,
        grad_norm: torch.Tensor,
        t0: float,
        n: int,
        skipped: bool,
        recovery: str | None,
        issues: list[str],
    ) -> TrainingMetrics:
        m = TrainingMetrics(
            step=step,
            loss=float(loss_t),
            lr=float(lr),
            grad_norm=float(grad_norm),
            step_time_ms=(time.perf_counter() - t0) * 1000.0,
            micro_batches=n,
            epoch=self.epoch,
            skipped=skipped,
            recovery=recovery,
            issues=issues,
            loss_scale=float(self.scaler.get_scale()) if self.scaler is not None else None,
            peak_memory_mb=torch.cuda.max_memory_allocated(self.device) / 2**20
            if self.device.type == "cuda"
            else None,
        )
        self.history.append(m)
        if self._logger is not None and (step % self.config.log_every == 0 or issues):
            self._logger.log(m)
        return m

    # ------------------------------------------------------------------ the loop
    def _micro_batch_stream(self, data: Iterable[Any] | Callable[[int], Any]) -> Iterator[Any]:
        if not isinstance(data, Iterable):
            i = self.micro_batches_consumed
            while True:
                yield data(i)
                i += 1
        to_skip = self.micro_batches_consumed  # replayed (and skipped) on resume
        epoch = 0
        while True:
            it = iter(data)
            seen = 0
            for batch in it:
                seen += 1
                if to_skip > 0:
                    to_skip -= 1
                    continue
                self.epoch = epoch
                yield batch
            if seen == 0 or it is data:
                return  # empty, or a one-shot iterator that ran out
            epoch += 1

    def fit(self, data: Iterable[Any] | Callable[[int], Any]) -> list[TrainingMetrics]:
        """Train until ``config.max_steps`` optimizer steps are done (or one-shot data runs out).

        Writes a checkpoint every ``save_every`` steps and at the end when ``checkpoint_dir`` is
        set. Returns this process's metrics of the steps run by this call.
        """
        cfg = self.config
        start = len(self.history)
        stream = self._micro_batch_stream(data)
        if not self.monitor.has_snapshot:
            self.monitor.snapshot()
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            disable=not cfg.progress or self.rank != 0,
            desc="train",
            dynamic_ncols=True,
        )
        last_saved = -1
        try:
            while self.step < cfg.max_steps:
                micro = []
                for _ in range(cfg.grad_accum_steps):
                    try:
                        micro.append(next(stream))
                    except StopIteration:
                        break
                if len(micro) < cfg.grad_accum_steps:
                    log.warning(
                        "data ran out after %d micro-batches, at step %d",
                        self.micro_batches_consumed,
                        self.step,
                    )
                    break
                m = self.train_step(micro)
                bar.set_postfix(loss=f"{m.loss:.4g}", lr=f"{m.lr:.2e}", refresh=False)
                bar.update(1)
                if not m.skipped and self.step % cfg.snapshot_every == 0:
                    self.monitor.snapshot()
                if (
                    cfg.checkpoint_dir is not None
                    and cfg.save_every
                    and self.step % cfg.save_every == 0
                ):
                    self._save_stable()
                    last_saved = self.step
            if cfg.checkpoint_dir is not None and last_saved != self.step:
                self._save_stable()
        finally:
            bar.close()
        return self.history[start:]

    # ------------------------------------------------------------------ checkpoints
    def _save_stable(self) -> None:
        # Never persist non-finite weights: an update can overflow even from finite gradients.
        # Skipping is enough: the next step's loss will be non-finite and trigger recovery.
        ok = all(bool(torch.isfinite(p).all()) for p in self.module.parameters())
        if not ok:
            log.warning("step %d: non-finite weights, checkpoint not written", self.step)
            return
        self.save_checkpoint()
        self.monitor.snapshot()

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly (see :meth:`save_checkpoint`)."""
        rng = _rng_state()
        if self.distributed:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        return {
            "version": _STATE_VERSION,
            "step": self.step,
            "micro_batches_consumed": self.micro_batches_consumed,
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "monitor": self.monitor.state_dict(),
            "rng": rngs,
            "world_size": self.world_size,
            "config": {
                k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()
            },
        }

    def save_checkpoint(self) -> Path | None:
        """Write ``<checkpoint_dir>/step_<step>`` atomically (rank 0 writes; all ranks wait).

        Only called after a stable step, so a checkpoint never holds NaN/Inf weights.

        Returns:
            The checkpoint path on rank 0, None on other ranks.
        """
        if self.config.checkpoint_dir is None:
            raise ValueError("save_checkpoint needs config.checkpoint_dir, got None")
        state = self.state_dict()  # collective under DDP: every rank takes part
        path = None
        if self.rank == 0:
            path = save_checkpoint(
                self.config.checkpoint_dir,
                self.step,
                self.module,
                state,
                keep_last=self.config.keep_last,
            )
        if self.distributed:
            dist.barrier()
        return path

    def load_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Restore weights, optimizer, scaler, RNG, monitor and counters from ``path``."""
        state = load_checkpoint(path, self.module)
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"checkpoint state version must be {_STATE_VERSION}, got {state.get('version')!r}"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.monitor.load_state_dict(state["monitor"])
        rngs = state["rng"]
        _set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        self.step = int(state["step"])
        self.micro_batches_consumed = int(state["micro_batches_consumed"])
        self.epoch = int(state["epoch"])
        self.monitor.snapshot()  # the checkpoint is the last stable state

    def resume(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Load ``path``, or the latest checkpoint in ``config.checkpoint_dir`` if there is one.

        Returns:
            True if a checkpoint was loaded.
        """
        if path is None:
            if self.config.checkpoint_dir is None:
                return False
            path = latest_checkpoint(self.config.checkpoint_dir)
            if path is None:
                return False
        self.load_checkpoint(path)
        return True

    def close(self) -> None:
        """Close the metrics file and the process group this Trainer created (if any)."""
        if self._logger is not None:
            self._logger.close()
            self._logger = None
        if self._owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_process_group = False

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
