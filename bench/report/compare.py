"""``bench report --compare A,B``: the paired difference A − B of every figure, with a bootstrap interval.

A side may be a method's control, ``mwt:random`` (``bench run --controls random``): its task figures are the
control's, paired with the method's own on the same seed and task.

Pairs are records of the two methods on the same data set, model, preset, threshold and seed,
and for task figures the same task; a figure of the whole record (model accuracy, class retention,
cohesion, coupling, training cost, and with ``--scenario patch`` the patched accuracy and F1 of each
strategy, averaged over the patched classes) is paired once per seed. When a method was run in several
configurations (a sweep), each pair of configurations is compared on its own, except that a swept setting both methods
share must hold the same value on both sides. The interval is a 95% percentile bootstrap of the
mean difference (10,000 resamples, seeded: the same records always give the same interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.report.display import COLUMNS
from bench.report.rows import CONFIG, swept_keys, with_controls

MATCH = ["dataset", "model", "preset", "threshold", "seed"]
TASK_FIGURES = ("module_acc", "module_acc_before_finetune", "retention", "weight_retention", "flops_ratio",
                "latency_ratio")
RECORD_FIGURES = ("test_acc", "class_retention", "cohesion", "coupling", "cost_ratio", "patch_acc_replace",
                  "patch_f1_replace", "patch_acc_calibrate", "patch_f1_calibrate")
RESAMPLES = 10_000
LEVEL = 0.95


def bootstrap_interval(diffs: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of ``diffs`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(diffs), size=(RESAMPLES, len(diffs)))  # (resamples, pairs)
    means = diffs[picks].mean(axis=1)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, 1 - (1 - LEVEL) / 2])
    return float(low), float(high)


def verdict(low: float, high: float, pairs: int, a: str, b: str) -> str:
    """What the interval says, in words."""
    if pairs < 2:
        return "one pair: no interval"
    if low <= 0 <= high:
        return "no measurable difference"
    return f"{a} higher" if low > 0 else f"{b} higher"


def _settings(rows: pd.DataFrame, keys: list[str]) -> list[dict[str, object]]:
    """Each row's swept settings (model and data set arguments are part of the model and data set)."""
    keys = [k for k in keys if not k.startswith((f"{CONFIG}model.", f"{CONFIG}dataset."))]
    return [{k.removeprefix(CONFIG): row[k] for k in keys if pd.notna(row[k])} for _, row in rows.iterrows()]


def _side(rows: pd.DataFrame, method: str, keys: list[str]) -> pd.DataFrame:
    side = rows[(rows["method"] == method) & rows["error"].isna()].copy()
    side["settings"] = _settings(side, keys)
    side["config"] = [", ".join(f"{k}={v}" for k, v in settings.items()) for settings in side["settings"]]
    return side


def _consistent(a: dict[str, object], b: dict[str, object]) -> bool:
    """False when a setting both configurations have holds different values on the two sides."""
    return all(a[k] == b[k] for k in a.keys() & b.keys())


