"""The record: what one grid cell measured at one module threshold (``t<threshold>/record.json``).

The schema is declared once, as the TypedDicts below, and every reader goes through
``read_record`` (or ``as_record`` for a record already in memory): it checks the JSON against
the declaration, upgrades an older schema in memory and raises one ``BadRecord`` line naming
the file otherwise. Writers fill a ``Record``, call ``validate`` (or ``to_json``) and write the
text atomically themselves (this module sits below the pipeline and imports none of it).

Schema 2 is schema 1 plus ``precision``, ``deterministic``, ``config_key``, ``baseline`` and
``last_error``, a few optional per-task figures (batch-1 latency, CNNSplitter's merged module)
and optional ``method_metrics`` / ``empty_layer_fallbacks`` under ``modularization``. Schema 3
adds ``cost`` (the method's training and module search against its standard model's training;
None in a record upgraded from an older schema), per task the optional ``controls`` and the
``sparsity``, ``flops_dense`` and ``flops_ratio_dense`` of an unstructured sparse module (SeaM), the optional
``patching`` section (``--scenario patch``), and a second kind of record: a ``composition.json``
(``Composition``), the class modules of several trained models composed into one classifier, read
through ``read_composition``.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from bench.errors import CorruptArtifact
from bench.schema_check import check_value, quoted

RECORD_SCHEMA = 3
READABLE_SCHEMAS = (1, 2, 3)
CONTROL_KINDS = ("random", "magnitude")  # the controls a task may hold (``bench.modular.controls`` draws them)
CONFIG_FIELDS = ("method", "model", "model_args", "dataset", "dataset_args", "preset", "recipe", "hparams",
                 "precision")
CHANCE_FACTOR = 1.5  # a standard model below 1.5x chance accuracy did not learn its data set
BELOW_METHOD_POINTS = 10.0  # nor did one more than 10 points below the method's own trained model
BaselineFlag = Literal["chance", "below_method"]


class BadRecord(CorruptArtifact):
    """A file that is not a record this modbench can read; the message names the file and why."""


class ModelMetrics(TypedDict):
    """The trained model as the method trained it (for mwt/nemo: with its mask generators)."""

    test_acc: float
    params: int
    flops: int
    train_seconds: float


class Modularization(TypedDict):
    """The module masks at one threshold and their modularity figures."""

    threshold: float
    unit: str
    units_total: int
    retention: float
    cohesion: float
    coupling: float
    seconds: float
    method_metrics: NotRequired[dict[str, float]]  # the method's own figures, e.g. candidates_per_second
    empty_layer_fallbacks: NotRequired[int]  # class modules whose layer needed the empty-layer rule


class ControlMetrics(TypedDict):
    """A control of a reused module: as many units per layer, chosen another way, reused the same way."""

    module_acc: float
    module_acc_before_finetune: float
    finetune_kept: NotRequired[bool]
    params: int
    weight_retention: float
    flops_ratio: float
    same_as_module: NotRequired[bool]  # the module keeps every unit: its control is the module itself


class TaskMetrics(TypedDict):
    """One reused module: its task's classes, accuracy, size and speed against the standard model."""

    classes: list[int]
    module_acc: float
    module_acc_before_finetune: float
    finetune_kept: NotRequired[bool]  # false: no fine-tuning epoch beat the composed module on validation
    val_acc_composed: NotRequired[float]  # the composed module's validation accuracy (model selection)
    standard_acc: float
    retention: float  # union of the task's class modules (MwT, NeMo)
    retention_sum: float  # each class module counted apart (CNNSplitter)
    params: int
    weight_retention: float
    retention_rounded: NotRequired[float]  # with a channel multiple: the units the rounded module keeps
    weight_retention_linear: NotRequired[float]  # Linear layers only, as the NeMo authors count a ViT
    flops: int
    flops_ratio: float
    latency_ratio: float
    seconds: NotRequired[float]
    module_file: NotRequired[str]
    latency_ratio_b1: NotRequired[float]  # latency ratio at batch size 1
    params_merged: NotRequired[int]  # CNNSplitter: the task's modules merged into one model
    flops_merged: NotRequired[int]
    weight_retention_merged: NotRequired[float]
    flops_ratio_merged: NotRequired[float]
    compose_seconds: NotRequired[float]  # the module's composition (SeaM: the task's search)
    sparsity: NotRequired[Literal["unstructured"]]  # weight-level masks (SeaM): the model's shape, weights zeroed
    flops_dense: NotRequired[int]  # an unstructured module's FLOPs with every weight multiplied (its dense cost)
    flops_ratio_dense: NotRequired[float]
    controls: NotRequired[dict[str, ControlMetrics]]  # per control kind ('random', 'magnitude')


