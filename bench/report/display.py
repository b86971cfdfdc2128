"""The summary made readable: formatted cells ("98.1 ± 0.4%"), readable headers, and the footnote."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from bench.report.rows import CONFIG

KEYS = ["dataset", "model", "method", "preset", "extraction"]
COLUMNS = {  # figure -> (header, kind); kinds: pct (share shown as %), pts, num, ratio, int
    "test_acc": ("model acc", "pct"),
    "retention": ("retention", "pct"),
    "class_retention": ("class retention", "pct"),
    "cohesion": ("cohesion", "num"),
    "coupling": ("coupling", "num"),
    "module_acc": ("module acc", "pct"),
    "standard_acc": ("std acc", "pct"),
    "acc_delta": ("Δ pts", "pts"),
    "module_acc_before_finetune": ("acc before FT", "pct"),
    "weight_retention": ("weights", "pct"),
    "weight_retention_linear": ("Linear weights", "pct"),
    "flops_ratio": ("FLOPs", "pct"),
    "weight_retention_merged": ("merged weights", "pct"),
    "flops_ratio_merged": ("merged FLOPs", "pct"),
    "flops_ratio_dense": ("dense FLOPs", "pct"),
    "latency_ratio": ("latency", "ratio"),
    "latency_ratio_b1": ("latency b1", "ratio"),
    "train_seconds": ("train s", "int"),
    "cost_ratio": ("cost", "ratio"),
    "lead_random": ("vs random", "pts"),
    "random_module_acc": ("random acc", "pct"),
    "random_module_acc_before_finetune": ("random before FT", "pct"),
    "lead_magnitude": ("vs magnitude", "pts"),
    "magnitude_module_acc": ("magnitude acc", "pct"),
    "magnitude_module_acc_before_finetune": ("magnitude before FT", "pct"),
    "patch_acc_replace": ("patched acc, replace", "pct"),  # --scenario patch: --compare only (own table)
    "patch_f1_replace": ("patched F1, replace", "pct"),
    "patch_acc_calibrate": ("patched acc, calibrate", "pct"),
    "patch_f1_calibrate": ("patched F1, calibrate", "pct"),
}
FLAGS = {"chance": "chance", "below_method": "below method"}
CONTROLS_NOTE = ("vs random, vs magnitude: module acc minus its control's, in points; a control keeps as many units "
                 "in every layer as the module, chosen from the same model at random or by the L1 norm of their "
                 "weights, and is composed, fine-tuned and selected as the module is (– where the control is the "
                 "module itself: the standard model's).")
FOOTNOTE = ("module acc: reused module on its task; std acc: standard model, logits restricted to the task; "
            "weights, FLOPs, latency: reused module / standard model; retention: units kept (union over the "
            "task's classes); class retention: units a class module keeps (mean over classes); standard: every "
            "class's module is the whole model, so its retention is 100% and its coupling 1 by definition. "
            "A FLOP is one multiply-add. cost: the method's training, module masks (activity pass, search) and tasks "
            "composed (SeaM: its search per task) over "
            "its standard model's training on the same device; a post-training method (cnnsplitter, gradsplitter, "
            "seam) adds its search to the standard model it starts from.")

SPARSITY_NOTE = ("sparsity 'unstructured' (SeaM): the module keeps the model's shape with single weights zeroed; "
                 "its weights and FLOPs count the kept weights and their multiply-adds only, a saving that needs "
                 "sparse kernels; dense hardware runs it at its dense FLOPs and latency, so do not compare its "
                 "FLOPs with a sliced module's latency.")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_value(mean: Any, std: Any, kind: str) -> str:
    """One figure as shown: ``98.1%``, or ``98.1 ± 0.4%`` when there is a spread over seeds."""
    if _missing(mean):
        return "–"
    scale, spec, unit, sign = {"pct": (100, ".1f", "%", ""), "pts": (1, ".2f", "", "+"),
                               "ratio": (1, ".2f", "x", ""), "int": (1, ".0f", "", "")}.get(kind, (1, ".3f", "", ""))
    shown = f"{mean * scale:{sign}{spec}}"
    if not _missing(std):
        shown += f" ± {std * scale:{spec}}"
    return shown + unit


def config_columns(summary: pd.DataFrame) -> list[str]:
    """The swept configuration values shown as columns (model and data set arguments are in their labels)."""
    return [c for c in summary.columns if c.startswith(CONFIG) and not c.startswith((f"{CONFIG}model.",
                                                                                     f"{CONFIG}dataset."))]


def display_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with formatted cells and readable headers (what md/html/latex/terminal show)."""
    keys = [k for k in KEYS if k in summary and summary[k].notna().any()]
    shown = summary[keys].fillna("–").copy()
    for column in config_columns(summary):
        shown[column.removeprefix(CONFIG)] = summary[column].map(lambda v: "–" if _missing(v) else str(v))
    if _ambiguous(shown, summary):
        shown["config"] = summary["config_key"]
    shown["threshold"] = summary["threshold"].map(lambda t: f"{t:g}")
    for figure, (header, kind) in COLUMNS.items():
        if f"{figure}_mean" in summary:
            shown[header] = [format_value(m, s, kind) for m, s in zip(summary[f"{figure}_mean"],
                                                                      summary[f"{figure}_std"], strict=True)]
    if "sparsity" in summary and summary["sparsity"].notna().any():
        shown["sparsity"] = summary["sparsity"].fillna("–")
    shown["n"] = summary["n"]
    if summary["baseline_flag"].notna().any():
        shown["baseline"] = summary["baseline_flag"].map(_flag_text)
    if summary["error"].notna().any():
        shown["error"] = summary["error"].fillna("")
    return shown


