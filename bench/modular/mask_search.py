"""A gradient search of binary masks on a frozen model: alternating head-only and mask epochs, each epoch
scored on the validation split, one epoch chosen by the method's rule (GradSplitter, SeaM).

The *searcher* is a module wrapping the frozen model (every weight fixed, BatchNorm and dropout in
eval mode) with real-valued mask scores (binarised in the forward pass, ``straight_through``) and a
trainable head. A head epoch trains the head alone on cross-entropy, the scores untouched (and no
gradient flows back through the model); a mask epoch trains scores and head together on
cross-entropy + ``alpha`` * the share of kept entries. After every epoch the searcher's accuracy on
the validation split and its kept share go to the method's ``Choice``, which says which epochs to
keep (a chosen one and a fallback); the state is saved through the stage checkpoint, so a killed
search resumes at its next epoch and ends as an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from bench.protocol.method import StageCheckpoint, StageProgress

HEAD, MASK = "head", "mask"
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Searcher(Protocol):
    """What the search trains: an ``nn.Module`` whose forward is ``head_output(features(x))``, logits over the
    searched outputs."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen model's output under the current masks (what the head reads)."""

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        """The head's logits on ``features``."""

    def mask_scores(self) -> list[nn.Parameter]:
        """The real-valued mask scores (kept where > 0)."""

    def head_parameters(self) -> list[nn.Parameter]:
        """The head's parameters."""

    def kept(self) -> torch.Tensor:
        """The share of kept mask entries (0-dim, differentiable through the straight-through rule)."""

    def snapshot(self) -> dict[str, torch.Tensor]:
        """The scores and head weights as they are now, detached on the CPU (an epoch a choice keeps)."""


class Choice(Protocol):
    """A method's rule for the epoch the search ends with; a dataclass of plain values (it is checkpointed)."""

    def consider(self, epoch: int, accuracy: float, kept: float) -> list[str]:
        """The slots ('chosen', 'fallback') that take this epoch's state."""

    def slot(self) -> str:
        """The slot the search ends with."""


@dataclass(frozen=True)
class Rates:
    """Adam learning rates per phase. ``head``: the head in head epochs (``later_head`` once a mask epoch has
    run); ``mask`` the scores and ``mask_head`` the head in mask epochs. ``restart``: a fresh Adam at every
    change of phase (GradSplitter) rather than one Adam per phase, kept for the whole search (SeaM)."""

    head: float
    later_head: float
    mask: float
    mask_head: float
    restart: bool


@dataclass
class SearchResult:
    """The chosen epoch's state (a ``Searcher.snapshot``), its epoch, and one figures dict per epoch."""

    state: dict[str, torch.Tensor]
    epoch: int
    history: list[dict[str, Any]]
    seconds: float


def alternating(first_heads: int, cycle: Sequence[str], epochs: int) -> tuple[str, ...]:
    """``first_heads`` head epochs, then ``cycle`` repeated, ``epochs`` in all."""
    plan = [HEAD] * first_heads
    while len(plan) < epochs:
        plan.extend(cycle)
    return tuple(plan[:epochs])


def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode (BatchNorm statistics and dropout fixed) with no parameter requiring a gradient."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


