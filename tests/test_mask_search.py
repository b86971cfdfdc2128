"""The mask search GradSplitter and SeaM share: the straight-through rule, the phase plan and optimizers,
the selection rules, and a search that resumes from its checkpoint as if it had never stopped."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.modular.mask_search import HEAD, MASK, MaskSearch, Rates, alternating, freeze
from bench.modular.selection import CHOSEN, FALLBACK, FewestKept, SmallestReaching
from bench.modular.straight_through import binarize, kept_share
from methods.gradsplitter import GradSplitterHparams
from methods.seam import CYCLE, SeaMHparams


def test_binarize_is_a_step_forward_and_a_clipped_identity_backward():
    scores = torch.tensor([-0.5, 0.0, 2.0, 0.3], requires_grad=True)
    weights = torch.tensor([3.0, -0.5, 0.2, -4.0])
    mask = binarize(scores)
    assert mask.tolist() == [0.0, 0.0, 1.0, 1.0]  # kept where > 0: a score of exactly 0 is dropped
    (mask * weights).sum().backward()
    assert scores.grad.tolist() == pytest.approx([1.0, -0.5, 0.2, -1.0])  # hardtanh(3), -0.5, 0.2, hardtanh(-4)


def test_kept_share_counts_every_tensor_together_and_its_gradient_spreads_evenly():
    first, second = torch.tensor([[-1.0, 2.0]], requires_grad=True), torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    share = kept_share([first, second])
    assert share.item() == pytest.approx(3 / 5)  # 2.0, 0.5 and 1.0 kept of five entries
    (0.1 * share).backward()
    assert first.grad[0].tolist() == pytest.approx([0.02, 0.02]) and second.grad.tolist() == pytest.approx([0.02] * 3)


def test_the_authors_phase_plans():
    grad = GradSplitterHparams().phases()  # --epoch_strategy 5,140
    assert len(grad) == 145 and grad[:5] == (HEAD,) * 5
    assert grad[5:12] == (MASK,) * 5 + (HEAD,) * 2 and grad.count(MASK) == 100
    seam = alternating(0, CYCLE, SeaMHparams().epochs)
    assert len(seam) == 300 and seam[:6] == (HEAD, MASK, MASK, MASK, MASK, HEAD) and seam.count(HEAD) == 60


def test_selection_rules_on_hand_made_epochs():
    rule = FewestKept(reference=0.90, tolerance=0.01)
    slots = [rule.consider(e, acc, kept) for e, (acc, kept) in enumerate(
        [(0.95, 1.0), (0.895, 0.6), (0.89, 0.3), (0.905, 0.6), (0.92, 0.5)])]
    # 0.89 loses one point (not under one); of 0.6 twice, the more accurate second; 0.5 is the fewest kept
    assert slots == [[FALLBACK, CHOSEN], [CHOSEN], [], [CHOSEN], [CHOSEN]]
    assert rule.slot() == CHOSEN and rule.fewest == 0.5
    never = FewestKept(reference=0.99, tolerance=0.01)
    assert [never.consider(e, a, 0.5) for e, a in enumerate([0.5, 0.7, 0.7])] == [[FALLBACK], [FALLBACK], [FALLBACK]]
    assert never.slot() == FALLBACK

    seam = SmallestReaching(reference=0.9)
    epochs = [(0.95, 1.0), (0.91, 0.5004), (0.93, 0.5009), (0.905, 0.5001), (0.89, 0.1), (0.9, 0.2)]
    picks = [seam.consider(e, acc, kept) for e, (acc, kept) in enumerate(epochs)]
    # 0.5009 is as low in three decimals as 0.5004 but higher: kept out; 0.5001 is no higher than the pick
    # but less accurate: kept out; 0.1 misses the reference (yet leads on accuracy minus kept share)
    assert [CHOSEN in p for p in picks] == [True, True, False, False, False, True]
    assert seam.slot() == CHOSEN and (seam.kept, seam.accuracy) == (0.2, 0.9)
    assert [FALLBACK in p for p in picks] == [True, True, True, False, True, False]  # accuracy - kept rises


class _Toy(nn.Module):
    """A frozen linear model of two features, the second noise, a score per weight, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.model = freeze(nn.Linear(2, 1, bias=False))
        with torch.no_grad():
            self.model.weight.copy_(torch.tensor([[1.0, 0.8]]))
        self.scores = nn.Parameter(torch.ones(1, 2))
        self.head = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_output(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.model.weight * binarize(self.scores))

    def head_output(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def mask_scores(self) -> list[nn.Parameter]:
        return [self.scores]

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def kept(self) -> torch.Tensor:
        return kept_share([self.scores])

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.detach().clone(), "head.weight": self.head.weight.detach().clone()}