def _ambiguous(shown: pd.DataFrame, summary: pd.DataFrame) -> bool:
    """Whether two configurations would look alike without their config key."""
    visible = pd.concat([shown, summary["threshold"]], axis=1)
    return bool(visible.duplicated().any())


def _flag_text(value: Any) -> str:
    return "" if _missing(value) else ", ".join(FLAGS.get(f, f) for f in str(value).split(","))


def row_label(row: pd.Series) -> str:
    """``digits / simcnn / mwt (epochs=2)``: one summary row named in a sentence."""
    extra = [f"{c.removeprefix(CONFIG)}={row[c]}" for c in row.index
             if c.startswith(CONFIG) and not _missing(row[c])]
    return f"{row['dataset']} / {row['model']} / {row['method']}" + (f" ({', '.join(extra)})" if extra else "")


def footnote(summary: pd.DataFrame) -> str:
    """How many seeds stand behind the numbers, what the columns mean, and every flagged baseline."""
    parts = [_seeds_sentence(summary), FOOTNOTE]
    if "sparsity" in summary and summary["sparsity"].notna().any():
        parts.append(SPARSITY_NOTE)
    if any(column.startswith("lead_") for column in summary):
        parts.append(CONTROLS_NOTE)
    if "extraction" in summary and summary["extraction"].notna().any():
        parts.append("extraction: how modules are cut from a masked ViT (the method's 'extraction' setting).")
    flagged = summary[summary["baseline_flag"].notna()]
    for message, group in flagged.groupby("baseline_message", sort=False):
        rows = "; ".join(f"{row_label(row)} ({row['baseline_flagged']} of {row['seeds']} seeds)"
                         for _, row in group.iterrows())
        flag = _flag_text(group["baseline_flag"].iloc[0])
        parts.append(f"Baseline flag '{flag}': {message}, for {rows}. Their std acc, Δ and ratios compare against "
                     "a standard model that did not learn.")
    kept = summary[summary["last_error"].notna()]
    if not kept.empty:
        rows = "; ".join(row_label(row) for _, row in kept.iterrows())
        parts.append(f"Figures kept from an earlier run after a re-run failed (bench show gives the error): {rows}.")
    return " ".join(parts)


def _seeds_sentence(summary: pd.DataFrame) -> str:
    counts = summary.loc[summary["n"] > 0, "n"]
    if counts.empty:
        return "No row has figures yet."
    low, high = int(counts.min()), int(counts.max())
    if high == 1:
        return ("One seed per row (mean over its tasks): no spread is shown; more seeds (--seeds 0,1,2) give "
                "mean ± standard deviation.")
    seeds = f"{low}" if low == high else f"{low} to {high}"
    return (f"Mean ± standard deviation over {seeds} seeds per row (column n; each seed's figures are first "
            "averaged over its tasks).")
