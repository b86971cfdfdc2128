"""Fault injection: a tiny grid (standard and mwt) crashed by SIGKILL at seeded random moments of every stage
(train, modularize, reuse, record), re-run after each crash; Ctrl-C; two identical runs at once.

Every ``bench run`` is a child forked from one process that imported modbench once (tests/fault_zygote.py)
and carries an observer plugin (tests/fault_observer.py) that logs each computed stage (a ``stage_end``)
and, on cue, sends a signal. Random kill times are drawn across the stage boundaries of an uninterrupted
run; other kills are sent by the stage events themselves, so that a change of load cannot move them: at
each stage's end, by a worker of a ``--workers 2`` run to the run, and by a CNNSplitter search's checkpoint
save (the re-run resumes the search from the store). After every attempt: every JSON in the
store parses, every stage's tensor file verifies, every record is valid, and no stage finished before the
attempt was computed or written again. At the end the grid is complete and its figures are those of the
uninterrupted run.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from processes import HAS_PROC, alive

from bench.pipeline import store
from bench.record import RECORD_SCHEMA, read_record
from bench.testing import TINY_DATASET, TINY_MODEL, TINY_SETTINGS

pytestmark = pytest.mark.heavy

HERE = Path(__file__).parent
SEED = 11
ROUNDS = 3
MIN_KILLS = 20
SETTINGS = [item for setting in TINY_SETTINGS for item in ("--set", setting)]
GRID = ["run", "--methods", "standard,mwt", "--models", TINY_MODEL, "--datasets", TINY_DATASET, "--tasks", "0,1",
        "--device", "cpu", "--quiet", *SETTINGS]
STAGE_ENTRIES = ("model.json", "metrics.json", "standard-*.json", "t*/modules-*.json", "t*/r*/[0-9]*.json")
ENTRY_OF = {"train": "model.json", "modularize": "t*/modules-*.json", "reuse": "t*/r*/[0-9]*.json"}
STARTS = {"modularize": ("train", "metrics.json"), "reuse": ("modularize", ENTRY_OF["modularize"])}  # stage: its input
PATIENCE = 120  # seconds for a killed run's workers to end: an upper bound, never a speed goal
INTERRUPTED = "interrupted: finished stages are kept; run the same command again to resume"


class Zygote:
    """tests/fault_zygote.py, running: forks ``bench`` commands and reports their exit codes."""

    def __init__(self, log: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MODBENCH_LOAD_PLUGINS": ""}
        with open(log, "w") as stderr:  # its own warnings (imports); each run has files of its own
            self.process = subprocess.Popen([sys.executable, str(HERE / "fault_zygote.py")], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)

    def run(self, *runs: dict[str, Any]) -> list[int]:
        """Start ``runs`` together; their exit codes once all have ended."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(list(runs)) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the zygote died"
        return json.loads(answer)

    def close(self) -> None:
        """End the zygote (it ends when its input does)."""
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    """One zygote for the module's runs."""
    process = Zygote(tmp_path_factory.mktemp("zygote") / "stderr.txt")
    yield process
    process.close()


@dataclass
class Attempt:
    """One ``bench run``: its exit code, its standard output and error, and the events it logged."""

    code: int
    out: str
    err: str
    events: list[dict[str, Any]]


