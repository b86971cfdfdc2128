"""GradSplitter's pieces on a tiny CNN: the class modules of one stacked pass are the model under each class's
kernel masks, the loss terms by hand, the empty-layer rule, the composed modules, and its settings."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from bench.errors import UsageError
from bench.models.cnn import mobilenetv2, simcnn
from bench.modular.masking import fix_masks, maskable_units
from bench.protocol.modules import ModuleSet
from methods.gradsplitter import GradSplitter, GradSplitterHparams, KernelSplitter, kept_kernels

CLASSES = 3


@pytest.fixture(scope="module", params=["simcnn", "mobilenetv2"])
def splitter(request) -> KernelSplitter:
    torch.manual_seed(0)
    model = {"simcnn": simcnn, "mobilenetv2": mobilenetv2}[request.param](CLASSES, width=0.125).eval()
    splitter = KernelSplitter(model, CLASSES)
    with torch.no_grad():
        for scores in splitter.mask_scores():
            scores.copy_(torch.randn_like(scores) + 0.8)  # most kernels kept, some dropped, per class
    return splitter


def _class_scores(splitter: KernelSplitter, c: int) -> dict[str, torch.Tensor]:
    names = [name for name, _ in maskable_units(splitter.model)]
    return {name: s[c].detach() > 0 for name, s in zip(names, splitter.mask_scores(), strict=True)}


def test_each_column_is_the_model_under_its_class_masks_through_its_head(splitter):
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        scores = splitter(x)  # (batch, classes)
        for c in range(CLASSES):
            plain = copy.deepcopy(splitter.model)
            for _, unit in maskable_units(plain):
                unit.generator = None
            masked = fix_masks(plain, _class_scores(splitter, c))
            expected = splitter.heads[c](masked(x))  # ReLU, Linear, ReLU, Linear, sigmoid on the logits
            assert torch.allclose(scores[:, c : c + 1], expected, atol=1e-5)
    assert ((scores > 0) & (scores < 1)).all()


def test_the_loss_terms_by_hand(splitter):
    scores = splitter.mask_scores()
    kept = sum(int((s > 0).sum()) for s in scores) / sum(s.numel() for s in scores)
    assert splitter.kept().item() == pytest.approx(kept)  # the mean of every class's binarised masks
    out = torch.tensor([[0.9, 0.2, 0.1]])  # three module scores, the first the label's
    ce = F.cross_entropy(out, torch.tensor([0]))
    by_hand = -0.9 + torch.log(torch.exp(torch.tensor([0.9, 0.2, 0.1])).sum())
    assert ce.item() == pytest.approx(by_hand.item())  # cross-entropy over the sigmoid scores, as the authors
    assert all(p.requires_grad is False for p in splitter.model.parameters() if p not in set(scores))


def test_an_empty_layer_keeps_its_highest_scored_kernel():
    scores = torch.tensor([[0.5, -1.0, -0.2, -0.1, -3.0],
                           [-1.0, -2.0, 0.3, -0.5, 0.1]])  # two classes; layers of 2 and 3 kernels
    keep, fallbacks = kept_kernels(scores, [2, 3])
    assert keep.tolist() == [[True, False, False, True, False], [True, False, True, False, True]]
    assert fallbacks == 2  # class 0's second layer, class 1's first


def test_composed_class_modules_vote_as_the_search_scored_them(splitter):
    names = [name for name, _ in maskable_units(splitter.model)]
    sizes = [u.num_units for _, u in maskable_units(splitter.model)]
    state = splitter.snapshot()
    keep, _ = kept_kernels(state.pop("scores"), sizes)
    modules = ModuleSet("kernel", names, sizes, keep, tensors=state)
    plain = copy.deepcopy(splitter.model)
    for _, unit in maskable_units(plain):
        unit.generator = None
    ctx = type("Ctx", (), {"num_classes": CLASSES})()
    composed = GradSplitter().compose(ctx, type("T", (), {"model": plain})(), modules, [2, 0]).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        out, expected = composed(x), splitter(x)
    assert out.shape == (4, CLASSES) and torch.equal(out[:, 1], torch.zeros(4))  # class 1 is not in the task
    assert torch.allclose(out[:, [2, 0]], expected[:, [2, 0]], atol=1e-5)  # extracted modules, same scores


@pytest.mark.parametrize("setting", ["alpha=0", "lr_mask=-0.1", "cycles=0", "tolerance=-1"])
def test_non_positive_settings_are_refused(setting):
    name, value = setting.split("=")
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        GradSplitterHparams(**{name: type(getattr(GradSplitterHparams(), name))(value)})


def test_a_refused_setting_stops_the_run_in_one_line_before_any_work(tiny_grid):
    from bench.pipeline.runner import run_grid

    grid = tiny_grid(methods="gradsplitter", sets=["gradsplitter.alpha=0"])
    with pytest.raises(UsageError, match=r"^method gradsplitter: alpha must be positive, got 0\.0$"):
        run_grid(grid)
    assert not grid.out.exists()
