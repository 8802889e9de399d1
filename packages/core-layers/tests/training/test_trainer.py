import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seedbed.core_layers import MetricsLogger, Trainer, TrainerConfig, load_checkpoint
from seedbed.core_layers.training import list_checkpoints, lr_multiplier


class TinyNet(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.l1 = nn.Linear(6, 16)
        self.drop = nn.Dropout(dropout)
        self.l2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.l2(self.drop(torch.tanh(self.l1(x))))


def mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


def make_data(n_rows: int, rows_per_batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, 6, generator=g)
    y = torch.sin(x.sum(-1, keepdim=True))
    return [
        (x[i : i + rows_per_batch], y[i : i + rows_per_batch])
        for i in range(0, n_rows, rows_per_batch)
    ]


def fresh_model(seed: int = 0, dropout: float = 0.0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(dropout)


def cfg(**kw) -> TrainerConfig:
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")  # the Trainer's default is the best device: CUDA where present
    return TrainerConfig(**kw)


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_accumulation_4x8_equals_1x32(opt):
    steps = 3
    micro = make_data(32 * steps, 8)  # 4 micro-batches of 8 rows per step
    whole = make_data(32 * steps, 32)  # the same rows, 1 batch of 32 per step
    params = []
    for data, accum in ((micro, 4), (whole, 1)):
        model = fresh_model()
        optim = torch.optim.SGD(model.parameters(), lr=0.1) if opt == "sgd" else None
        t = Trainer(
            model,
            cfg(max_steps=steps, grad_accum_steps=accum, lr=1e-2, grad_clip=None),
            loss_fn=mse,
            optimizer=optim,
        )
        t.fit(data)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert not torch.equal(
        params[0], torch.cat([p.detach().flatten() for p in fresh_model().parameters()])
    )
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=1e-6)


def test_resume_is_bit_for_bit_on_cpu(tmp_path):
    data = make_data(8 * 10, 8)
    conf = dict(
        max_steps=10, lr=3e-3, warmup_steps=3, grad_clip=0.5, grad_accum_steps=1, save_every=4
    )

    straight = fresh_model(dropout=0.3)
    torch.manual_seed(123)
    t_a = Trainer(straight, cfg(checkpoint_dir=str(tmp_path / "a"), **conf), loss_fn=mse)
    hist_a = t_a.fit(data)

    # second run: crash during step 6, after the checkpoint of step 4
    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated crash")
        return mse(model, batch)

    crashed = fresh_model(dropout=0.3)
    torch.manual_seed(123)
    t_b = Trainer(crashed, cfg(checkpoint_dir=str(tmp_path / "b"), **conf), loss_fn=crashing)
    with pytest.raises(KeyboardInterrupt):
        t_b.fit(data)
    assert [m.loss for m in t_b.history] == [m.loss for m in hist_a[:5]]
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step_00000004"]

    # a new process: different initial weights and RNG; resume must restore everything
    torch.manual_seed(999)
    resumed = fresh_model(seed=7, dropout=0.3)
    t_c = Trainer(resumed, cfg(checkpoint_dir=str(tmp_path / "b"), **conf), loss_fn=mse)
    assert t_c.resume()
    assert t_c.step == 4
    hist_c = t_c.fit(data)
    assert [m.step for m in hist_c] == list(range(5, 11))
    assert [m.loss for m in hist_c] == [m.loss for m in hist_a[4:]]
    for pa, pc in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(pa, pc)
    st_a, st_c = t_a.optimizer.state_dict()["state"], t_c.optimizer.state_dict()["state"]
    for i in st_a:
        assert torch.equal(st_a[i]["exp_avg_sq"], st_c[i]["exp_avg_sq"])


def _assert_checkpoints_sound(directory):
    assert not [p for p in directory.iterdir() if p.name.startswith(".tmp-")]
    ckpts = list_checkpoints(directory)
    assert ckpts
    for path in ckpts:
        state = load_checkpoint(path, TinyNet())  # strict load + weights_only=True
        assert isinstance(state["step"], int)
        model = TinyNet()
        load_checkpoint(path, model)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    return ckpts


def test_nan_injected_at_step_n_recovers_and_finishes(tmp_path):
    n_bad = 5
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * float("nan") if calls["n"] == n_bad else loss

    t = Trainer(
        fresh_model(),
        cfg(max_steps=12, lr=1e-2, checkpoint_dir=str(tmp_path), save_every=2),
        loss_fn=flaky,
    )
    hist = t.fit(make_data(8, 8) * 12)  # one batch seen 12 times, so the loss must fall
    assert t.step == 12
    assert len(hist) == 12
    bad = hist[n_bad - 1]
    assert bad.skipped
    assert bad.recovery == "reduce_lr"
    assert "NaN detected in loss" in bad.issues
    assert all(not m.skipped for i, m in enumerate(hist) if i != n_bad - 1)
    assert math.isfinite(hist[-1].loss)
    assert hist[-1].loss < hist[0].loss
    assert t.monitor.lr_scale == 0.5
    assert hist[n_bad].lr == pytest.approx(
        0.5 * 1e-2 * lr_multiplier(n_bad, warmup_steps=0, max_steps=12)
    )
    ckpts = _assert_checkpoints_sound(tmp_path)
    assert ckpts[-1].name == "step_00000012"
    records = MetricsLogger.read(tmp_path / "metrics.jsonl")
    assert [r["recovery"] for r in records if r["recovery"]] == ["reduce_lr"]


def test_persistent_nan_ends_with_clear_runtime_error(tmp_path):
    calls = {"n": 0}

    def broken(model, batch):
        calls["n"] += 1
        loss = mse(model, batch)
        return loss * float("nan") if calls["n"] > 4 else loss

    t = Trainer(
        fresh_model(),
        cfg(max_steps=20, lr=1e-2, checkpoint_dir=str(tmp_path), save_every=2),
        loss_fn=broken,
    )
    with pytest.raises(
        RuntimeError,
        match=r"all recovery strategies exhausted \(reduce_lr, rollback\).*NaN detected in loss",
    ):
        t.fit(make_data(8 * 20, 8))
    assert [e["strategy"] for e in t.monitor.events] == ["reduce_lr", "reduce_lr", "rollback"]
    ckpts = _assert_checkpoints_sound(tmp_path)
    # steps 5-7 applied no update: the step-6 checkpoint holds exactly the step-4 weights
    assert [p.name for p in ckpts] == ["step_00000002", "step_00000004", "step_00000006"]
    w4, w6 = TinyNet(), TinyNet()
    load_checkpoint(ckpts[1], w4)
    load_checkpoint(ckpts[2], w6)
    assert all(torch.equal(a, b) for a, b in zip(w4.parameters(), w6.parameters()))
    records = MetricsLogger.read(tmp_path / "metrics.jsonl")
    assert records[-1]["recovery"] == "exhausted"


def test_gradient_clipping_bounds_the_update():
    model = fresh_model()
    before = [p.detach().clone() for p in model.parameters()]
    t = Trainer(
        model,
        cfg(max_steps=1, lr=1.0, grad_clip=0.01),
        loss_fn=mse,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
    )
    (m,) = t.fit(make_data(8, 8))
    delta = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    assert m.grad_norm > 0.01
    assert delta.norm() <= 0.01 + 1e-6


def test_lr_schedule_is_applied():
    t = Trainer(
        fresh_model(), cfg(max_steps=10, lr=1e-2, warmup_steps=3, min_lr_ratio=0.1), loss_fn=mse
    )
    hist = t.fit(make_data(80, 8))
    want = [
        1e-2 * lr_multiplier(i, warmup_steps=3, max_steps=10, min_lr_ratio=0.1) for i in range(10)
    ]
    assert [m.lr for m in hist] == pytest.approx(want)
    assert want[0] == pytest.approx(1e-2 / 3)
    assert want[2] == pytest.approx(1e-2)
    assert want[-1] == pytest.approx(1e-3)


def test_bf16_autocast_on_cpu_trains():
    t = Trainer(fresh_model(), cfg(max_steps=15, lr=1e-2, precision="bf16"), loss_fn=mse)
    hist = t.fit(make_data(8, 8) * 15)  # one batch, seen 15 times: the loss must fall
    assert all(math.isfinite(m.loss) for m in hist)
    assert hist[-1].loss < hist[0].loss


def test_callable_data_and_default_loss_and_metrics_file(tmp_path):
    class WithLoss(TinyNet):
        def forward(self, x, y):
            return {"loss": F.mse_loss(super().forward(x), y)}

    data = make_data(64, 8)
    path = tmp_path / "m.jsonl"
    t = Trainer(WithLoss(), cfg(max_steps=6, log_every=2, metrics_path=str(path)))
    hist = t.fit(lambda i: data[i % len(data)])
    t.close()
    assert len(hist) == 6
    assert [r["step"] for r in MetricsLogger.read(path)] == [2, 4, 6]


def test_one_shot_iterator_stops_when_data_runs_out():
    t = Trainer(fresh_model(), cfg(max_steps=50), loss_fn=mse)
    hist = t.fit(iter(make_data(40, 8)))
    assert len(hist) == 5
    assert t.step == 5


def test_bad_config_and_arguments():
    with pytest.raises(ValueError, match=r"max_steps must be an int >= 1, got 0"):
        TrainerConfig(max_steps=0)
    with pytest.raises(ValueError, match=r"precision must be one of .*got 'fp8'"):
        TrainerConfig(precision="fp8")
    with pytest.raises(ValueError, match=r"schedule must be one of"):
        TrainerConfig(schedule="linear")
    with pytest.raises(ValueError, match=r"precision='fp16' needs a CUDA device"):
        Trainer(fresh_model(), cfg(precision="fp16", device="cpu"))
    with pytest.raises(TypeError, match=r"model must be an nn.Module, got str"):
        Trainer("model")
    model = fresh_model()
    with pytest.raises(ValueError, match=r"set them on the optimizer you pass"):
        Trainer(model, cfg(weight_decay=0.1), optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    t = Trainer(fresh_model(), cfg(), loss_fn=lambda m, b: m(b[0]))  # not a scalar
    with pytest.raises(
        TypeError, match=r"loss_fn must return a scalar tensor, got Tensor \(8, 1\)"
    ):
        t.train_step(make_data(8, 8))
    assert all(p.grad is None for p in t.module.parameters())  # a failed step leaves no gradients
    with pytest.raises(ValueError, match=r"needs config.checkpoint_dir"):
        t.save_checkpoint()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda_trains_and_resumes(tmp_path, precision):
    data = make_data(8, 8) * 20
    conf = dict(
        max_steps=20,
        lr=1e-2,
        precision=precision,
        device="cuda",
        checkpoint_dir=str(tmp_path),
        save_every=10,
    )
    t = Trainer(fresh_model(), cfg(**conf), loss_fn=mse)
    hist = t.fit(data)
    assert all(math.isfinite(m.loss) for m in hist)
    assert hist[-1].loss < hist[0].loss
    assert hist[-1].peak_memory_mb is not None
    if precision == "fp16":
        assert hist[-1].loss_scale is not None
        assert t.scaler is not None
    t2 = Trainer(fresh_model(seed=3), cfg(**conf), loss_fn=mse)
    assert t2.resume()
    assert t2.step == 20
    if precision == "fp16":
        assert t2.scaler.get_scale() == t.scaler.get_scale()
    for a, b in zip(t.module.parameters(), t2.module.parameters()):
        assert torch.equal(a, b)
