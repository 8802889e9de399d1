"""Train a :class:`MixerLM` on MQAR and measure its test accuracy (Zoology's protocol, scaled
to what the machine allows)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from seedbed.core_layers import latest_checkpoint, load_checkpoint, save_checkpoint
from seedbed.core_layers.training.checkpoint import STATE_FILE
from seedbed.sequence_models.lm import LMConfig, MixerLM
from seedbed.sequence_models.mqar.data import IGNORE_INDEX, MQARConfig, MQARData

__all__ = [
    "EMBED_INITS",
    "PRECISIONS",
    "MQARResult",
    "TrainConfig",
    "default_mixer_kwargs",
    "evaluate",
    "load_mqar_model",
    "train_mqar",
]

PRECISIONS = ("fp32", "bf16")
EMBED_INITS = ("gpt2", "unit")


@dataclass
class TrainConfig:
    """How one model is trained on one MQAR setting."""

    mixer: str = "attention"  # a key of MIXERS
    d_model: int = 128  # residual width
    n_layers: int = 2  # blocks (the issue: 2 layers for every mixer)
    mixer_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides default_mixer_kwargs
    d_ffn: int | None = 0  # SwiGLU width (None = 4 D); 0 = no MLP, as Zoology's Figure-2 models
    embed_init: str = "gpt2"  # token embeddings: "gpt2" (N(0, 0.02) under an unscaled tied
    #   head: GPT-2's and Zoology's, LMConfig's default) or "unit" (N(0, 1), logits x D^-0.5:
    #   this package's init before the "gpt2" one, kept to reproduce older results)
    abs_positions: bool | None = None  # learned absolute positions up to the setting's L;
    #   None: for attention only (Zoology: max_position_embeddings = L for attention, else 0)
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.1  # AdamW weight decay (Zoology: 0.1)
    batch_size: int = 64  # sequences per step
    epochs: float = 1.0  # passes over the training set (may be fractional)
    max_steps: int | None = None  # stop after this many steps (caps epochs)
    time_budget_s: float | None = None  # stop when training has taken this long
    device: str = "cpu"  # where to train ("cuda" on a GPU box)
    warmup_frac: float = 0.05  # linear warm-up share of the steps, then cosine decay to 0
    precision: str = "fp32"  # "bf16": training forward under torch.autocast (bfloat16
    #   matmuls; weights, loss and optimiser stay fp32); evaluation is always fp32
    eval_batch_size: int = 1024  # sequences per evaluation batch (logits only at answers)
    num_threads: int | None = None  # torch intra-op threads while training (None: as set)
    seed: int = 0  # model init and batch order
    progress: bool = True  # tqdm bar
    save_dir: str | os.PathLike[str] | None = None  # save the model here (core-layers'
    #   atomic checkpoint, newest kept) every save_every_s and at the end: load_mqar_model
    #   reads it back, e.g. as a later run's warm start
    save_every_s: float = 600.0  # seconds of training between saves

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 or None, got {self.time_budget_s}")
        if not self.lr > 0 or not self.epochs > 0 or not 0 <= self.warmup_frac < 1:
            raise ValueError(
                f"need lr > 0, epochs > 0, 0 <= warmup_frac < 1, got lr={self.lr}, "
                f"epochs={self.epochs}, warmup_frac={self.warmup_frac}"
            )
        if self.save_dir is not None and not isinstance(self.save_dir, (str, os.PathLike)):
            raise ValueError(f"save_dir must be a path or None, got {self.save_dir!r}")
        if not self.save_every_s > 0:
            raise ValueError(f"save_every_s must be > 0, got {self.save_every_s}")
        if self.embed_init not in EMBED_INITS:
            raise ValueError(f"embed_init must be one of {EMBED_INITS}, got {self.embed_init!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.abs_positions is not None and not isinstance(self.abs_positions, bool):
            raise ValueError(f"abs_positions must be a bool or None, got {self.abs_positions!r}")
        optional = ("num_threads",) if self.num_threads is not None else ()
        for name in ("d_model", "n_layers", "batch_size", "eval_batch_size", *optional):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {val!r}")


@dataclass
class MQARResult:
    """Outcome of one training run."""

    mixer: str
    seq_len: int
    num_kv_pairs: int
    d_model: int
    lr: float
    test_accuracy: float  # share of answer positions predicted exactly
    final_train_loss: float
    train_tokens_per_s: float  # training throughput (tokens of the batch per second)
    steps: int
    train_seconds: float
    num_parameters: int
    init_from: str | None = None  # "L64" when warm-started from a model trained at L=64
    precision: str = "fp32"  # the training forward's precision (TrainConfig.precision)
    embed_init: str = "gpt2"  # TrainConfig.embed_init

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def default_mixer_kwargs(mixer: str, d_model: int, seq_len: int) -> dict[str, Any]:
    """Per-mixer settings used for MQAR (heads, state sizes, filter length)."""
    if mixer == "attention":
        return {"n_heads": 1}  # Zoology's attention baseline is single-headed
    if mixer == "retnet":
        return {
            "n_heads": max(1, d_model // 32)
        }  # gamma_h = 1 - 2^(-5-h): more heads, longer memory
    if mixer == "mamba":
        return {"d_state": 16}
    if mixer == "mamba2":
        return {"d_state": 64, "head_dim": min(64, 2 * d_model)}
    if mixer == "hyena":
        return {"l_max": seq_len}
    return {}


def _unit_init(config: LMConfig) -> LMConfig:
    """``config`` with ``embed_init="unit"``'s fields (the "gpt2" init is LMConfig's default)."""
    return dataclasses.replace(config, embed_std=1.0, logit_scale=config.d_model**-0.5)


def _masked_logits(
    model: MixerLM, inputs: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits only at the labelled positions (the LM head is the costly part at V = 8192)."""
    hidden = model.hidden_states(inputs)  # (B, L, D)
    mask = labels != IGNORE_INDEX
    return model.logits(hidden[mask]), labels[mask]  # (M, V), (M,)


