"""The shared training loop: schedules, model selection, divergence, distillation."""

import math

import pytest
import torch
from torch import nn

from bench.data import BatchLoader, TensorData
from bench.pipeline.training import Diverged, Schedule, distillation_loss, fit, make_optimizer, make_scheduler
from bench.protocol.recipe import Recipe


def _lrs(schedule: Schedule, steps_per_epoch: int = 2) -> list[float]:
    param = nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(Recipe(epochs=schedule.epochs), [{"params": [param]}], schedule.lr)
    scheduler = make_scheduler(optimizer, schedule, steps_per_epoch)
    seen = []
    for _ in range(schedule.epochs * steps_per_epoch):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_with_warmup():
    lrs = _lrs(Schedule(epochs=4, lr=1.0, warmup_epochs=1))
    assert lrs[:2] == pytest.approx([0.5, 1.0])  # linear warm-up over one epoch of 2 steps
    assert lrs[2] == pytest.approx(1.0) and lrs[-1] < 0.1 and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)


def test_cosine_horizon_stretches_the_schedule():
    half = _lrs(Schedule(epochs=4, lr=1.0, horizon=2.0))
    assert half[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 16)))  # MwT's T_max = 2 x epochs


def test_step_schedule_decays_tenfold_at_30_and_60_percent():
    lrs = _lrs(Schedule(epochs=10, lr=1.0, kind="step"), steps_per_epoch=1)
    assert lrs == pytest.approx([1.0] * 3 + [0.1] * 3 + [0.01] * 4)


def test_onecycle_rises_then_falls():
    lrs = _lrs(Schedule(epochs=10, lr=1.0, kind="onecycle"), steps_per_epoch=1)
    peak = lrs.index(max(lrs))
    assert 0 < peak < 9 and max(lrs) == pytest.approx(1.0, rel=0.05) and lrs[-1] < 0.01


