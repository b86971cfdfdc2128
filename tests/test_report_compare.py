"""``bench report --compare A,B``: paired differences with a seeded bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest
from record_factory import make_record, task

from bench.errors import UsageError
from bench.report.compare import bootstrap_interval, compare_methods, display_comparison
from bench.report.tables import task_rows


def seeds(method: str, acc: float, weights: float, n: int = 3, flip: bool = False, **kwargs) -> list[dict]:
    """``n`` seeds of ``method`` whose module accuracy wobbles by ±1 point around ``acc`` (two tasks a seed)."""
    wobble = [(-w if flip else w) for w in (0.0, 0.01, -0.01, 0.005, -0.005)[:n]]
    return [make_record(method, seed, tasks=[task([0, 1], acc + w, weights), task([2, 3], acc - w, weights)],
                        **kwargs) for seed, w in enumerate(wobble)]


def by_figure(frame) -> dict:
    return frame.set_index("figure").to_dict("index")


def test_a_real_difference_has_an_interval_that_excludes_zero():
    rows = task_rows(seeds("mwt", 0.95, 0.5) + seeds("nemo", 0.90, 0.3, flip=True))
    result = by_figure(compare_methods(rows, "mwt", "nemo"))
    acc = result["module_acc"]
    assert acc["pairs"] == 6 and acc["mean_diff"] == pytest.approx(0.05)
    assert 0 < acc["ci_low"] < acc["mean_diff"] < acc["ci_high"] and acc["verdict"] == "mwt higher"
    weights = result["weight_retention"]
    assert weights["mean_diff"] == pytest.approx(0.2) and weights["verdict"] == "mwt higher"
    cohesion = result["cohesion"]
    assert cohesion["pairs"] == 3  # a record's own figure is paired once per seed, not once per task
    assert cohesion["verdict"] == "no measurable difference"
    assert result["coupling"]["ci_low"] == result["coupling"]["ci_high"] == 0
    reverse = by_figure(compare_methods(rows, "nemo", "mwt"))
    assert reverse["module_acc"]["mean_diff"] == pytest.approx(-0.05)
    assert reverse["module_acc"]["verdict"] == "mwt higher"


def test_identical_methods_show_no_measurable_difference():
    rows = task_rows(seeds("mwt", 0.9, 0.5) + seeds("nemo", 0.9, 0.5))
    frame = compare_methods(rows, "mwt", "nemo")
    assert (frame["verdict"] == "no measurable difference").all()
    assert (frame["ci_low"] <= 0).all() and (frame["ci_high"] >= 0).all()


def test_a_noisy_difference_spans_zero():
    noisy = [make_record("nemo", seed, tasks=[task([0, 1], acc)]) for seed, acc in enumerate((0.80, 0.99, 0.85, 0.97))]
    rows = task_rows(seeds("mwt", 0.9, 0.5, n=4) + noisy)
    acc = by_figure(compare_methods(rows, "mwt", "nemo"))["module_acc"]
    assert acc["ci_low"] < 0 < acc["ci_high"] and acc["verdict"] == "no measurable difference"


def test_the_interval_is_deterministic():
    diffs = np.array([0.01, 0.03, -0.02, 0.05, 0.02])
    assert bootstrap_interval(diffs) == bootstrap_interval(diffs.copy())
    rows = task_rows(seeds("mwt", 0.95, 0.5) + seeds("nemo", 0.90, 0.3))
    assert compare_methods(rows, "mwt", "nemo").equals(compare_methods(rows, "mwt", "nemo"))


def test_only_matching_records_pair():
    records = (seeds("mwt", 0.95, 0.5) + seeds("nemo", 0.9, 0.5, n=2)  # seed 2 of mwt has no partner
               + seeds("nemo", 0.5, 0.5, threshold=0.8) + seeds("nemo", 0.5, 0.5, model="vgg16"))
    frame = compare_methods(task_rows(records), "mwt", "nemo")
    assert set(frame["threshold"]) == {0.9} and set(frame["model"]) == {"simcnn:width=0.25"}
    assert by_figure(frame)["module_acc"]["pairs"] == 4


def test_a_sweep_compares_each_configuration_and_matches_shared_settings():
    records = (seeds("mwt", 0.9, 0.5, recipe={"epochs": 2}) + seeds("mwt", 0.9, 0.5, recipe={"epochs": 4})
               + seeds("nemo", 0.9, 0.5, recipe={"epochs": 2}, hparams={"alpha": 0.5})
               + seeds("nemo", 0.9, 0.5, recipe={"epochs": 2}, hparams={"alpha": 1.0}))
    frame = compare_methods(task_rows(records), "mwt", "nemo")
    blocks = set(zip(frame["config_a"], frame["config_b"], strict=True))
    assert blocks == {("epochs=2", "epochs=2, nemo.alpha=0.5"), ("epochs=2", "epochs=2, nemo.alpha=1.0")}
    shown, note = display_comparison(frame, "mwt", "nemo")
    assert {"mwt config", "nemo config", "mwt − nemo", "95% interval"} <= set(shown.columns)
    assert "bootstrap" in note and "10,000 resamples" in note


def test_unknown_method_or_no_pairs_is_one_line():
    rows = task_rows(seeds("mwt", 0.9, 0.5) + seeds("nemo", 0.9, 0.5, dataset="cifar10"))
    with pytest.raises(UsageError, match=r"no records of method 'nemmo' \(methods here: mwt, nemo\)"):
        compare_methods(rows, "mwt", "nemmo")
    with pytest.raises(UsageError, match="no data set, model, seed, task and threshold has records of both"):
        compare_methods(rows, "mwt", "nemo")
    with pytest.raises(UsageError, match="two different methods"):
        compare_methods(rows, "mwt", "mwt")


def test_a_single_pair_has_no_interval():
    rows = task_rows([make_record("mwt", tasks=[task([0, 1], 0.9)]), make_record("nemo", tasks=[task([0, 1], 0.8)])])
    acc = by_figure(compare_methods(rows, "mwt", "nemo"))["module_acc"]
    assert acc["pairs"] == 1 and np.isnan(acc["ci_low"]) and acc["verdict"] == "one pair: no interval"


def test_the_interval_is_the_95_percent_interval_of_the_mean():
    """A case whose interval is known: 400 differences of -1 and +1 (mean 0, standard deviation 1); the bootstrap
    mean is about normal with standard error 1/20, so its 95% interval is ±1.96/20 (a 50% one would be ±0.67/20)."""
    low, high = bootstrap_interval(np.tile([-1.0, 1.0], 200))
    assert low == pytest.approx(-1.96 / 20, rel=0.05) and high == pytest.approx(1.96 / 20, rel=0.05)


def test_the_training_cost_is_compared_once_per_seed():
    from bench.record import training_cost

    rows = task_rows([make_record(method, seed, cost=training_cost(base + seed, 0.0, 10.0, "cpu", "cpu"))
                      for method, base in (("mwt", 15.0), ("nemo", 12.0)) for seed in range(3)])
    cost = by_figure(compare_methods(rows, "mwt", "nemo"))["cost_ratio"]
    assert cost["pairs"] == 3 and cost["mean_diff"] == pytest.approx(0.3) and cost["verdict"] == "mwt higher"
