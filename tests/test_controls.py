"""Controls of a reused module: the units they pick (hand-made cases), and a tiny grid with controls end to end."""

from __future__ import annotations

import pytest
import torch

from bench.errors import UsageError
from bench.grid.config import parse_controls
from bench.models.cnn import simcnn
from bench.modular.controls import control_modules, magnitude_like, matched_masks, random_like, unit_l1
from bench.modular.masking import maskable_units
from bench.protocol.modules import ModuleSet

SIZES = [4, 6]


def mask(*kept: int, size: int = sum(SIZES)) -> torch.Tensor:
    out = torch.zeros(size, dtype=torch.bool)
    out[list(kept)] = True
    return out


def per_layer(keep: torch.Tensor) -> list[int]:
    return [int(part.sum()) for part in torch.split(keep, SIZES)]


def test_a_random_control_keeps_each_layers_count_and_is_seeded():
    keep = mask(0, 1, 4, 5, 6)  # 2 of the first layer's 4 units, 3 of the second's 6
    draws = [random_like(keep, SIZES, torch.Generator().manual_seed(seed)) for seed in range(20)]
    assert all(per_layer(d) == [2, 3] for d in draws)
    again = random_like(keep, SIZES, torch.Generator().manual_seed(3))
    assert torch.equal(again, draws[3])
    assert len({tuple(d.tolist()) for d in draws}) > 10  # not a fixed pattern
    assert any(not torch.equal(d, keep) for d in draws)


def test_a_magnitude_control_keeps_the_units_of_highest_l1_norm():
    scores = torch.tensor([0.5, 3.0, 2.0, 3.0, 1.0, 9.0, 4.0, 0.0, 4.0, 2.5], dtype=torch.float64)
    chosen = magnitude_like(mask(0, 1, 4, 5, 6), scores, SIZES)
    # layer 1: 3.0 at units 1 and 3 (ties go to the lower index... both kept); layer 2: 9.0, 4.0, 4.0
    assert torch.equal(chosen, mask(1, 3, 5, 6, 8))
    assert torch.equal(magnitude_like(mask(2, 9), scores, SIZES), mask(1, 5))  # a tie in layer 1: unit 1 first


def test_unit_l1_sums_each_units_absolute_weights():
    model = simcnn(4, width=0.125)
    named = maskable_units(model)
    with torch.no_grad():
        for _, unit in named:
            unit.conv.weight.fill_(0.0)
            unit.conv.weight[:, 0, 0, 0] = -torch.arange(unit.num_units, dtype=torch.float32)  # |w| = unit index
    norms = unit_l1(model, [name for name, _ in named])
    assert torch.equal(norms, torch.cat([torch.arange(u.num_units, dtype=torch.float64) for _, u in named]))


def test_unit_l1_of_a_vit_reads_each_neurons_weight_row():
    from bench.models.vit import vit_s

    model = vit_s(4, width=0.125, depth=2)
    name, unit = maskable_units(model)[0]
    with torch.no_grad():
        unit.weight.copy_(torch.ones_like(unit.weight) * torch.arange(unit.out_features)[:, None])
    assert torch.equal(unit_l1(model, [name]), torch.arange(unit.out_features).double() * unit.in_features)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return simcnn(4, width=0.125)


def cnn_modules(model, classes: list[tuple[list[int], list[int]]]) -> ModuleSet:
    """Module masks over ``model``'s first two maskable layers: per class, the units it keeps in each."""
    named = maskable_units(model)[:2]
    sizes = [u.num_units for _, u in named]
    rows = []
    for first, second in classes:
        row = torch.zeros(sum(sizes), dtype=torch.bool)
        row[first + [sizes[0] + i for i in second]] = True
        rows.append(row)
    return ModuleSet("kernel", [n for n, _ in named], sizes, torch.stack(rows))


def counts(modules: ModuleSet, row: torch.Tensor) -> list[int]:
    return [int(part.sum()) for part in torch.split(row, modules.sizes)]