class PatchEntry(TypedDict):
    """One patched class and strategy: the weak and the patched model's test accuracy, and the class's
    precision, recall and F1 before (``weak_*``) and after patching (0 where undefined)."""

    label: int
    strategy: Literal["replace", "calibrate"]  # CNNSplitter / GradSplitter's rule; MODA's calibration layer
    weak_acc: float
    acc: float
    weak_precision: float
    weak_recall: float
    weak_f1: float
    precision: float
    recall: float
    f1: float


class WeakModel(TypedDict):
    """The weak model of the patching scenario."""

    test_acc: float
    images: int  # training images it learned from
    seconds: float


class Patching(TypedDict):
    """``--scenario patch``: the weak model patched with this record's modules, class by class."""

    settings: dict[str, Any]  # fraction, epochs, without, calibration_epochs, calibration_lr
    inputs: NotRequired[dict[str, str]]  # the trained model's checksum, the module masks' digest, SeaM's one_class
    weak: WeakModel
    entries: list[PatchEntry]


class Baseline(TypedDict):
    """Whether the standard model this record is measured against learned its data set."""

    standard_test_acc: float
    method_test_acc: float
    flag: BaselineFlag | None
    message: str | None


class Cost(TypedDict):
    """What the method's model cost to make, against its standard model's training.

    ``ratio`` is (train + modularize + compose) / standard train: None when the two were trained on
    different devices, or either was imported (no training time). A post-training method trains nothing
    of its own (its ``train_seconds`` is ~0): its ratio is its search, on top of the standard model it
    reuses. ``compose_seconds`` is the composition of the run's tasks: SeaM's per-task searches (an
    extraction elsewhere, milliseconds).
    """

    train_seconds: float
    modularize_seconds: float  # module masks at this threshold: the activity pass, a search
    compose_seconds: NotRequired[float]  # the tasks' modules composed (a search per task: SeaM)
    standard_train_seconds: float
    device: str | None  # where the method's model was trained (None: not known, trained before schema 3)
    standard_device: str | None
    ratio: float | None


class LastError(TypedDict):
    """A re-run that failed while the record's figures stayed valid."""

    message: str
    when: str  # ISO time


class Settings(TypedDict):
    """The ``--set`` values of a cell: recipe fields and the method's hyperparameters, as given."""

    recipe: dict[str, Any]
    hparams: dict[str, Any]


class Record(TypedDict):
    """One ``record.json``, schema 3."""

    schema: int
    run_id: str
    method: str
    model: str
    model_args: dict[str, Any]
    family: str
    dataset: str
    dataset_args: dict[str, Any]
    seed: int
    preset: str
    threshold: float
    hparams: dict[str, Any]
    recipe: dict[str, Any]
    settings: NotRequired[Settings]  # the --set values the cell ran with (what export rebuilds it from)
    precision: Literal["fp32", "bf16"]  # resolved: what the arithmetic really was
    deterministic: bool
    config_key: str  # see config_key()
    env: dict[str, Any]
    model_metrics: ModelMetrics | None
    modularization: Modularization | None
    tasks: list[TaskMetrics]
    train_history: list[dict[str, Any]]
    baseline: Baseline | None  # None: not applicable (no trained standard model) or not recorded (schema 1)
    cost: Cost | None  # None: not recorded (schema 1 and 2) or no figures (a failed cell)
    error: str | None  # the first run's failure: the record holds no figures
    last_error: LastError | None
    patching: NotRequired[Patching]  # schema 3, with --scenario patch


class CompositionMember(TypedDict):
    """One trained model of a composition across models."""

    model: str
    model_args: dict[str, Any]
    seed: int
    run_id: str  # the folder of the member's record
    config_key: str  # its record's configuration
    model_acc: float  # the trained model on the test images
    own_acc: float  # its own class modules composed alone, on the test images


