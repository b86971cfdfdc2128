"""The table of modules composed across models: the composed classifier against its single models.

One row per ``composition.json``: which models and seeds it drew from, the composed classifier's
test accuracy, the best and the mean of its members' own test accuracy, and the best of its
members' own modules composed alone (the same composition without choosing across models).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable

import pandas as pd

from bench.record import Composition
from bench.report.display import format_value
from bench.report.rows import label

COLUMNS = {  # figure -> (header, kind), as bench.report.display.COLUMNS
    "composed_acc": ("composed acc", "pct"),
    "best_model_acc": ("best model", "pct"),
    "mean_model_acc": ("mean model", "pct"),
    "gain": ("Δ best pts", "pts"),
    "best_own_acc": ("best own modules", "pct"),
}
NOTE = ("Modules composed across models (GradSplitter's 'more accurate model'): per class, the module of the member "
        "whose logit of the class ranks the class highest on the validation images (ROC AUC), composed into one "
        "classifier (each vote, the module's logit of its class, standardised by its mean and deviation on the "
        "validation images). best / mean "
        "model: the members' trained models on the test images; Δ best: composed − best model; best own modules: the "
        "best member's own modules composed the same way; from: members whose modules were chosen, and for how many "
        "classes.")


def _member_label(composition: Composition, index: int) -> str:
    """``seed 1``, or ``rescnn seed 1`` when the composition draws from several models."""
    models = [label(m["model"], m["model_args"]) for m in composition["members"]]
    seed = f"seed {composition['members'][index]['seed']}"
    return f"{models[index]} {seed}" if len(set(models)) > 1 else seed


def _swept(compositions: list[Composition]) -> set[str]:
    """The settings whose values differ between compositions (the others say nothing about a row)."""
    keys = {key for c in compositions for key in c["settings"]}
    return {key for key in keys if len({c["settings"].get(key) for c in compositions}) > 1}


def composition_frame(compositions: Iterable[Composition]) -> pd.DataFrame:
    """One row per composition with raw numbers (what csv and json carry); ``settings`` holds the swept ones."""
    compositions = list(compositions)
    swept = _swept(compositions)
    rows = []
    for c in compositions:
        accs = [m["model_acc"] for m in c["members"]]
        chosen = Counter(choice["member"] for choice in c["choices"])
        rows.append({
            "dataset": label(c["dataset"], c["dataset_args"]), "family": c["family"],
            "models": " + ".join(dict.fromkeys(label(m["model"], m["model_args"]) for m in c["members"])),
            "method": c["method"], "preset": c["preset"], "threshold": c["threshold"],
            "settings": ", ".join(f"{k}={v}" for k, v in sorted(c["settings"].items()) if k in swept),
            "members": len(c["members"]), "seeds": ",".join(str(s) for s in dict.fromkeys(m["seed"]
                                                                                         for m in c["members"])),
            "composed_acc": c["composed_acc"], "best_model_acc": max(accs), "mean_model_acc": statistics.fmean(accs),
            "gain": (c["composed_acc"] - max(accs)) * 100,
            "best_own_acc": max(m["own_acc"] for m in c["members"]),
            "from": ", ".join(f"{_member_label(c, i)} ×{n}" for i, n in sorted(chosen.items())),
            "run_id": c["run_id"],
        })
    frame = pd.DataFrame(rows)
    order = ["dataset", "family", "method", "preset", "threshold", "members"]
    return frame.sort_values(order, kind="stable", ignore_index=True) if rows else frame


def composition_display(frame: pd.DataFrame) -> pd.DataFrame:
    """The compositions with formatted cells and readable headers."""
    keys = ["dataset", "models", "method", "preset"] + (["settings"] if frame["settings"].astype(bool).any() else [])
    shown = frame[keys].copy()
    shown["threshold"] = frame["threshold"].map(lambda t: f"{t:g}")
    shown["seeds"] = frame["seeds"]
    for figure, (header, kind) in COLUMNS.items():
        shown[header] = [format_value(v, None, kind) for v in frame[figure]]
    shown["from"] = frame["from"]
    return shown
