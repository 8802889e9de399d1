import math

import pytest
import torch

from seedbed.core_layers import BenchmarkResults, MetricsLogger, TrainingMetrics


def test_metrics_logger_round_trip(tmp_path):
    path = tmp_path / "sub" / "m.jsonl"
    logger = MetricsLogger(path)
    logger.log(TrainingMetrics(step=1, loss=0.5, lr=1e-3, grad_norm=float("nan")))
    logger.log({"step": 2, "loss": 0.25})
    logger.close()
    rows = MetricsLogger.read(path)
    assert rows[0]["step"] == 1
    assert math.isnan(rows[0]["grad_norm"])
    assert rows[1] == {"step": 2, "loss": 0.25}
    with pytest.raises(ValueError, match=r"closed"):
        logger.log({"a": 1})


def test_benchmark_results_prints_only_measured_fields(capsys):
    BenchmarkResults("tiny", final_loss=1.2345, speedup_vs_baseline=3.0).print_summary()
    out = capsys.readouterr().out
    assert "tiny" in out
    assert "final loss" in out
    assert "1.2345" in out
    assert "speedup vs baseline" in out
    for absent in ("perplexity", "parameters", "tokens/s", "memory", "time"):
        assert absent not in out
    assert "(nothing measured)" in BenchmarkResults("empty").summary()


def test_benchmark_results_from_training():
    hist = [
        TrainingMetrics(step=1, loss=2.0, lr=1.0, step_time_ms=500.0),
        TrainingMetrics(step=2, loss=1.0, lr=1.0, step_time_ms=250.0),
        TrainingMetrics(step=3, loss=float("nan"), lr=1.0, step_time_ms=250.0, skipped=True),
    ]
    model = torch.nn.Linear(3, 2)
    res = BenchmarkResults.from_training(
        "run", hist, model, perplexity=True, baseline_perplexity=math.e * 2
    )
    assert res.final_loss == 1.0
    assert res.final_perplexity == pytest.approx(math.e)
    assert res.training_time_s == pytest.approx(1.0)
    assert res.num_parameters == 8
    assert res.model_size_mb == pytest.approx(32 / 2**20)
    assert res.perplexity_ratio == pytest.approx(0.5)
    assert "perplexity ratio" in res.summary()
    assert (
        BenchmarkResults.from_training("r", hist).final_perplexity is None
    )  # not a CE loss unless said


def test_benchmark_results_rejects_non_numbers():
    with pytest.raises(TypeError, match=r"final_loss must be a number or None, got str"):
        BenchmarkResults("x", final_loss="low")