def test_a_union_method_gets_one_control_of_the_tasks_module(cnn):
    modules = cnn_modules(cnn, [([0], [0, 1]), ([1, 2], [1, 5]), ([3], [7]), ([4], [9])])
    kept = matched_masks(modules, (0, 1), per_class=False)
    union = counts(modules, modules.target_mask((0, 1)))
    assert union == [3, 3]
    scores = unit_l1(cnn, modules.layers)
    for kind in ("random", "magnitude"):
        control = control_modules(modules, kept, kind, cnn, seed=0)
        assert torch.equal(control.masks[0], control.masks[1])  # the task's classes share the task's control
        assert counts(modules, control.masks[0]) == union
        assert torch.equal(control.masks[2:], modules.masks[2:])  # the other classes are untouched
    top = control_modules(modules, kept, "magnitude", cnn, seed=0).masks[0]
    for part, score in zip(torch.split(top, modules.sizes), torch.split(scores, modules.sizes), strict=True):
        assert score[part].min() >= score[~part].max()  # the kept units outweigh every dropped one
    random = [control_modules(modules, kept, "random", cnn, seed=s).masks[0] for s in (0, 0, 1)]
    assert torch.equal(random[0], random[1]) and not torch.equal(random[0], random[2])


def test_a_per_class_method_gets_a_control_of_each_class_module(cnn):
    modules = cnn_modules(cnn, [([0], [0]), ([1, 2], [1, 5, 6]), ([3], [7]), ([4], [9])])
    kept = matched_masks(modules, (0, 1), per_class=True)
    control = control_modules(modules, kept, "random", cnn, seed=4)
    assert counts(modules, control.masks[0]) == [1, 1] and counts(modules, control.masks[1]) == [2, 3]
    assert torch.equal(control.masks[2:], modules.masks[2:])


def test_a_rounded_module_is_matched_as_composed(cnn):
    modules = cnn_modules(cnn, [([0], [0, 1, 2]), ([1], [3]), ([3], [7]), ([4], [9])])
    modules.frequencies = torch.rand(4, modules.masks.shape[1], generator=torch.Generator().manual_seed(0))
    kept = matched_masks(modules, (0, 1), per_class=False, multiple=4)
    assert counts(modules, kept[0]) == [4, 4]  # the union (2, 4) rounded up to multiples of 4


@pytest.mark.parametrize("given, expected", [(("none",), ()), (("random",), ("random",)),
                                             (("random,magnitude",), ("random", "magnitude")),
                                             (("magnitude", "random"), ("magnitude", "random"))])
def test_controls_option(given, expected):
    assert parse_controls(given) == expected


def test_a_bad_control_is_one_line():
    with pytest.raises(UsageError, match="unknown control 'randon'; did you mean 'random'"):
        parse_controls(("randon",))


TINY_SEARCH = ("cnnsplitter.population=4", "cnnsplitter.generations=1", "cnnsplitter.parents=2",
               "cnnsplitter.elites=1", "cnnsplitter.beam_min=4", "cnnsplitter.active_min=0.8",
               "cnnsplitter.active_max=1.0")
CONTROLS = ("random", "magnitude")


@pytest.fixture(scope="module")
def plain(tmp_path_factory, one_torch_thread, tiny_standard):
    """mwt (a union method) and cnnsplitter (one module per class) on the tiny grid, without controls."""
    from bench.pipeline.runner import run_grid
    from bench.testing import make_tiny_grid

    out = tiny_standard.copy_to(tmp_path_factory.mktemp("plain") / "runs")
    grid = make_tiny_grid(out, methods="mwt,cnnsplitter", sets=TINY_SEARCH)
    return grid, run_grid(grid)


def without_timings(record: dict) -> dict:
    drop = ("env", "cost", "seconds", "latency_ratio", "latency_ratio_b1", "controls")
    clean = {k: v for k, v in record.items() if k not in drop}
    clean["tasks"] = [{k: v for k, v in t.items() if k not in drop} for t in record["tasks"]]
    clean["modularization"] = {k: v for k, v in record["modularization"].items() if k != "seconds"}
    clean["model_metrics"] = {k: v for k, v in record["model_metrics"].items() if k != "train_seconds"}
    return clean