def _fit_positions(state: dict[str, torch.Tensor], model: MixerLM) -> dict[str, torch.Tensor]:
    """``state`` with its absolute-position table fitted to ``model``'s length: a shorter
    table is extended (its rows fill the first positions, the new model's own initialisation
    the rest: a curriculum from L to a longer L'), a longer one keeps its first rows."""
    key = "embed_pos.weight"
    if model.embed_pos is None or key not in state:
        return state
    old, new = state[key], model.embed_pos.weight.detach()
    if old.ndim != 2 or old.shape[1] != new.shape[1] or old.shape[0] == new.shape[0]:
        return state  # same size (loads as is) or a mismatch load_state_dict will report
    if old.shape[0] > new.shape[0]:
        return {**state, key: old[: new.shape[0]]}
    return {**state, key: torch.cat([old, new[old.shape[0] :].to(old)])}


def _save(model: MixerLM, cfg: TrainConfig, data: MQARData, step: int, **extra: Any) -> None:
    """Checkpoint ``model`` under ``cfg.save_dir`` (the newest one kept)."""
    assert cfg.save_dir is not None
    state = {
        "lm_config": dataclasses.asdict(model.config),
        "seq_len": data.config.seq_len,
        "num_kv_pairs": data.config.num_kv_pairs,
        "step": step,
        **extra,
    }
    save_checkpoint(cfg.save_dir, step, model, state, keep_last=1)