class Grid:
    """The tiny grid in one runs folder, run through the zygote with the observer plugin."""

    def __init__(self, zygote: Zygote, root: Path, *options: str) -> None:
        self.zygote, self.root, self.runs, self.options = zygote, root, root / "runs", options
        self.plugins = root / "plugins"
        self.plugins.mkdir(parents=True)
        shutil.copy(HERE / "fault_observer.py", self.plugins / "observer.py")
        self.attempts = 0

    def command(self, kill: dict[str, Any] | None, name: str) -> dict[str, Any]:
        """The zygote's request for one run (``name`` names its log files)."""
        return {"argv": [*GRID, *self.options, "--out", str(self.runs), "--plugins-dir", str(self.plugins)],
                "env": {"FAULT_LOG": str(self.root / f"{name}.log"), "FAULT_KILL": json.dumps(kill) if kill else ""},
                "stdout": str(self.root / f"{name}.out"), "stderr": str(self.root / f"{name}.err")}

    def run(self, kill: dict[str, Any] | None = None) -> Attempt:
        """One run of the grid, killed as ``kill`` says (see fault_observer.py)."""
        self.attempts += 1
        name = f"attempt{self.attempts}"
        (code,) = self.zygote.run(self.command(kill, name))
        return self.read(name, code)

    def read(self, name: str, code: int) -> Attempt:
        """What run ``name`` left: output and events."""
        log = self.root / f"{name}.log"
        events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return Attempt(code, (self.root / f"{name}.out").read_text(), (self.root / f"{name}.err").read_text(), events)

    def entries(self) -> dict[str, int]:
        """Every stage entry in the store (relative path), with its inode: a stage written again has another."""
        return {str(path.relative_to(self.runs)): path.stat().st_ino
                for pattern in STAGE_ENTRIES for path in self.runs.glob(f"*/*/*/*/{pattern}")
                if not path.name.endswith("-search.json")}

    def records(self) -> list[dict[str, Any]]:
        """Every record, read through ``bench.record`` (which validates it)."""
        return [read_record(path) for path in sorted(self.runs.rglob("record.json"))]


def check_store(grid: Grid) -> None:
    """Nothing partial is readable: every JSON parses, every stage's tensors verify, every record is valid."""
    for path in grid.runs.rglob("*.json"):
        entry = json.loads(path.read_text())
        if isinstance(entry, dict) and entry.get("sha256"):
            store.load_tensors(path.with_suffix(".pt"), entry["sha256"])
    for record in grid.records():
        assert record["schema"] == RECORD_SCHEMA


def entry_of(event: dict[str, Any], runs: Path) -> list[str]:
    """The stage entries (relative paths) that a stage_end event's stage writes."""
    stage = event["label"].split(":")[0]
    if stage not in ENTRY_OF or not event.get("directory"):
        return []
    return [str(path.relative_to(runs)) for path in Path(event["directory"]).glob(ENTRY_OF[stage])]


def lost_stages(before: dict[str, int], grid: Grid, attempt: Attempt) -> list[str]:
    """Stages finished before ``attempt`` that it computed or wrote again."""
    after = grid.entries()
    rewritten = [path for path, inode in before.items() if after.get(path) != inode]
    recomputed = [path for event in attempt.events for path in entry_of(event, grid.runs) if path in before]
    return rewritten + recomputed


@dataclass
class Target:
    """Where to kill: ``delay`` drawn in [0, span] after the event ``after`` (and after ``file`` appears)."""

    name: str
    after: str
    span: float
    file: str | None = None


@dataclass
class Timeline:
    """An uninterrupted run's stage boundaries: event times and the times its entries were written."""

    events: dict[str, float]
    written: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)

    def order(self) -> list[str]:
        """Stage entries and records (relative paths) in the order the run wrote them."""
        return sorted(self.written, key=self.written.get)

    def written_at(self, method: str, pattern: str) -> float:
        """When the entry of ``method`` matching ``pattern`` was written."""
        (time,) = [t for path, t in self.written.items() if f"/{method}/" in path and Path(path).match(pattern)]
        return time

    def targets(self) -> list[Target]:
        """Each stage of each cell in the order the run ran them, timed from the event or the file that marks the
        stage's start: a train stage from the previous event, the others from their input's entry."""
        labels = sorted(self.events, key=self.events.get)
        targets = []
        for before, label in itertools.pairwise(labels):
            stage, method = label.split(":")
            if stage == "train":
                targets.append(Target(label, before, self.events[label] - self.events[before]))
            elif stage in STARTS:
                previous, file = STARTS[stage]
                span = self.events[label] - self.written_at(method, file)
                targets.append(Target(label, f"{previous}:{method}", max(span, 0.0), file))
            elif stage == "run_end":
                span = self.written_at(method, "record.json") - self.written_at(method, ENTRY_OF["reuse"])
                targets.append(Target(f"record:{method}", f"reuse:{method}", max(span, 0.0), ENTRY_OF["reuse"]))
        return targets