class ClassChoice(TypedDict):
    """Whose module a composition takes for one class, and why (its ROC AUC for the class on validation)."""

    label: int
    member: int  # index into the composition's members
    val_auc: float


class Composition(TypedDict):
    """One ``composition.json`` (schema 3): per class the best module of several trained models of one method,
    model family and data set, composed into one classifier (GradSplitter's "more accurate model")."""

    schema: int
    kind: Literal["composition"]
    run_id: str  # its folder under the runs directory
    method: str
    family: str
    dataset: str
    dataset_args: dict[str, Any]
    preset: str
    threshold: float
    settings: dict[str, str]  # the --set values its members ran with
    selection: str  # how a class's module is chosen
    votes: str  # how the modules' logits are put on one scale
    members: list[CompositionMember]
    choices: list[ClassChoice]
    composed_acc: float  # the composed classifier on the test images
    key: str  # a hash of the module outputs and model accuracies it was computed from
    seconds: float
    env: dict[str, Any]


SCHEMA1_REQUIRED = ("run_id", "method", "model", "model_args", "family", "dataset", "seed", "preset", "threshold",
                    "hparams", "recipe", "env", "model_metrics", "modularization", "tasks", "error")


def config_key(record: Mapping[str, Any]) -> str:
    """A short hash of everything that determines a record's numbers except the seed and the threshold.

    Reads ``CONFIG_FIELDS`` of ``record``: method, model and its arguments, data set and its
    arguments, preset, recipe, hyperparameters and the resolved precision. Records that differ only
    by seed share it, so the report counts them as seeds of one configuration.
    """
    payload = {name: record.get(name) for name in CONFIG_FIELDS}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def baseline_check(standard_test_acc: float, method_test_acc: float, num_classes: int | None) -> Baseline:
    """Flag a standard model that did not learn: the rule every record's ``baseline`` follows.

    ``"chance"`` when its test accuracy is below ``CHANCE_FACTOR`` times chance (1 / num_classes;
    skipped when ``num_classes`` is None), else ``"below_method"`` when it is more than
    ``BELOW_METHOD_POINTS`` points below the method's own trained model; ``None`` otherwise.
    """
    flag: BaselineFlag | None = None
    message = None
    if num_classes and standard_test_acc < CHANCE_FACTOR / num_classes:
        flag = "chance"
        message = (f"the standard model scored {standard_test_acc:.1%} on the test set, near chance "
                   f"({1 / num_classes:.1%} for {num_classes} classes)")
    elif (method_test_acc - standard_test_acc) * 100 > BELOW_METHOD_POINTS:
        flag = "below_method"
        message = (f"the standard model scored {standard_test_acc:.1%} on the test set, more than "
                   f"{BELOW_METHOD_POINTS:g} points below the method's own model ({method_test_acc:.1%})")
    return Baseline(standard_test_acc=standard_test_acc, method_test_acc=method_test_acc, flag=flag,
                    message=message)


def training_cost(train_seconds: float, modularize_seconds: float, standard_train_seconds: float,
                  device: str | None, standard_device: str | None, imported: bool = False,
                  compose_seconds: float = 0.0) -> Cost:
    """The cost of a method's model against its standard model's training: the rule every record's ``cost``
    follows (``imported``: either model was imported, so a training time is missing)."""
    comparable = not imported and standard_train_seconds > 0 and (device is None or standard_device is None
                                                                  or device == standard_device)
    spent = train_seconds + modularize_seconds + compose_seconds
    ratio = spent / standard_train_seconds if comparable else None
    return Cost(train_seconds=train_seconds, modularize_seconds=modularize_seconds, compose_seconds=compose_seconds,
                standard_train_seconds=standard_train_seconds, device=device, standard_device=standard_device,
                ratio=ratio)


def validate(record: Any, source: str = "record") -> Record:
    """``record`` itself when it is a valid record of the current schema; BadRecord naming ``source`` otherwise."""
    _check_schema(record, source)
    if record["schema"] != RECORD_SCHEMA:
        raise BadRecord(f"{source}: schema {record['schema']} is not the current schema {RECORD_SCHEMA}")
    problem = check_value(record, Record, "")
    if problem:
        raise BadRecord(f"{source}: invalid record: {problem}")
    return record


