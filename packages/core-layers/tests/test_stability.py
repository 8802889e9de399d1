import pytest
import torch
from torch import nn

from seedbed.core_layers import NumericalStabilityMonitor


def _setup(**kw):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, opt, NumericalStabilityMonitor(model, opt, **kw)


def _set_grads(model, value):
    for p in model.parameters():
        p.grad = torch.full_like(p, value)


def test_check_tensors_counts_nan_and_inf():
    _, _, mon = _setup()
    ok, issues = mon.check_tensors(
        [torch.tensor([1.0, float("nan")]), torch.tensor(float("inf")), torch.ones(2)],
        ["a", "b", "c"],
    )
    assert not ok
    assert issues == ["NaN detected in a", "Inf detected in b"]
    assert mon.nan_count == 1
    assert mon.inf_count == 1
    assert mon.check_tensors([torch.ones(3)], ["x"]) == (True, [])
    with pytest.raises(ValueError, match=r"one name per tensor, got 1 tensors and 2 names"):
        mon.check_tensors([torch.ones(1)], ["a", "b"])


def test_check_gradients_names_bad_parameters_and_thresholds():
    model, _, mon = _setup(grad_norm_threshold=10.0)
    _set_grads(model, 0.1)
    assert mon.check_gradients() == (True, [])
    model[1].weight.grad[0, 0] = float("nan")
    ok, issues = mon.check_gradients()
    assert not ok
    assert issues == ["NaN gradient in 1.weight"]
    _set_grads(model, 100.0)
    ok, issues = mon.check_gradients()
    assert not ok
    assert "exceeds threshold 10" in issues[0]
    assert mon.large_grad_count == 1


def test_gradient_spike_detection_after_warmup():
    model, _, mon = _setup(spike_factor=5.0, spike_warmup=3)
    for _ in range(3):
        _set_grads(model, 0.01)
        assert mon.check_gradients()[0]
        mon.record_stable()
    _set_grads(model, 0.2)  # 20x the running mean
    ok, issues = mon.check_gradients()
    assert not ok
    assert "spike" in issues[0]
    assert mon.spike_count == 1


def test_recovery_order_then_runtime_error():
    model, opt, mon = _setup(max_lr_reductions=2, max_rollbacks=1)
    applied = []
    mon.register_strategy(lambda: applied.append("x") or len(applied) <= 1, name="model_clamp")
    mon.snapshot()
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    order = [mon.recover(["boom"]) for _ in range(4)]
    assert order == ["reduce_lr", "reduce_lr", "rollback", "model_clamp"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    assert mon.lr_scale == 0.25
    assert torch.equal(model[0].weight, w0)  # rolled back to the snapshot
    with pytest.raises(
        RuntimeError, match=r"exhausted \(reduce_lr, rollback, model_clamp\).*last issues: boom"
    ):
        mon.recover(["boom"])


def test_rollback_without_snapshot_is_skipped():
    _, _, mon = _setup(max_lr_reductions=0)
    with pytest.raises(RuntimeError, match=r"exhausted"):
        mon.recover()


def test_budgets_renew_after_patience():
    _, _, mon = _setup(max_lr_reductions=1, max_rollbacks=0, patience=3)
    assert mon.recover() == "reduce_lr"
    for _ in range(3):
        mon.record_stable(1.0)
    assert mon.recover() == "reduce_lr"  # renewed
    with pytest.raises(RuntimeError):
        mon.recover()


def test_state_dict_round_trip():
    _, _, mon = _setup()
    mon.recover()
    mon.record_stable(2.0)
    state = mon.state_dict()
    _, _, other = _setup()
    other.load_state_dict(state)
    assert other.state_dict() == state
    assert other.lr_scale == 0.5


def test_bad_arguments():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model must be an nn.Module, got int"):
        NumericalStabilityMonitor(3)
    with pytest.raises(ValueError, match=r"lr_factor must be in \(0, 1\), got 2"):
        NumericalStabilityMonitor(model, lr_factor=2)
    with pytest.raises(TypeError, match=r"strategy must be callable"):
        NumericalStabilityMonitor(model).register_strategy(5)