def timeline_of(grid: Grid, attempt: Attempt) -> Timeline:
    """The timeline of an uninterrupted ``attempt`` of ``grid``."""
    events = {event["label"]: event["time"] for event in attempt.events}
    paths = [*grid.entries(), *(str(p.relative_to(grid.runs)) for p in grid.runs.rglob("record.json"))]
    return Timeline(events, {path: (grid.runs / path).stat().st_mtime for path in paths}, grid.records())


@pytest.fixture(scope="module")
def uninterrupted(zygote, tmp_path_factory) -> Timeline:
    """The tiny grid run once without faults: its timeline and records."""
    grid = Grid(zygote, tmp_path_factory.mktemp("uninterrupted"))
    attempt = grid.run()
    assert attempt.code == 0, attempt.err
    return timeline_of(grid, attempt)


KIND = {"model.json": "train", "metrics.json": "evaluate", "record.json": "record"}


def in_flight(grid: Grid, timeline: Timeline, attempt: Attempt) -> str:
    """The stage a kill interrupted: the first entry of the uninterrupted order missing here, and for a stage
    that logs its end, whether it had been computed ('writing') or not ('computing')."""
    missing = [path for path in timeline.order() if not (grid.runs / path).exists()]
    if not missing:
        return "after the last stage"
    name, method = Path(missing[0]).name, Path(missing[0]).parts[2]
    kind = KIND.get(name, "modularize" if name.startswith("modules-") else "reuse")
    if kind not in ENTRY_OF or name.startswith("standard-"):  # the standard model's task accuracy, inside reuse
        return kind
    computed = any(event["label"] == f"{kind}:{method}" for event in attempt.events)
    return f"{kind} ({'writing' if computed else 'computing'})"


