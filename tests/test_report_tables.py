"""The comparison table from records built here: one row per configuration, mean ± std over seeds, flags."""

from __future__ import annotations

import json
import os
from io import StringIO

import pandas as pd
import pytest
from record_factory import make_record, task, write_records
from rich.console import Console

from bench.record import RECORD_SCHEMA
from bench.report.load import load_records
from bench.report.tables import render, rich_table, summarize, task_rows

FORMATS = ("md", "html", "latex")


def terminal(summary: pd.DataFrame) -> str:
    console = Console(file=StringIO(), width=400)
    console.print(rich_table(summary, "modbench"))
    return console.file.getvalue()


def every_format(summary: pd.DataFrame) -> dict[str, str]:
    return {**{fmt: render(summary, fmt) for fmt in FORMATS}, "table": terminal(summary)}


def raw(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.read_csv(StringIO(render(summary, "csv")))


@pytest.fixture
def three_seeds() -> list[dict]:
    """mwt and standard over seeds 0-2, two tasks a seed; mwt's per-seed module accuracy is 0.85, 0.86, 0.87."""
    records = []
    for seed in range(3):
        records.append(make_record("mwt", seed, tasks=[task([0, 1], 0.90 + seed / 100),
                                                       task([2, 3], 0.80 + seed / 100)]))
        records.append(make_record("standard", seed))
    return records


def test_several_seeds_give_mean_std_and_n(three_seeds):
    summary = summarize(task_rows(three_seeds))
    mwt = raw(summary).set_index("method").loc["mwt"]
    assert mwt["n"] == 3 and mwt["seeds"] == 3
    assert mwt["module_acc_mean"] == pytest.approx(0.86)
    assert mwt["module_acc_std"] == pytest.approx(0.01)  # over the seeds' task means, not over the six tasks
    assert mwt["cohesion_std"] == pytest.approx(0.0)
    shown = every_format(summary)
    assert "86.0 ± 1.0%" in shown["md"] and "86.0 ± 1.0%" in shown["html"] and "86.0 ± 1.0%" in shown["table"]
    assert r"86.0 $\pm$ 1.0\%" in shown["latex"]
    for text in shown.values():
        assert "over 3 seeds per row" in text


def test_one_seed_shows_no_spread():
    summary = summarize(task_rows([make_record("mwt"), make_record("standard")]))
    for fmt, text in every_format(summary).items():
        assert "±" not in text.replace("mean ± standard", ""), fmt
        assert "One seed per row" in text.replace("\n", " ") or fmt == "latex"
    assert raw(summary)["module_acc_std"].isna().all()


def test_rows_never_merge_configurations_and_show_the_swept_values():
    records = [make_record("nemo", seed, hparams={"alpha": alpha}, recipe={"epochs": epochs},
                           tasks=[task([0, 1], 0.9 + alpha / 10)])
               for seed in (0, 1) for alpha in (1.0, 0.5) for epochs in (2, 4)]
    records.append(make_record("mwt"))
    records.append(make_record("mwt", 1, recipe={"epochs": 3}))
    table = raw(summarize(task_rows(records)))
    nemo = table[table["method"] == "nemo"]
    assert len(nemo) == 4 and (nemo["n"] == 2).all()
    assert list(zip(nemo["epochs"], nemo["nemo.alpha"], strict=True)) == [(2, 0.5), (2, 1.0), (4, 0.5), (4, 1.0)]
    assert nemo["module_acc_mean"].tolist() == pytest.approx([0.95, 1.0, 0.95, 1.0])
    mwt = table[table["method"] == "mwt"]
    assert mwt["epochs"].tolist() == [2, 3] and mwt["n"].tolist() == [1, 1]
    assert mwt["nemo.alpha"].isna().all()
    for fmt, text in every_format(summarize(task_rows(records))).items():
        assert "nemo.alpha" in text and "epochs" in text, fmt


def test_configurations_that_look_alike_are_told_apart_by_their_key():
    records = [make_record("mwt"), make_record("mwt", config_key="aaaaaaaaaaaa")]
    text = render(summarize(task_rows(records)), "md")
    assert "config" in text.splitlines()[0] and "aaaaaaaaaaaa" in text


def test_a_failed_baseline_is_flagged_in_every_format():
    records = [make_record("standard", test_acc=0.11), make_record("mwt", standard_test_acc=0.11),
               make_record("nemo", standard_test_acc=0.8)]
    summary = summarize(task_rows(records))
    table = raw(summary).set_index("method")
    assert table.loc["standard", "baseline_flag"] == "chance" and table.loc["mwt", "baseline_flag"] == "chance"
    assert table.loc["nemo", "baseline_flag"] == "below_method" and table.loc["nemo", "baseline_flagged"] == 1
    for fmt, text in every_format(summary).items():
        flat = " ".join(text.split())
        assert "baseline" in text and "below method" in text, fmt
        if fmt != "latex":
            assert "near chance (10.0% for 10 classes)" in flat and "digits / simcnn:width=0.25 / mwt" in flat, fmt
    assert json.loads(render(summary, "json"))[0]["baseline_message"]


def test_schema1_records_render_with_the_baseline_their_standard_record_implies(tmp_path):
    write_records(tmp_path, [make_record("standard", schema=1, test_acc=0.5), make_record("mwt", schema=1),
                             make_record("nemo", schema=1, test_acc=0.55)])
    loaded = load_records(tmp_path)
    assert not loaded.skipped and [r["schema"] for r in loaded.records] == [RECORD_SCHEMA] * 3
    table = raw(summarize(task_rows(loaded.records))).set_index("method")
    assert table.loc["mwt", "baseline_flag"] == "below_method"
    assert pd.isna(table.loc["nemo", "baseline_flag"]) and pd.isna(table.loc["standard", "baseline_flag"])


def test_rows_name_their_preset_and_the_vit_extraction_mode():
    records = [make_record("nemo", model="vit_s", family="vit", hparams={"extraction": "paper"}),
               make_record("standard", model="vit_s", family="vit"), make_record("nemo"),
               make_record("mwt", preset="paper")]
    table = raw(summarize(task_rows(records)))
    rows = {(m, model): (p, e) for m, model, p, e in zip(table["method"], table["model"], table["preset"],
                                                         table["extraction"], strict=True)}
    assert rows[("nemo", "vit_s:width=0.25")] == ("smoke", "paper")
    assert pd.isna(rows[("standard", "vit_s:width=0.25")][1]) and pd.isna(rows[("nemo", "simcnn:width=0.25")][1])
    assert rows[("mwt", "simcnn:width=0.25")][0] == "paper"
    for fmt, text in every_format(summarize(task_rows(records))).items():
        assert "extraction" in text and "paper" in text and "smoke" in text, fmt


def test_errors_and_kept_figures_after_a_failed_rerun():
    records = [make_record("mwt"), make_record("nemo", error="RuntimeError: out of memory"),
               make_record("standard", last_error={"message": "killed", "when": "2026-01-02T00:00:00+00:00"})]
    summary = summarize(task_rows(records))
    table = raw(summary).set_index("method")
    assert table.loc["nemo", "error"] == "RuntimeError: out of memory" and table.loc["nemo", "n"] == 0
    assert table.loc["standard", "last_error"] == "killed" and table.loc["standard", "n"] == 1
    md = render(summary, "md")
    assert "RuntimeError: out of memory" in md and "after a re-run failed" in md
    assert "1 to 1" not in md and "One seed per row" in md


def test_seed_counts_that_differ_between_rows_are_said():
    records = [make_record("mwt", seed) for seed in range(3)] + [make_record("standard")]
    assert "over 1 to 3 seeds per row" in render(summarize(task_rows(records)), "md")


def test_latex_escapes_what_latex_would_misread():
    text = render(summarize(task_rows([make_record("mwt", model="my_net", model_args={})])), "latex")
    assert r"my\_net" in text and "\\begin{tabular}" in text and r"\%" in text


def test_only_failed_cells_still_render():
    summary = summarize(task_rows([make_record("mwt", error="RuntimeError: boom"), make_record("nemo", error="x")]))
    for fmt, text in every_format(summary).items():
        assert "RuntimeError: boom" in text and "No row has figures yet" in " ".join(text.split()), fmt
    assert raw(summary)["n"].tolist() == [0, 0]


def test_a_swept_precision_is_one_column():
    summary = summarize(task_rows([make_record("mwt"), make_record("mwt", precision="bf16")]))
    table = raw(summary)
    assert list(table.columns).count("precision") == 1 and table["precision"].tolist() == ["bf16", "fp32"]
    assert "precision" in render(summary, "md").splitlines()[0]


def test_two_records_of_one_configuration_seed_and_threshold_count_once_the_newest(tmp_path):
    old = make_record("mwt", tasks=[task([0, 1], 0.5)])
    new = make_record("mwt", tasks=[task([0, 1], 0.9)], run_id=old["run_id"] + "-after-an-upgrade")
    other_seed = make_record("mwt", seed=1, tasks=[task([0, 1], 0.7)])
    old_path, new_path, _ = write_records(tmp_path, [old, new, other_seed])
    os.utime(old_path, (1_000_000, 1_000_000))
    loaded = load_records(tmp_path)
    assert sorted(t["module_acc"] for r in loaded.records for t in r["tasks"]) == [0.7, 0.9]
    assert loaded.skipped == [f"{old_path}: an older record of the configuration, seed and threshold of {new_path}"]
    table = raw(summarize(task_rows(loaded.records))).set_index("method")
    assert table.loc["mwt", "n"] == 2 and abs(table.loc["mwt", "module_acc_mean"] - 0.8) < 1e-9


def test_the_training_cost_is_a_column_in_every_format():
    from bench.record import training_cost

    records = [make_record("standard", seed, cost=training_cost(10.0, 0.5, 10.0, "cpu", "cpu")) for seed in (0, 1)]
    records += [make_record("mwt", seed, cost=training_cost(12.0 + 2 * seed, 1.0, 10.0, "cpu", "cpu"))
                for seed in (0, 1)]
    records.append(make_record("nemo", cost=training_cost(12.0, 1.0, 10.0, "NVIDIA H100", "cpu")))  # not comparable
    summary = summarize(task_rows(records))
    costs = raw(summary).set_index("method")["cost_ratio_mean"]
    assert costs["mwt"] == pytest.approx(1.4) and costs["standard"] == pytest.approx(1.05)
    assert pd.isna(costs["nemo"])
    assert json.loads(render(summary, "json"))[0]["cost_ratio_mean"] is not None
    for fmt, text in every_format(summary).items():
        assert "cost" in text and "1.40 ± 0.14x" in text.replace(r"$\pm$", "±"), fmt
