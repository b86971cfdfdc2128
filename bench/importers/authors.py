"""The MwT and NeMo authors' released checkpoints, mapped onto the zoo's models.

``load_authors_checkpoint`` reads a state dict (``torch.load(weights_only=True)``: tensors only,
never code), builds the zoo model (with mask generators when the checkpoint has them), renames
every key through the (source, model) layout of ``bench.importers.layouts`` and loads the result
strictly. Anything that does not fit is one UsageError line naming the keys: checkpoint keys that
map nowhere, zoo keys left unfilled, shapes that differ.

Two fills are made and reported in the info, never silently: a zoo BatchNorm where the authors'
model has none (the first conv of their masked SimCNN / ResCNN, or every conv of a no-BN model
loaded into ``bn=true``) becomes an identity in evaluation (running mean 0, running variance
1 - eps, weight 1, bias 0; training it, as fine-tuning does, makes it an ordinary BatchNorm), and a
missing ``num_batches_tracked`` counter starts at 0.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import DataNotFound, UsageError
from bench.importers.keymap import KeyMap
from bench.importers.layouts import LAYOUTS, SOURCES, Layout
from bench.modular.masking import attach_generators

SHOWN = 4  # names per problem in an error line
BN_COUNTER = "num_batches_tracked"


def layout_for(source: str, model_name: str) -> Layout:
    """The layout of ``source``'s ``model_name``; UsageError naming what is supported otherwise."""
    if source not in SOURCES:
        raise UsageError(f"unknown checkpoint source '{source}' (choose {' or '.join(SOURCES)})")
    if (source, model_name) not in LAYOUTS:
        models = ", ".join(m for s, m in LAYOUTS if s == source)
        hint = "; the MwT baselines on ViTs come from the NeMo code: --source nemo" if source == "mwt" else ""
        raise UsageError(f"no {source} layout for model '{model_name}' (it has: {models}){hint}")
    return LAYOUTS[(source, model_name)]