def load_mqar_model(path: str | os.PathLike[str]) -> tuple[MixerLM, int]:
    """A model saved by ``TrainConfig.save_dir``: ``(model, seq_len it was trained at)``, the
    ``init`` of :func:`train_mqar`. ``path`` is the save directory (its newest checkpoint is
    read) or one checkpoint in it."""
    p = Path(path)
    ckpt = p if (p / STATE_FILE).is_file() else latest_checkpoint(p)
    if ckpt is None:
        raise FileNotFoundError(f"no saved MQAR model under {p}")
    state = torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "lm_config" not in state or "seq_len" not in state:
        raise ValueError(f"{ckpt} is a checkpoint, but not one of an MQAR model (no lm_config)")
    try:
        config = LMConfig(**state["lm_config"])
        if "logit_scale" not in state["lm_config"] and config.tie_embeddings:
            config = _unit_init(config)  # saved when the only init was "unit"
        model = MixerLM(config)
        load_checkpoint(ckpt, model)
    except (TypeError, RuntimeError) as e:  # a config or weights this version cannot build
        raise ValueError(f"cannot rebuild the MQAR model saved in {ckpt}: {e}") from e
    return model, int(state["seq_len"])


@torch.no_grad()
def evaluate(
    model: MixerLM, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Accuracy over all answer positions of (inputs, labels)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for i in range(0, inputs.shape[0], batch_size):
        logits, target = _masked_logits(
            model, inputs[i : i + batch_size], labels[i : i + batch_size]
        )
        correct += int((logits.argmax(-1) == target).sum())
        total += target.numel()
    model.train(was_training)
    return correct / max(total, 1)


def lr_at(cfg: TrainConfig, step: int, total_steps: int, elapsed: float) -> float:
    """Learning rate of ``step`` (0-based) after ``elapsed`` seconds: linear warm-up over the
    first ``cfg.warmup_frac`` of the run, then cosine decay to 0. The run's progress is
    ``step / total_steps``, or the share of ``cfg.time_budget_s`` spent if that is larger,
    so a run cut short by its time budget still warms up and decays in full."""
    progress = step / total_steps
    if cfg.time_budget_s is not None:
        progress = max(progress, elapsed / cfg.time_budget_s)
    if progress < cfg.warmup_frac:
        warmup_steps = max(int(cfg.warmup_frac * total_steps), 1)
        return cfg.lr * min(1.0, max((step + 1) / warmup_steps, progress / cfg.warmup_frac))
    frac = (progress - cfg.warmup_frac) / (1 - cfg.warmup_frac)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def train_mqar(
    data: MQARData, cfg: TrainConfig, init: tuple[MixerLM, int] | None = None
) -> tuple[MixerLM, MQARResult]:
    """Train a ``cfg.mixer`` LM on ``data`` and return it with its test result.

    Args:
        data: the setting's train and test sets.
        cfg: the training recipe. With ``cfg.num_threads`` set, torch runs on that many
            intra-op threads for the call (restored afterwards).
        init: optional ``(model, seq_len)``: start from this model's weights (trained at
            ``seq_len``; a curriculum) instead of a fresh initialisation. Its
            architecture must be the one ``cfg`` builds; it is not modified. A model saved
            by an earlier run (``cfg.save_dir``) is ``load_mqar_model(that_dir)``.
    """
    if not isinstance(data, MQARData) or not isinstance(cfg, TrainConfig):
        raise TypeError(
            f"train_mqar expects (MQARData, TrainConfig), got ({type(data).__name__}, {type(cfg).__name__})"
        )
    if init is not None and not (
        isinstance(init, tuple)
        and len(init) == 2
        and isinstance(init[0], MixerLM)
        and isinstance(init[1], int)
    ):
        raise TypeError(f"init must be (MixerLM, seq_len) or None, got {init!r:.80}")
    old_threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    try:
        return _train(data, cfg, init)
    finally:
        torch.set_num_threads(old_threads)


def _train(
    data: MQARData, cfg: TrainConfig, init: tuple[MixerLM, int] | None
) -> tuple[MixerLM, MQARResult]:
    dcfg: MQARConfig = data.config
    torch.manual_seed(cfg.seed)
    kwargs = {**default_mixer_kwargs(cfg.mixer, cfg.d_model, dcfg.seq_len), **cfg.mixer_kwargs}
    abs_pos = cfg.mixer == "attention" if cfg.abs_positions is None else cfg.abs_positions
    config = LMConfig(
        vocab_size=dcfg.vocab_size, d_model=cfg.d_model, n_layers=cfg.n_layers, mixer=cfg.mixer,
        mixer_kwargs=kwargs, d_ffn=cfg.d_ffn, max_position_embeddings=dcfg.seq_len if abs_pos else 0,
    )  # fmt: skip
    model = MixerLM(config if cfg.embed_init == "gpt2" else _unit_init(config)).to(cfg.device)
    if init is not None:
        if init[0].config.logit_scale != model.config.logit_scale:
            raise ValueError(
                f"init model scales its logits by {init[0].config.logit_scale:g}, the model of "
                f"cfg (embed_init={cfg.embed_init!r}) by {model.config.logit_scale:g}: pass the "
                "embed_init the init model was trained with"
            )
        try:
            model.load_state_dict(_fit_positions(init[0].state_dict(), model))
        except RuntimeError as e:
            raise ValueError(
                f"init model does not match the {cfg.mixer} d_model={cfg.d_model} model of cfg: {e}"
            ) from e
    train_x, train_y = data.train_inputs.to(cfg.device), data.train_labels.to(cfg.device)
    # weight decay on matrices only: not on norms/biases, nor on the embeddings ("embed*":
    # the tied token table, whose decay shrinks token identity in the residual stream, slower
    # MQAR learning in our runs, and the absolute positions)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("embed")]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n.startswith("embed")]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    n_train = data.train_inputs.shape[0]
    steps_per_epoch = max(1, n_train // cfg.batch_size)
    total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    if cfg.save_dir is not None:  # fail now, not after the training, if it cannot be made
        Path(cfg.save_dir).mkdir(parents=True, exist_ok=True)
    device_type = torch.device(cfg.device).type
    g = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(n_train, generator=g)
    model.train()
    loss_val, t0, steps_done = float("nan"), time.perf_counter(), 0
    last_save = t0
    bar = tqdm(
        range(total_steps),
        desc=f"{cfg.mixer} L={dcfg.seq_len}",
        disable=not cfg.progress,
        leave=False,
    )
    for step in bar:
        elapsed = time.perf_counter() - t0
        if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
            break
        pos = (step % steps_per_epoch) * cfg.batch_size
        if step and pos == 0:
            perm = torch.randperm(n_train, generator=g)
        idx = perm[pos : pos + cfg.batch_size].to(cfg.device)
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, total_steps, elapsed)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
            logits, target = _masked_logits(model, train_x[idx], train_y[idx])
        loss = F.cross_entropy(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_val = loss.item()
        steps_done = step + 1
        if cfg.save_dir is not None and time.perf_counter() - last_save >= cfg.save_every_s:
            _save(model, cfg, data, steps_done, train_loss=loss_val)
            last_save = time.perf_counter()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss_val:.3f}")
    bar.close()
    train_s = time.perf_counter() - t0
    acc = evaluate(
        model, data.test_inputs.to(cfg.device), data.test_labels.to(cfg.device), cfg.eval_batch_size
    )
    if cfg.save_dir is not None:
        _save(model, cfg, data, steps_done, train_loss=loss_val, test_accuracy=acc)
    tokens = steps_done * cfg.batch_size * dcfg.seq_len
    return model, MQARResult(
        mixer=cfg.mixer, seq_len=dcfg.seq_len, num_kv_pairs=dcfg.num_kv_pairs, d_model=cfg.d_model,
        lr=cfg.lr, test_accuracy=acc, final_train_loss=loss_val, train_tokens_per_s=tokens / train_s,
        steps=steps_done, train_seconds=train_s, num_parameters=model.num_parameters(),
        init_from=None if init is None else f"L{init[1]}", precision=cfg.precision,
        embed_init=cfg.embed_init,
    )  # fmt: skip
