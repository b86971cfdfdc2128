"""Controls in the reports: the lead column, ``--compare mwt,mwt:random`` and the table of leads with intervals."""

from __future__ import annotations

from io import StringIO

import pandas as pd
import pytest
from record_factory import make_record, task
from rich.console import Console

from bench.errors import UsageError
from bench.report.build import build_report
from bench.report.compare import compare_methods
from bench.report.controls import control_leads
from bench.report.tables import render, summarize, task_rows


def control(acc: float, before: float = 0.5, weights: float = 0.5) -> dict:
    return {"module_acc": acc, "module_acc_before_finetune": before, "finetune_kept": True, "params": 500,
            "weight_retention": weights, "flops_ratio": weights + 0.1}


def records() -> list[dict]:
    """mwt beats its random control by 5 points (±1) and ties its magnitude control (which beats it before
    fine-tuning); standard's controls are the model itself; three seeds, two tasks."""
    out = []
    for seed, wobble in enumerate((0.0, 0.01, -0.01)):
        tasks = [task(classes, 0.95, controls={"random": control(0.90 + wobble + sign * 0.005),
                                               "magnitude": control(0.95, before=0.95)})
                 for classes, sign in (([0, 1], 1), ([2, 3], -1))]
        out.append(make_record("mwt", seed, tasks=tasks))
        same = {**control(0.97, 0.92, 0.5), "same_as_module": True}
        out.append(make_record("standard", seed, tasks=[task([0, 1], 0.97, controls={"random": same}),
                                                          task([2, 3], 0.97, controls={"random": same})]))
    return out


def test_the_lead_over_the_random_control_is_a_column_of_every_format():
    summary = summarize(task_rows(records()))
    table = summary.set_index("method")
    assert table.loc["mwt", "lead_random_mean"] == pytest.approx(5.0)
    assert table.loc["mwt", "lead_magnitude_mean"] == pytest.approx(0.0)
    assert table.loc["mwt", "random_module_acc_mean"] == pytest.approx(0.90)
    assert pd.isna(table.loc["standard", "lead_random_mean"])  # its control is the model itself
    csv = pd.read_csv(StringIO(render(summary, "csv"))).set_index("method")
    assert csv.loc["mwt", "lead_random_mean"] == pytest.approx(5.0)
    for fmt in ("md", "html", "latex"):
        text = render(summary, fmt)
        assert "vs random" in text and "+5.00" in text and "random acc" in text, fmt
        assert "chosen from the same model at random" in text, fmt


def test_compare_a_method_with_its_own_control():
    rows = task_rows(records())
    result = compare_methods(rows, "mwt", "mwt:random").set_index("figure")
    acc = result.loc["module_acc"]
    assert acc["pairs"] == 6 and acc["mean_diff"] == pytest.approx(0.05)
    assert 0 < acc["ci_low"] < acc["ci_high"] and acc["verdict"] == "mwt higher"
    assert result.loc["module_acc_before_finetune", "mean_diff"] == pytest.approx(0.40)
    assert result.loc["weight_retention", "mean_diff"] == pytest.approx(0.0)  # the same size
    assert not {"test_acc", "cohesion", "coupling", "cost_ratio", "latency_ratio"} & set(result.index)
    text = build_report(records(), None, "md", compare="mwt,mwt:random").content
    assert "mwt − mwt:random" in text and "mwt higher" in text


@pytest.mark.parametrize("pair, message", [
    ("mwt,mwt:randon", "unknown control 'randon'"),
    ("nemo,nemo:random", "no records of nemo with a random control (bench run --controls random)"),
])
def test_a_control_that_is_not_there_is_one_line(pair, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_methods(task_rows(records()), *pair.split(","))


def test_the_leads_table_says_which_methods_beat_their_controls():
    rows = task_rows(records())
    leads = control_leads(rows).set_index(["control", "figure"])
    assert set(leads["method"]) == {"mwt"}  # the standard model is its own control: no row
    assert leads.loc[("random", "module_acc"), "verdict"] == "mwt higher"
    assert leads.loc[("magnitude", "module_acc"), "verdict"] == "no measurable difference"
    assert leads.loc[("magnitude", "module_acc_before_finetune"), "verdict"] == "mwt:magnitude higher"
    console = Console(file=StringIO(), width=300)
    console.print(build_report(records(), None, "table").content)
    shown = console.file.getvalue()
    assert "lead over controls" in shown and "beats random units" in shown and "loses to magnitude units" in shown
    md = build_report(records(), None, "md").content
    assert "95% interval" in md and "+5.00" in md
    alone = Console(file=StringIO(), width=300)
    alone.print(build_report([make_record("mwt")], None, "table").content)
    assert "lead over controls" not in alone.file.getvalue()