def is_modular(state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether a checkpoint of the authors holds mask generators."""
    return any(".mask_generator." in key for key in state_dict)


class Mapping:
    """One checkpoint renamed into one zoo model's keys: the tensors, and what had to be filled."""

    def __init__(self, keymap: KeyMap, zoo: nn.Module) -> None:
        self.keymap = keymap
        self.expected = zoo.state_dict()
        self.tensors: dict[str, torch.Tensor] = {}
        self.unmapped: list[str] = []
        self.identity_bn: list[str] = []
        self.filled: list[str] = []

    def rename(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Move every checkpoint tensor to its zoo key (unmapped keys are kept by name)."""
        for key, tensor in state_dict.items():
            target = self.keymap.rename(key)
            if target is None or target not in self.expected:
                self.unmapped.append(key)
            else:
                self.tensors[target] = tensor

    def fill(self) -> None:
        """Identity BatchNorms where the source has none; zero counters where it has none."""
        for prefix in self.keymap.missing_bn:
            keys = [k for k in self.expected if k.startswith(prefix + ".")]
            if any(k in self.tensors for k in keys):
                continue
            for key in keys:
                self.tensors[key] = _identity_bn_value(key, self.expected[key])
            self.identity_bn.append(prefix)
        for key, value in self.expected.items():
            if key.endswith(BN_COUNTER) and key not in self.tensors:
                self.tensors[key] = torch.zeros_like(value)
                self.filled.append(key)

    def mismatched(self) -> list[str]:
        """Zoo keys whose renamed tensor has another shape."""
        return [k for k, v in self.tensors.items() if v.shape != self.expected[k].shape]

    def problems(self) -> list[str]:
        """What keeps the renamed tensors from loading strictly, one phrase per kind of problem."""
        found = []
        if self.unmapped:
            found.append(f"checkpoint keys that map nowhere: {_names(self.unmapped)}")
        unfilled = [k for k in self.expected if k not in self.tensors]
        if unfilled:
            found.append(f"zoo keys left unfilled: {_names(unfilled)}")
        shapes = [f"{k} (checkpoint {tuple(self.tensors[k].shape)}, zoo {tuple(self.expected[k].shape)})"
                  for k in self.mismatched()]
        if shapes:
            found.append(f"shapes differ: {_names(shapes)}")
        return found


def _identity_bn_value(key: str, like: torch.Tensor) -> torch.Tensor:
    eps = 1e-5  # nn.BatchNorm2d's default, the zoo's
    values = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0 - eps, BN_COUNTER: 0}
    return torch.full_like(like, values[key.rsplit(".", 1)[1]])


def _names(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _hint(mapping: Mapping) -> str:
    if any(k.endswith("running_mean") for k in mapping.unmapped):
        return " (the checkpoint has BatchNorms the zoo model lacks: bn=true?)"
    mismatched = mapping.mismatched()
    if mismatched and all(k.startswith(("classifier", "head")) for k in mismatched):
        return " (its classifier has another number of classes than the data set)"
    if mismatched:
        return " (another width or depth: check the model's arguments)"
    return ""


def map_with_fills(source: str, model_name: str, state_dict: dict[str, torch.Tensor],
                   zoo_model: nn.Module) -> Mapping:
    """Rename ``state_dict`` (the authors' layout) into ``zoo_model``'s keys; UsageError when it does not fit."""
    keymap = layout_for(source, model_name).key_map(zoo_model, is_modular(state_dict))
    mapping = Mapping(keymap, zoo_model)
    mapping.rename(state_dict)
    mapping.fill()
    problems = mapping.problems()
    if problems:
        raise UsageError(f"{source} {model_name} checkpoint does not fit the zoo model: {'; '.join(problems)}"
                         + _hint(mapping))
    mapping.tensors = {k: v.to(mapping.expected[k].dtype) for k, v in mapping.tensors.items()}
    return mapping


def map_state_dict(source: str, model_name: str, state_dict: dict[str, torch.Tensor],
                   zoo_model: nn.Module) -> dict[str, torch.Tensor]:
    """``state_dict`` in the authors' layout renamed into ``zoo_model``'s keys (every zoo key filled).

    ``zoo_model`` carries mask generators exactly when the checkpoint does (``attach_generators``).
    """
    return map_with_fills(source, model_name, state_dict, zoo_model).tensors


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict of finite tensors from ``path`` (``weights_only=True``; a DataParallel ``module.`` prefix
    removed)."""
    if not path.is_file():
        raise DataNotFound(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warning: the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickles with code, truncated or foreign files: one line (torch's own advice
        # is to load with weights_only=False, which would run whatever code the file holds)
        raise UsageError(f"checkpoint {path} is not a state dict of tensors ({type(exc).__name__}: it is damaged, "
                         "not a torch.save file, or holds more than tensors, which modbench never loads)") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"checkpoint {path} is not a state dict of tensors (torch.save(model.state_dict()))")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise UsageError(f"checkpoint {path} holds NaN or infinite values in {_names(nonfinite)}; "
                         "only finite weights are imported")
    return state


def load_authors_checkpoint(path: Path, source: str, model_name: str, model_args: dict[str, Any],
                            num_classes: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(zoo state dict, info) of an authors' checkpoint for the zoo model ``model_name:model_args``.

    The state dict holds mask generators when the checkpoint does (a modular-trained model) and loads
    strictly into ``attach_generators(build(num_classes, **model_args))``; the info says where it
    came from (file, checksum, source) and what was filled.
    """
    from bench.plugins.manager import get_plugins

    spec = get_plugins().models.get(model_name)
    args = spec.canonical_args(model_args)
    state = read_checkpoint(Path(path))
    zoo = spec.build(num_classes, **args)
    modular = is_modular(state)
    if modular:
        attach_generators(zoo)
    mapping = map_with_fills(source, spec.name, state, zoo)
    zoo.load_state_dict(mapping.tensors, strict=True)
    info = {"source": source, "repository": SOURCES[source], "layout": layout_for(source, spec.name).files,
            "file": str(path), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), "model": spec.name,
            "model_args": args, "num_classes": num_classes, "modular": modular, "tensors": len(state),
            "identity_bn": mapping.identity_bn, "filled": mapping.filled}
    if spec.family == "vit":
        info["note"] = "the authors' Hugging Face LayerNorms use eps 1e-12, the zoo's 1e-5"
    return zoo.state_dict(), info