class MaskSearch:
    """The epochs of ``phases`` (HEAD or MASK each) over ``train``, every epoch scored on ``val``."""

    def __init__(self, searcher: nn.Module, phases: Sequence[str], rates: Rates, alpha: float, train: Any,
                 val: Batches, bf16: bool = False, name: str = "search") -> None:
        self.searcher, self.phases, self.rates, self.alpha = searcher, tuple(phases), rates, alpha
        self.train, self.val, self.bf16, self.name = train, val, bf16, name
        self.device = next(searcher.parameters()).device
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def run(self, choice: Choice, checkpoint: StageCheckpoint, progress: StageProgress) -> SearchResult:
        """Search from the checkpoint's epoch (or the first) to the last; the chosen epoch's state."""
        state = checkpoint.load() or self._initial(choice)
        self._restore(state)
        choice = type(choice)(**state["choice"])
        progress.start(f"{self.name} from epoch {state['epoch']}", len(self.phases) - state["epoch"])
        while state["epoch"] < len(self.phases):
            started, epoch = time.perf_counter(), state["epoch"]
            row = {"epoch": epoch + 1, "phase": self.phases[epoch], **self._epoch(epoch)}
            row["val_acc"], row["kept"] = self._score()
            for slot in choice.consider(epoch, row["val_acc"], row["kept"]):
                state["slots"][slot] = {"epoch": epoch, **self.searcher.snapshot()}
            state["seconds"] += time.perf_counter() - started
            state.update(epoch=epoch + 1, choice=dataclasses.asdict(choice), history=[*state["history"], row],
                         **self._saved())
            checkpoint.save(state)
            progress.advance(f"{self.name} epoch {epoch + 1}/{len(self.phases)} ({row['phase']}): "
                             f"val acc {row['val_acc']:.3f}, kept {row['kept']:.3f}")
        chosen = dict(state["slots"][choice.slot()])
        return SearchResult(chosen, int(chosen.pop("epoch")), state["history"], state["seconds"])

    def _epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of its phase; the mean loss terms."""
        phase = self.phases[epoch]
        optimizer = self._optimizer(epoch)
        for p in self.searcher.mask_scores():
            p.requires_grad_(phase == MASK)
        self.train.set_epoch(epoch)
        sums = torch.zeros(2, device=self.device)
        steps = 0
        for x, y in self.train:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                ce = F.cross_entropy(self._logits(x, phase), y)
            kept = self.searcher.kept() if phase == MASK else ce.new_zeros(())
            optimizer.zero_grad(set_to_none=True)
            (ce + self.alpha * kept).backward()
            optimizer.step()
            sums += torch.stack([ce.detach().float(), kept.detach().float()])
            steps += 1
        ce_mean, kept_mean = (sums / max(steps, 1)).tolist()
        return {"ce": ce_mean, "kept_loss": kept_mean}

    def _logits(self, x: torch.Tensor, phase: str) -> torch.Tensor:
        """The searcher's logits; in a head epoch the frozen model runs without autograd (2-3x faster on a CPU)."""
        if phase == MASK:
            return self.searcher(x)
        with torch.no_grad():
            features = self.searcher.features(x)
        return self.searcher.head_output(features)

    def _optimizer(self, epoch: int) -> torch.optim.Optimizer:
        """The phase's Adam: a fresh one at a change of phase when ``restart``, else the phase's own."""
        phase = self.phases[epoch]
        changed = epoch == 0 or self.phases[epoch - 1] != phase
        if phase not in self.optimizers or (self.rates.restart and changed):
            self.optimizers[phase] = self._new_optimizer(phase, MASK in self.phases[:epoch])
        return self.optimizers[phase]

    def _new_optimizer(self, phase: str, after_masks: bool) -> torch.optim.Optimizer:
        heads = self.searcher.head_parameters()
        if phase == HEAD:
            return torch.optim.Adam(heads, lr=self.rates.later_head if after_masks else self.rates.head)
        return torch.optim.Adam([{"params": self.searcher.mask_scores(), "lr": self.rates.mask},
                                 {"params": heads, "lr": self.rates.mask_head}])

    @torch.no_grad()
    def _score(self) -> tuple[float, float]:
        """(validation accuracy, kept share) of the searcher as it is."""
        correct = total = 0
        for x, y in self.val:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                correct += int((self.searcher(x).argmax(1) == y).sum())
            total += len(y)
        return correct / max(total, 1), float(self.searcher.kept())

    def _trainable(self) -> list[nn.Parameter]:
        return [*self.searcher.mask_scores(), *self.searcher.head_parameters()]

    def _initial(self, choice: Choice) -> dict[str, Any]:
        return {"epoch": 0, "choice": dataclasses.asdict(choice), "slots": {}, "history": [], "seconds": 0.0,
                **self._saved()}

    def _saved(self) -> dict[str, Any]:
        """The trainable tensors and the optimizers' states, as the checkpoint keeps them."""
        return {"params": [p.detach().cpu().clone() for p in self._trainable()],
                "optimizers": {phase: opt.state_dict() for phase, opt in self.optimizers.items()}}

    def _restore(self, state: dict[str, Any]) -> None:
        """The trainable tensors and optimizers of ``state`` (an optimizer's learning rates come with it)."""
        with torch.no_grad():
            for p, saved in zip(self._trainable(), state["params"], strict=True):
                p.copy_(saved)
        for phase, saved in state["optimizers"].items():
            self.optimizers[phase] = self._new_optimizer(phase, after_masks=False)
            self.optimizers[phase].load_state_dict(saved)