class _MemoryCheckpoint:
    def __init__(self, stop_after: int | None = None) -> None:
        self.state, self.saves, self.stop_after = None, 0, stop_after

    def load(self):
        return self.state

    def save(self, state):
        self.state = state
        self.saves += 1
        if self.saves == self.stop_after:
            raise KeyboardInterrupt  # the run is killed after this epoch's save


class _Progress:
    def __init__(self) -> None:
        self.labels: list[str] = []

    def start(self, description: str, total: int) -> None:
        self.labels.append(f"{description} ({total})")

    def advance(self, description: str | None = None) -> None:
        self.labels.append(description or "")


class _ToyLoader:
    """The toy's samples in batches of 32, shuffled anew each epoch from (epoch) alone."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.epoch = x, y, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.epoch))
        return iter([(self.x[i], self.y[i]) for i in order.split(32)])


def _search(checkpoint, progress=None) -> tuple:
    torch.manual_seed(0)
    x = torch.randn(256, 2)
    y = (x[:, 0] > 0).long()
    toy = _Toy()
    rates = Rates(head=0.05, later_head=0.005, mask=0.1, mask_head=0.01, restart=True)
    phases = alternating(3, (MASK, MASK, HEAD), 9)
    search = MaskSearch(toy, phases, rates, alpha=0.3, train=_ToyLoader(x, y), val=[(x, y)], name="toy")
    result = search.run(FewestKept(reference=1.0, tolerance=0.05), checkpoint, progress or _Progress())
    return toy, search, result


def test_a_search_drops_the_noise_weights_and_resumes_as_if_never_stopped():
    progress = _Progress()
    _, search, result = _search(_MemoryCheckpoint(), progress)
    assert (result.state["scores"] > 0).tolist() == [[True, False]]  # the signal feature stays, noise goes
    history = result.history
    assert history[result.epoch]["val_acc"] > 0.95 and history[result.epoch]["kept"] == 0.5
    assert [row["phase"] for row in history] == list(search.phases) and len(progress.labels) == 10
    assert all(row["kept_loss"] == 0 for row in history if row["phase"] == HEAD)  # heads alone: no penalty
    # a fresh Adam at each change of phase; the later head phase at the later rate
    assert search.optimizers[HEAD].param_groups[0]["lr"] == 0.005

    killed = _MemoryCheckpoint(stop_after=5)
    with pytest.raises(KeyboardInterrupt):
        _search(killed)
    killed.stop_after = None
    _, _, resumed = _search(killed)
    assert resumed.epoch == result.epoch and resumed.history == history
    assert all(torch.equal(resumed.state[k], result.state[k]) for k in result.state)


def test_head_epochs_leave_the_scores_alone_and_send_no_gradient_through_the_model():
    toy = _Toy()
    batch = (torch.randn(8, 2), torch.randint(0, 2, (8,)))
    search = MaskSearch(toy, (HEAD,), Rates(0.1, 0.1, 0.1, 0.1, restart=False), 1.0, _ToyLoader(*batch), [])
    head = toy.head.weight.detach().clone()
    search._epoch(0)
    assert torch.equal(toy.scores, torch.ones(1, 2)) and toy.scores.grad is None
    assert not torch.equal(toy.head.weight, head)
    assert math.isclose(float(toy.kept()), 1.0)