def same_figures(records: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Whether two sets of records hold the same accuracies and modules (timings aside)."""
    def figures(record: dict[str, Any]) -> tuple:
        tasks = [(t["classes"], t["module_acc"], t["standard_acc"], t["retention"], t["params"])
                 for t in record["tasks"]]
        modules = {k: record["modularization"][k] for k in ("retention", "cohesion", "coupling")}
        return record["method"], record["model_metrics"]["test_acc"], modules, tasks

    return sorted(map(figures, records)) == sorted(map(figures, expected))


def emits(grid: Grid, label: str) -> bool:
    """Whether a run of ``grid`` logs event ``label``: a stage's end only while the stage is not finished."""
    stage, _, method = label.partition(":")
    return stage not in ENTRY_OF or not list(grid.runs.glob(f"*/*/{method}/*/{ENTRY_OF[stage]}"))


@dataclass
class Crash:
    """One kill: its round, the stage it aimed at, its delay, and the stage it interrupted."""

    round: int
    target: str
    delay: float
    stage: str


def crash_and_resume(grid: Grid, timeline: Timeline, rng: random.Random, round_: int) -> tuple[list, list]:
    """Kill a run of ``grid`` once per stage, at a random moment of it, re-running after each; then run it to
    the end. Returns the crashes and the finished stages any run computed or wrote again."""
    crashes, lost = [], []
    for target in timeline.targets():
        if not emits(grid, target.after):  # an earlier kill landed late: this stage is done
            continue
        kill = {"after": target.after, "file": target.file, "delay": rng.uniform(0, target.span), "signal": "SIGKILL"}
        before = grid.entries()
        attempt = grid.run(kill)
        assert attempt.code in (0, -9), attempt.err  # -9: killed; 0: the kill came after the end
        check_store(grid)
        lost += lost_stages(before, grid, attempt)
        if attempt.code == -9:
            crashes.append(Crash(round_, target.name, kill["delay"], in_flight(grid, timeline, attempt)))
    before = grid.entries()
    final = grid.run()
    assert final.code == 0, final.err
    check_store(grid)
    return crashes, lost + lost_stages(before, grid, final)


def test_crashes_at_random_moments_lose_no_finished_stage(zygote, uninterrupted, tmp_path):
    rng, crashes, lost, round_ = random.Random(SEED), [], [], 0
    while round_ < ROUNDS or (len(crashes) < MIN_KILLS and round_ < 2 * ROUNDS):
        grid = Grid(zygote, tmp_path / f"round{round_}")
        new_crashes, new_lost = crash_and_resume(grid, uninterrupted, rng, round_)
        crashes, lost, round_ = crashes + new_crashes, lost + new_lost, round_ + 1
        records = grid.records()
        assert len(records) == 2 and all(r["error"] is None and r["last_error"] is None for r in records)
        assert not list(grid.runs.rglob(".*.tmp"))  # the killed writers' half files are gone
        assert same_figures(records, uninterrupted.records)
    print(f"\n{len(crashes)} kills, {len(lost)} finished stages lost")
    for crash in crashes:
        print(f"round {crash.round}  aimed at {crash.target:<20} +{crash.delay:.3f}s  interrupted {crash.stage}")
    assert len(crashes) >= MIN_KILLS
    assert {crash.stage.split()[0] for crash in crashes} >= {"train", "modularize", "reuse", "record"}
    assert lost == []


def stage_labels(timeline: Timeline) -> list[str]:
    """The stage_end labels of an uninterrupted run, in the order it computed them."""
    return [label for label in sorted(timeline.events, key=timeline.events.get) if label.split(":")[0] in ENTRY_OF]


def test_kills_at_stage_events_lose_no_finished_stage(zygote, uninterrupted, tmp_path):
    """Kills that the stage events trigger themselves (a change of load cannot move them): SIGKILL at each stage's
    end, its result computed and not yet written; each re-run computes that stage again and nothing before it."""
    grid = Grid(zygote, tmp_path)
    for label in stage_labels(uninterrupted):
        before = grid.entries()
        attempt = grid.run({"at": label, "signal": "SIGKILL"})
        assert attempt.code == -9, attempt.err
        check_store(grid)
        assert lost_stages(before, grid, attempt) == []
        assert in_flight(grid, uninterrupted, attempt) == f"{label.split(':')[0]} (writing)"
    before = grid.entries()
    final = grid.run()
    assert final.code == 0 and lost_stages(before, grid, final) == []
    assert same_figures(grid.records(), uninterrupted.records)


@pytest.mark.skipif(not HAS_PROC, reason="reads the process table from /proc")
def test_a_killed_two_worker_run_resumes_losing_nothing(zygote, tmp_path):
    """SIGKILL of a ``--workers 2`` run, sent by a worker's event (its modules computed, not written): the workers
    end with it, and the same command resumes, computing again no stage that was finished."""
    grid = Grid(zygote, tmp_path, "--workers", "2")
    attempt = grid.run({"at": "modularize:standard", "signal": "SIGKILL", "target": "run"})
    assert attempt.code == -9, attempt.err
    run_pid = attempt.events[0]["pid"]  # the run loads its plugins first, then each worker does
    workers = {event["pid"] for event in attempt.events} - {run_pid}
    assert len(workers) == 2 and any(event["pid"] in workers for event in attempt.events if event["label"] != "load")
    deadline = time.monotonic() + PATIENCE
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    outlived = sorted(filter(alive, workers))
    for pid in outlived:  # a failing check leaves no orphan holding memory
        os.kill(pid, signal.SIGKILL)
    assert outlived == [], f"workers {outlived} outlived their run"
    check_store(grid)
    before = grid.entries()
    final = grid.run()
    assert final.code == 0, final.err
    check_store(grid)
    assert lost_stages(before, grid, final) == []
    records = grid.records()
    assert len(records) == 2 and all(r["error"] is None for r in records)


SEARCH = ["--methods", "standard,cnnsplitter", "--set", "cnnsplitter.population=8", "--set", "cnnsplitter.parents=4",
          "--set", "cnnsplitter.elites=2", "--set", "cnnsplitter.generations=6"]
MARK = 1000.0  # seconds written into the stored search state: a resumed search carries them into its figures


def test_a_killed_cnnsplitter_search_resumes_from_the_store(zygote, tmp_path):
    """A run killed by its search's second checkpoint save (generations 0 and 1 done, of 0..6); the re-run resumes
    the search from that checkpoint in the store (its seconds, marked, carry over) rather than starting again."""
    grid = Grid(zygote, tmp_path, *SEARCH)
    attempt = grid.run({"at": "checkpoint:2", "signal": "SIGKILL"})
    assert attempt.code == -9, attempt.err
    (entry,) = grid.runs.glob("*/*/cnnsplitter/*/t*/modules-*-search.json")
    assert not list(entry.parent.glob("modules-*[0-9a-f].json"))  # killed inside the search
    state = store.load_tensors(entry.with_suffix(".pt"), store.read_json(entry)["sha256"])
    assert state["generation"] == 2
    state["seconds"] += MARK
    store.write_json(entry, {"sha256": store.save_tensors(entry.with_suffix(".pt"), state)})
    final = grid.run()
    assert final.code == 0, final.err
    saves = [event["label"] for event in final.events if event["label"].startswith("checkpoint")]
    assert saves == [f"checkpoint:{n}" for n in range(1, 6)]  # generations 2..6: five saves, not seven
    (record,) = [r for r in grid.records() if r["method"] == "cnnsplitter"]
    figures = record["modularization"]["method_metrics"]
    assert figures["search_seconds"] > MARK and figures["generations"] == 6


def test_ctrl_c_keeps_finished_stages(zygote, uninterrupted, tmp_path):
    grid = Grid(zygote, tmp_path)
    attempt = grid.run({"at": "reuse:standard", "signal": "SIGINT"})  # Ctrl-C as the task's module is computed
    assert attempt.code == 130 and "Traceback" not in attempt.err
    assert attempt.err.strip().splitlines()[-1] == INTERRUPTED
    check_store(grid)
    before = grid.entries()
    assert {Path(path).name for path in before} >= {"model.json", "metrics.json"}  # the standard model, kept
    final = grid.run()
    assert final.code == 0 and lost_stages(before, grid, final) == []
    assert same_figures(grid.records(), uninterrupted.records)


def test_two_identical_runs_at_once_share_every_stage(zygote, uninterrupted, tmp_path):
    grid = Grid(zygote, tmp_path)
    assert zygote.run(grid.command(None, "first"), grid.command(None, "second")) == [0, 0]
    first, second = grid.read("first", 0), grid.read("second", 0)
    computed = [e["label"] for e in first.events + second.events if e["label"].split(":")[0] in ENTRY_OF]
    assert sorted(computed) == sorted(f"{stage}:{method}" for stage in ENTRY_OF for method in ("standard", "mwt"))
    assert first.out == second.out and "mwt" in first.out
    on_disk = {record["method"]: record for record in grid.records()}
    printed = [e["record"] for e in first.events + second.events if e["label"].startswith("run_end")]
    assert len(printed) == 4 and all(same_figures([r], [on_disk[r["method"]]]) for r in printed)
    assert same_figures(list(on_disk.values()), uninterrupted.records)


def test_a_killed_writers_half_file_goes_when_its_folder_is_next_locked(tmp_path):
    half = tmp_path / ".model.pt.k1ll3d.tmp"
    half.write_bytes(b"half a checkpoint")
    assert store.cached(tmp_path / "model.json", "key", lambda: store.Stored({"a": 1}), lambda s: s.info) == {"a": 1}
    assert not half.exists() and (tmp_path / "model.json").exists()