def test_a_rerun_with_controls_computes_only_the_controls(plain, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    import bench.pipeline.stages.modularize
    import bench.pipeline.workspace
    from bench.pipeline.runner import run_grid
    from bench.pipeline.stages.train import TrainStage

    grid, before = plain
    grid = dataclasses.replace(grid, out=tmp_path / "runs", controls=CONTROLS)
    shutil.copytree(plain[0].out, grid.out)
    fits = []
    original_fit = bench.pipeline.workspace.fit
    monkeypatch.setattr(bench.pipeline.workspace, "fit", lambda *a, **k: fits.append(1) or original_fit(*a, **k))
    monkeypatch.setattr(TrainStage, "_train", lambda *a: pytest.fail("a trained model was trained again"))
    monkeypatch.setattr(bench.pipeline.stages.modularize, "collect_activity",
                        lambda *a, **k: pytest.fail("modules were computed again"))
    after = run_grid(grid)
    assert [without_timings(r) for r in after] == [without_timings(r) for r in before]  # the modules untouched
    computed = 0
    for record in after:
        for task in record["tasks"]:
            assert set(task["controls"]) == set(CONTROLS)
            for control in task["controls"].values():
                assert 0 <= control["module_acc"] <= 1 and 0 <= control["module_acc_before_finetune"] <= 1
                assert control["params"] == task["params"]  # as many units per layer: the same size
                same = control.get("same_as_module", False)
                assert same == (record["method"] == "standard")  # the whole model is its own control
                computed += not same
    assert computed == 4 and len(fits) == computed  # each control fine-tuned once, nothing else trained
    fits.clear()
    again = run_grid(dataclasses.replace(grid, controls=()))  # a re-run without controls keeps them
    assert not fits and [r["tasks"] for r in again] == [r["tasks"] for r in after]


def test_a_record_rewritten_without_controls_keeps_the_earlier_ones():
    from record_factory import task

    from bench.pipeline.stages.record import merged_tasks

    control = {"module_acc": 0.5, "module_acc_before_finetune": 0.4, "params": 10, "weight_retention": 0.5,
               "flops_ratio": 0.5}
    earlier = [task([0, 1], 0.9, controls={"random": control}), task([4, 5], 0.8)]
    now = [task([0, 1], 0.9, controls={"magnitude": control}), task([2, 3], 0.7)]
    merged = merged_tasks(now, earlier)
    assert [t["classes"] for t in merged] == [[0, 1], [2, 3], [4, 5]]
    assert set(merged[0]["controls"]) == {"random", "magnitude"} and "controls" not in merged[1]


@pytest.mark.parametrize("kind", ["random", "magnitude"])
def test_a_vit_control_pairs_as_many_query_and_key_dims_as_the_module(kind):
    from bench.modular.controls import magnitude_like, paired_keys

    layers, sizes = ["blocks.1.attn.q", "blocks.1.attn.k", "blocks.1.attn.v"], [8, 8, 8]
    keep = torch.zeros(24, dtype=torch.bool)
    keep[[0, 1, 2, 3, 8 + 2, 8 + 3, 8 + 4, 8 + 5, 16, 17, 18]] = True  # q and k share 2 dims
    scores = torch.arange(24, dtype=torch.float64).flip(0)  # lower index, higher score
    generator = torch.Generator().manual_seed(0)
    drawn = random_like(keep, sizes, generator) if kind == "random" else magnitude_like(keep, scores, sizes)
    control = paired_keys(drawn, keep, layers, sizes, scores if kind == "magnitude" else None, generator)
    q, k, v = torch.split(control, sizes)
    assert (int(q.sum()), int(k.sum()), int(v.sum()), int((q & k).sum())) == (4, 4, 3, 2)
    assert torch.equal(q, torch.split(drawn, sizes)[0]) and torch.equal(v, torch.split(drawn, sizes)[2])
    if kind == "magnitude":  # queries 0-3; keys: the best 2 of those, then the best 2 of the rest
        assert k.nonzero().flatten().tolist() == [0, 1, 4, 5]
