"""Recipe study: does the smoke ViT recipe train every time? Slow (about an hour on a 2-core CPU).

Runs the issue's command for five seeds in fp32 and in bf16 (autocast on the CPU)::

    bench run --methods standard --models vit_s:depth=4,width=0.25 --seeds 0,1,2,3,4 --set precision=P --tasks 0,1

and checks that every seed's standard model reaches ``MIN_ACC`` test accuracy on digits. A seed that
stalls shows in its loss curve (``train_history``), printed per seed. ``pytest -m slow -s
tests/benchmarks/test_vit_recipe.py`` runs it; ``python tests/benchmarks/test_vit_recipe.py RUNS``
runs it into (or reads it back from) the runs folder RUNS and prints the tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "vit_s:depth=4,width=0.25"
SEEDS = (0, 1, 2, 3, 4)
PRECISIONS = ("fp32", "bf16")
MIN_ACC = 0.9
CURVE_EPOCHS = (1, 3, 5, 8, 10, 15)  # the loss at these epochs, in the table


def run_seeds(runs: Path, precision: str) -> list[dict]:
    """The standard model's records of every seed in ``precision`` (trained, or read back when complete)."""
    out = runs / precision
    command = [sys.executable, "-c", "from bench.cli import main; main()", "run", "--methods", "standard",
               "--models", MODEL, "--seeds", ",".join(map(str, SEEDS)), "--set", f"precision={precision}",
               "--tasks", "0,1", "--device", "cpu", "--out", str(out), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=6 * 3600)
    assert done.returncode == 0, done.stderr
    records = [json.loads(p.read_text()) for p in out.rglob("record.json")]
    return sorted(records, key=lambda r: r["seed"])


def table(records: list[dict]) -> str:
    """One markdown row per seed: test accuracy, best validation accuracy and the loss curve."""
    losses = " | ".join(f"loss ep{e}" for e in CURVE_EPOCHS)
    lines = [f"| seed | test acc | best val acc | {losses} |", "|---" * (3 + len(CURVE_EPOCHS)) + "|"]
    for record in records:
        history = {row["epoch"]: row for row in record["train_history"]}
        curve = " | ".join(f"{history[e]['loss']:.3f}" if e in history else "–" for e in CURVE_EPOCHS)
        best_val = max(row["val_acc"] for row in history.values())
        lines.append(f"| {record['seed']} | {record['model_metrics']['test_acc']:.1%} | {best_val:.1%} | {curve} |")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_seed_of_the_smoke_vit_learns_digits(tmp_path, precision):
    records = run_seeds(tmp_path, precision)
    print(f"\n{MODEL}, smoke preset, digits, {precision} on the CPU\n{table(records)}")
    assert [r["seed"] for r in records] == list(SEEDS)
    assert all(r["precision"] == precision for r in records)
    failed = [r["seed"] for r in records if r["model_metrics"]["test_acc"] < MIN_ACC]
    assert not failed, f"seeds {failed} below {MIN_ACC:.0%}:\n{table(records)}"


if __name__ == "__main__":
    for chosen in PRECISIONS:
        print(f"\n{MODEL}, smoke preset, digits, {chosen} on the CPU\n{table(run_seeds(Path(sys.argv[1]), chosen))}")