def pair_rows(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows of ``a`` joined with the matching rows of ``b`` (columns suffixed ``_a``, ``_b``); a method's
    control is named ``method:kind`` (``mwt:random``)."""
    rows = with_controls(rows, (a, b))
    methods = sorted(set(rows["method"]))
    for name in (a, b):
        if name not in methods:
            raise UsageError(f"--compare: no records of method '{name}' (methods here: {', '.join(methods)})")
    if a == b:
        raise UsageError(f"--compare {a},{b}: give two different methods")
    keys = swept_keys(rows)
    pairs = _side(rows, a, keys).merge(_side(rows, b, keys), on=[*MATCH, "task"], suffixes=("_a", "_b"))
    pairs = pairs[[_consistent(x, y) for x, y in zip(pairs["settings_a"], pairs["settings_b"], strict=True)]]
    if pairs.empty:
        raise UsageError(f"--compare {a},{b}: no data set, model, seed, task and threshold has records of both "
                         "(without errors)")
    return pairs


def _difference(pairs: pd.DataFrame, figure: str) -> np.ndarray:
    if figure in RECORD_FIGURES:
        pairs = pairs.drop_duplicates("seed")
    diffs = (pairs[f"{figure}_a"] - pairs[f"{figure}_b"]).astype(float)
    return diffs.dropna().to_numpy()


def compare_methods(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """One row per (configuration pair, figure): pairs, mean difference a − b, 95% interval, verdict."""
    pairs = pair_rows(rows, a, b)
    block = ["dataset", "model", "preset", "threshold", "config_a", "config_b"]
    out = []
    for values, group in pairs.groupby(block, sort=False):
        sparsity = {f"sparsity_{side}": _first_label(group, f"sparsity_{side}") for side in "ab"}
        for figure in (*RECORD_FIGURES[:1], *TASK_FIGURES, *RECORD_FIGURES[1:]):
            diffs = _difference(group, figure) if f"{figure}_a" in group else np.array([])
            if len(diffs) == 0:
                continue
            low, high = bootstrap_interval(diffs) if len(diffs) > 1 else (np.nan, np.nan)
            out.append({**dict(zip(block, values, strict=True)), "figure": figure, "pairs": len(diffs),
                        "mean_diff": float(diffs.mean()), "ci_low": low, "ci_high": high,
                        "verdict": verdict(low, high, len(diffs), a, b), **sparsity})
    return pd.DataFrame(out)


def _first_label(group: pd.DataFrame, column: str) -> str | None:
    """The first label in ``column`` of ``group`` (None when it has none, or no such column)."""
    present = group[column].dropna() if column in group else []
    return present.iloc[0] if len(present) else None


def shown_number(value: float, kind: str) -> str:
    """A signed difference; ratios with three decimals, so an interval bound above 0 never reads +0.00."""
    if kind == "pct":
        return f"{value * 100:+.2f}"
    return f"{value:+.3f}"


def display_comparison(frame: pd.DataFrame, a: str, b: str) -> tuple[pd.DataFrame, str]:
    """The comparison with readable cells, and its footnote."""
    shown = frame[["dataset", "model", "preset"]].copy()
    shown["threshold"] = frame["threshold"].map(lambda t: f"{t:g}")
    for side, name in (("config_a", a), ("config_b", b)):
        if frame[side].astype(bool).any():
            shown[f"{name} config"] = frame[side]
    kinds = [COLUMNS[f] for f in frame["figure"]]
    shown["figure"] = [header + (" (pts)" if kind == "pct" else "") for header, kind in kinds]
    shown[f"{a} − {b}"] = [shown_number(v, kind) for v, (_, kind) in zip(frame["mean_diff"], kinds, strict=True)]
    shown["95% interval"] = [f"[{shown_number(lo, kind)}, {shown_number(hi, kind)}]" if pd.notna(lo) else "–"
                             for lo, hi, (_, kind) in zip(frame["ci_low"], frame["ci_high"], kinds, strict=True)]
    shown["pairs"] = frame["pairs"]
    shown["verdict"] = frame["verdict"]
    note = (f"Paired differences {a} − {b} over records of the same data set, model, preset, threshold and seed "
            "(task figures: also the same task; model acc, class retention, cohesion, coupling, cost and the patched "
            "figures: once per seed). Accuracies, "
            "retention, weights and FLOPs in percentage points. 95% percentile bootstrap interval of the mean "
            f"difference ({RESAMPLES:,} resamples, seeded); an interval that spans 0 is no measurable difference.")
    for side, name in (("sparsity_a", a), ("sparsity_b", b)):
        if side in frame and frame[side].notna().any():
            note += (f" {name}'s modules have unstructured sparsity: its weights and FLOPs count kept weights only, "
                     "a saving dense hardware does not see (its latency is the dense model's).")
    return shown, note