def as_record(obj: Any, source: str = "record") -> Record:
    """A record of the current schema from a parsed record of any readable schema (older ones upgraded)."""
    _check_schema(obj, source)
    if obj["schema"] == 1:
        missing = [name for name in SCHEMA1_REQUIRED if name not in obj]
        if missing:
            raise BadRecord(f"{source}: invalid record: missing {quoted(missing)}")
        obj = upgrade_schema1(obj)
    if obj["schema"] == 2:
        obj = upgrade_schema2(obj)
    return validate(obj, source)


def read_record(path: Path) -> Record:
    """The record in ``path``, checked and upgraded to the current schema; BadRecord naming the file otherwise."""
    return as_record(_read_json(path), str(path))


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; BadRecord naming the file when it cannot be read or parsed."""
    try:
        obj = json.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRecord(f"{path}: not a record (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise BadRecord(f"{path}: not a record (not JSON: {exc.msg} at line {exc.lineno})") from None
    except OSError as exc:
        raise BadRecord(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return obj


def as_composition(obj: Any, source: str = "composition") -> Composition:
    """``obj`` when it is a valid composition record; BadRecord naming ``source`` otherwise."""
    _check_schema(obj, source)
    if obj["schema"] < 3 or obj.get("kind") != "composition":
        raise BadRecord(f"{source}: not a composition record (schema {obj['schema']}, kind {obj.get('kind')!r})")
    problem = check_value(obj, Composition, "")
    if problem:
        raise BadRecord(f"{source}: invalid composition record: {problem}")
    return obj


def read_composition(path: Path) -> Composition:
    """The composition record in ``path``; BadRecord naming the file otherwise."""
    return as_composition(_read_json(path), str(path))


def to_json(record: Record) -> str:
    """The record as the text of a ``record.json`` (validated first)."""
    return json.dumps(validate(record), indent=2) + "\n"


def _check_schema(obj: Any, source: str) -> None:
    if not isinstance(obj, dict):
        kind = {list: "a JSON list", str: "a JSON string"}.get(type(obj), f"a JSON {type(obj).__name__}")
        raise BadRecord(f"{source}: not a record ({kind}, expected an object)")
    schema = obj.get("schema")
    if "schema" not in obj:
        raise BadRecord(f"{source}: not a record (no 'schema' field)")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise BadRecord(f"{source}: not a record (schema {schema!r} is not a number)")
    if schema < READABLE_SCHEMAS[0]:
        raise BadRecord(f"{source}: record schema {schema} is older than this modbench reads "
                        f"({READABLE_SCHEMAS[0]} to {READABLE_SCHEMAS[-1]})")
    if schema > READABLE_SCHEMAS[-1]:
        raise BadRecord(f"{source}: record schema {schema} is newer than this modbench reads "
                        f"({READABLE_SCHEMAS[0]} to {READABLE_SCHEMAS[-1]}); upgrade modbench")


_GPU_NAME = re.compile(r"NVIDIA|Tesla|GeForce|Quadro|Instinct|Radeon", re.IGNORECASE)


def _schema1_precision(recipe: Mapping[str, Any], device: Any) -> str:
    """What 'auto' meant for a schema-1 record: bf16 autocast on a GPU (told by its device name), fp32 on a CPU."""
    precision = recipe.get("precision", "auto")
    if precision in ("fp32", "bf16"):
        return precision
    return "bf16" if isinstance(device, str) and _GPU_NAME.search(device) else "fp32"


def upgrade_schema1(old: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-1 record as schema 2: the new fields derived from the old ones (no baseline: not recorded)."""
    record = {**old, "schema": 2}
    record.setdefault("dataset_args", {})
    record.setdefault("train_history", [])
    recipe = record.get("recipe") or {}
    record["precision"] = _schema1_precision(recipe, (record.get("env") or {}).get("device"))
    record["deterministic"] = bool(recipe.get("deterministic", False))
    record["config_key"] = config_key(record)
    record["baseline"] = None
    record["last_error"] = None
    return record



def upgrade_schema2(old: Mapping[str, Any]) -> dict[str, Any]:
    """A schema-2 record as schema 3: no cost (the standard model's training time was not recorded)."""
    return {**old, "schema": 3, "cost": None}
