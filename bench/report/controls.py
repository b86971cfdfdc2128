"""Each method's lead over its controls: module accuracy minus the control's, paired over seeds and tasks,
with the 95% bootstrap interval of ``--compare`` (``bench run`` prints it under the table when the records
hold controls; ``bench report --compare mwt,mwt:random`` gives every figure of one such pair).
"""

from __future__ import annotations

import pandas as pd

from bench.record import CONTROL_KINDS
from bench.report.compare import RESAMPLES, compare_methods, shown_number

FIGURES = {"module_acc": "after FT", "module_acc_before_finetune": "before FT"}
NOTE = ("Lead (points) of each method's module over its control: as many units in every layer, chosen from the same "
        "model at random or by weight L1 norm, composed, fine-tuned and selected as the module is. Paired over seeds "
        f"and tasks; 95% percentile bootstrap interval of the mean ({RESAMPLES:,} resamples, seeded); an interval "
        "above 0 says the method's choice of units beats the control's. The standard model has no row: its module "
        "is the whole model, and so is its control.")


def control_leads(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, method, control, figure) with pairs, mean lead and interval; empty when no
    record holds a control (or only controls identical to their modules)."""
    frames = []
    for kind in CONTROL_KINDS:
        if f"lead_{kind}" not in rows:
            continue
        for method in rows.loc[rows[f"lead_{kind}"].notna(), "method"].unique():
            frame = compare_methods(rows, method, f"{method}:{kind}")
            frame = frame[frame["figure"].isin(list(FIGURES))].copy()
            frame.insert(4, "method", method)
            frame.insert(5, "control", kind)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def display_leads(frame: pd.DataFrame) -> pd.DataFrame:
    """The leads with readable cells."""
    shown = frame[["dataset", "model", "preset", "method", "control"]].copy()
    shown.insert(3, "threshold", frame["threshold"].map(lambda t: f"{t:g}"))
    configs = frame["config_a"].astype(bool)
    if configs.any():
        shown.insert(5, "config", frame["config_a"])
    shown["module acc"] = frame["figure"].map(FIGURES)
    shown["lead (pts)"] = [shown_number(v, "pct") for v in frame["mean_diff"]]
    shown["95% interval"] = [f"[{shown_number(lo, 'pct')}, {shown_number(hi, 'pct')}]" if pd.notna(lo) else "–"
                             for lo, hi in zip(frame["ci_low"], frame["ci_high"], strict=True)]
    shown["pairs"] = frame["pairs"]
    shown["verdict"] = [_verdict(v, m, c) for v, m, c in zip(frame["verdict"], frame["method"], frame["control"],
                                                            strict=True)]
    return shown


def _verdict(verdict: str, method: str, kind: str) -> str:
    """The comparison's verdict said of a method and its control."""
    if verdict == f"{method} higher":
        return f"beats {kind} units"
    if verdict == f"{method}:{kind} higher":
        return f"loses to {kind} units"
    return verdict

