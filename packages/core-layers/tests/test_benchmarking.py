from __future__ import annotations

import math

import pytest

from seedbed.core_layers import Metric, Series, time_call, timed_ratio


def test_metric_pass_fail_both_directions():
    assert Metric("a", 2.0, target=1.0).passed is True
    assert Metric("a", 0.5, target=1.0).passed is False
    assert Metric("a", 0.5, target=1.0, higher_is_better=False).passed is True
    assert Metric("a", math.nan, target=1.0).passed is False
    assert Metric("a", 1.0).passed is None


def test_metric_as_dict_is_plain():
    d = Metric("a", 2, "x", 1.0, series=[Series([1, 2], [3, 4])]).as_dict()
    assert d["value"] == 2.0
    assert d["passed"] is True
    assert d["series"][0]["x"] == [1, 2]


def test_bad_inputs():
    with pytest.raises(TypeError, match="number"):
        Metric("a", "fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="len"):
        Series([1, 2], [1])
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)


def test_timed_ratio_orders_work():
    def slow() -> None:
        sum(range(200_000))

    def fast() -> None:
        sum(range(2_000))

    _, _, speedup = timed_ratio(slow, fast, repeats=3)
    assert speedup > 1.0


def test_timed_ratio_warms_each_callable_right_before_its_timed_call():
    calls: list[str] = []
    timed_ratio(lambda: calls.append("b"), lambda: calls.append("c"), repeats=2, warmup=1)
    assert calls == ["b", "b", "c", "c"] * 2
    calls.clear()
    timed_ratio(lambda: calls.append("b"), lambda: calls.append("c"), repeats=2, warmup=0)
    assert calls == ["b", "c"] * 2


def test_garbage_collector_is_off_while_timing_and_restored():
    import gc

    seen: list[bool] = []
    assert gc.isenabled()
    time_call(lambda: seen.append(gc.isenabled()), repeats=2, warmup=0)
    timed_ratio(lambda: seen.append(gc.isenabled()), lambda: None, repeats=2, warmup=0)
    assert seen == [False] * 4
    assert gc.isenabled()

    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        timed_ratio(boom, lambda: None, repeats=1, warmup=0)
    assert gc.isenabled()


@pytest.mark.parametrize("kw", [{"repeats": 0}, {"warmup": -1}], ids=["repeats0", "warmup-1"])
def test_timing_counts_are_checked(kw: dict[str, int]) -> None:
    for fn in (
        lambda: time_call(lambda: None, **kw),
        lambda: timed_ratio(lambda: None, lambda: None, **kw),
    ):
        with pytest.raises(ValueError, match=next(iter(kw))):
            fn()