def _data(n: int = 64) -> TensorData:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (y[:, None, None, None] * 200 + torch.randint(0, 50, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return TensorData(x, y)


def _loader(data: TensorData, shuffle: bool = False) -> BatchLoader:
    return BatchLoader(data, 16, mean=(0.5, 0.5, 0.5), std=(0.3, 0.3, 0.3), shuffle=shuffle)


def _flipped(data: TensorData) -> TensorData:
    """The same images with the other label: a validation split on which learning the training data loses."""
    return TensorData(data.x, 1 - data.y)


def _fit_with_snapshots(val: TensorData, loss_fn=None, epochs: int = 3) -> tuple[nn.Module, list[dict], list[dict]]:
    """A linear model fitted with model selection; (model, history, its weights after each epoch)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    snapshots = []
    history = fit(model, _loader(_data(), shuffle=True), _loader(val), Recipe(epochs=epochs, lr=0.01),
                  Schedule(epochs=epochs, lr=0.01), *([loss_fn] if loss_fn else []), select_best=True,
                  on_epoch=lambda row: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}))
    return model, history, snapshots


def _same(state: dict, other: dict) -> bool:
    return all(torch.equal(state[k], other[k]) for k in state)


def test_fit_learns_and_selects_the_best_validation_epoch():
    _, history, _ = _fit_with_snapshots(_data(32))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert max(row["val_acc"] for row in history) == 1.0


def test_fit_restores_the_weights_of_the_best_validation_epoch():
    """Validation labels flipped: the model learns, validation accuracy falls, so the best epoch is not the last and
    the weights after ``fit`` are that epoch's (not the last epoch's)."""
    model, history, snapshots = _fit_with_snapshots(_flipped(_data(32)))
    scores = [row["val_acc"] for row in history]
    best = scores.index(max(scores))  # the first best epoch: a later tie does not replace it
    assert best < len(history) - 1 and not _same(snapshots[best], snapshots[-1])
    assert _same(model.state_dict(), snapshots[best])


def test_a_diverged_epoch_ends_a_fit_with_selection_and_is_passed_over():
    """Issue 22, defect 4: under model selection a diverged epoch is a history row saying so, never a candidate."""
    epochs_seen = []

    def nan_from_epoch_two(model, x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        return (loss * float("nan") if len(epochs_seen) >= 1 else loss), {}

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    history = fit(model, _loader(_data()), _loader(_data(32)), Recipe(epochs=3, lr=0.01), Schedule(epochs=3, lr=0.01),
                  nan_from_epoch_two, select_best=True,
                  on_epoch=lambda row: epochs_seen.append({k: v.clone() for k, v in model.state_dict().items()}))
    assert [row["epoch"] for row in history] == [1, 2] and "val_acc" in history[0]
    assert history[1] == {"epoch": 2, "diverged": "the loss is nan at epoch 2 (try a smaller lr with --set lr=...)"}
    assert _same(model.state_dict(), epochs_seen[0])  # epoch 1's weights, all finite
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_fit_stops_with_a_clear_error_when_the_loss_diverges():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))

    def nan_loss(model, x, y):
        return model(x).sum() * float("nan"), {}

    with pytest.raises(Diverged, match=r"diverged.*epoch 1"):
        fit(model, _loader(_data()), None, Recipe(epochs=1), Schedule(epochs=1, lr=0.1), nan_loss)


def test_distillation_loss_matches_the_formula():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls = nn.Linear(4, 3)
            self.dist = nn.Linear(4, 3)

        def forward_heads(self, x):
            return self.cls(x), self.dist(x)

    torch.manual_seed(0)
    student, teacher = TwoHeads(), nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    loss, logs = distillation_loss(teacher)(student, x, y)
    target = torch.softmax(teacher(x), 1)
    kl = sum((target * (target.log() - torch.log_softmax(h(x), 1))).sum(1).mean() for h in (student.cls, student.dist))
    expected = 0.5 * nn.functional.cross_entropy(student.cls(x), y) + 0.25 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(logs) == {"ce", "kl"}


def _compile_fit(compile_step: bool) -> list[dict[str, float]]:
    from bench.models.cnn import resnet18

    torch.manual_seed(0)
    data = TensorData(torch.randint(0, 255, (32, 3, 32, 32), dtype=torch.uint8), torch.arange(32) % 4)
    loader = BatchLoader(data, 16, mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True)
    model = resnet18(4, width=0.125)  # no dropout: compiled and eager steps draw no random numbers
    return fit(model, loader, None, Recipe(epochs=2, compile=compile_step), Schedule(2, 0.05))


def test_compile_runs_the_training_step_through_torch_compile(monkeypatch):
    eager = _compile_fit(False)
    compiled_fns = []
    real_compile = torch.compile

    def aot_eager(fn, **kwargs):  # the same graph capture as inductor, without generating C++ (seconds, not minutes)
        compiled_fns.append(fn)
        return real_compile(fn, backend="aot_eager", **kwargs)

    monkeypatch.setattr(torch, "compile", aot_eager)
    compiled = _compile_fit(True)
    assert len(compiled_fns) == 1
    for a, b in zip(eager, compiled, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


@pytest.mark.slow
def test_compile_with_the_default_backend_matches_eager():
    for a, b in zip(_compile_fit(False), _compile_fit(True), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


def test_plain_training_keeps_biases_and_norms_out_of_weight_decay(monkeypatch):
    """The standard model and fine-tuned modules are treated like the masked models (modbench's presets)."""
    from bench.models.vit import vit_s
    from bench.pipeline import training

    seen = []
    real = training.make_optimizer
    monkeypatch.setattr(training, "make_optimizer", lambda recipe, groups, lr: seen.append(groups) or real(
        recipe, groups, lr))
    model = vit_s(4, width=0.125, depth=2)
    data = TensorData(torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 4)
    loader = BatchLoader(data, 8, mean=(0.5,) * 3, std=(0.25,) * 3)
    fit(model, loader, None, Recipe(epochs=1, optimizer="adamw", weight_decay=0.05), Schedule(1, 1e-3))
    (groups,) = seen
    decayed, undecayed = groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert undecayed["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.05  # the optimizer filled it in
    assert all(names[id(p)].endswith("bias") or "norm" in names[id(p)] for p in undecayed["params"])
    assert all(not names[id(p)].endswith("bias") and "norm" not in names[id(p)] for p in decayed["params"])
    assert len(decayed["params"]) + len(undecayed["params"]) == len(list(model.parameters()))
