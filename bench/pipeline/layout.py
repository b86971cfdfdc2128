"""Where each stage's files live in a runs directory.

One directory per trained model, named by a hash of the settings that determine it; inside it,
one folder per module threshold, and in that one folder per reuse configuration (fine-tuning
and measuring settings), which holds the cell's record::

    runs/.data-keys/<hash>.json                   a data set's content key, beside its files' fingerprint
    runs/<dataset>/<model>/<method>/<settings-key>/
        model.json  model.pt                      train stage (model.json carries model.pt's sha256)
        metrics.json                              the trained model's accuracy, size, FLOPs
        standard-<classes>.json                   a standard model's accuracy on a task
        t<threshold>/modules-<key>.json  .pt      modularize stage (+ -search.pt: a search's checkpoint)
        t<threshold>/compose-<key>-search.pt      a search inside compose (SeaM, per task): its checkpoint
        t<threshold>/r<key>/<classes>.json  .pt   reuse stage, one per task (module weights in .pt)
        t<threshold>/r<key>/controls/<classes>-<kind>.json  .pt   a task's control (its masks in .pt)
        t<threshold>/r<key>/record.json           the cell's record
        t<threshold>/r<key>/patch-<class>.json    patching scenario, one per patched class
        t<threshold>/c<key>/<class>.json  .pt     one class module's outputs (patching, composing)
    runs/<dataset>/<model>/weak-model/<key>/      patching scenario: the weak model
    runs/<dataset>/compositions/<method>/<key>/composition.json   modules composed across models

Folder names hash *settings* only, so a record's place is known before anything is computed;
each stage's JSON key also hashes the *contents* it was computed from (checksums, and the data
set's content key), and names them (``inputs``), so a stage whose inputs changed is recomputed
with a reason saying which.
"""

from __future__ import annotations

from pathlib import Path

from bench.pipeline.store import classes_label


def threshold_dir(train_dir: Path, threshold: float) -> Path:
    """The folder of one module threshold: ``t0.9`` (exact: 0.9 and 0.9000001 never share one)."""
    return train_dir / f"t{threshold!r}"


def modules_file(train_dir: Path, threshold: float, settings: str) -> Path:
    """The modularize stage's JSON file."""
    return threshold_dir(train_dir, threshold) / f"modules-{settings}.json"


def search_file(train_dir: Path, threshold: float, settings: str) -> Path:
    """A long modularize stage's checkpoint (a search's last completed generation)."""
    return threshold_dir(train_dir, threshold) / f"modules-{settings}-search.pt"


def compose_search_file(train_dir: Path, threshold: float, key: str) -> Path:
    """The checkpoint of a search a method runs while composing one task's module (SeaM)."""
    return threshold_dir(train_dir, threshold) / f"compose-{key}-search.pt"


def reuse_dir(train_dir: Path, threshold: float, settings: str) -> Path:
    """The folder of one reuse configuration: its tasks and the record."""
    return threshold_dir(train_dir, threshold) / f"r{settings}"


def task_file(directory: Path, classes: tuple[int, ...]) -> Path:
    """A task's reuse-stage JSON file inside a reuse folder."""
    return directory / f"{classes_label(classes)}.json"


def class_outputs_file(train_dir: Path, threshold: float, settings: str, label: int) -> Path:
    """One class module's outputs on the validation and test images (patching, composing across models)."""
    return threshold_dir(train_dir, threshold) / f"c{settings}" / f"{label}.json"


def weak_dir(model_dir: Path, key: str) -> Path:
    """The weak model of the patching scenario, beside the methods of its model: ``<model>/weak-model/<key>``."""
    return model_dir / "weak-model" / key


def patch_file(directory: Path, label: int) -> Path:
    """One patched class's figures inside a reuse folder (beside the record)."""
    return directory / f"patch-{label}.json"


def composition_dir(dataset_dir: Path, method: str, key: str) -> Path:
    """A composition across models: ``<dataset>/compositions/<method>/<key>/composition.json`` lives there."""
    return dataset_dir / "compositions" / method / key


def control_file(directory: Path, classes: tuple[int, ...], kind: str) -> Path:
    """A task's control (``random``, ``magnitude``) inside a reuse folder."""
    return directory / "controls" / f"{classes_label(classes)}-{kind}.json"
