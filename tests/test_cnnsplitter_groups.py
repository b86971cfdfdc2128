"""CNNSplitter's search space: importance, kernel groups, chromosome decoding, residual ties."""

from __future__ import annotations

import torch

from bench.models.cnn import mobilenetv2, rescnn, resnet18, simcnn
from bench.models.layers import ConvUnit, units
from bench.modular.importance import importance_orders, kernel_importance
from bench.modular.kernel_groups import GeneLayer, GeneLayout, tied_units
from bench.modular.masking import maskable_units


def keep_of(layout: GeneLayout, genes: list[int], importance: list[list[float]]) -> list[int]:
    """Kept kernel indices of one chromosome for one class (one gene layer of one unit)."""
    orders = importance_orders([torch.tensor([importance[0]])])
    keep = layout.decode(torch.tensor([[genes]], dtype=torch.bool), orders)[0, 0]
    return keep.nonzero().flatten().tolist()


def test_groups_are_contiguous_runs_of_the_importance_order_cut_like_array_split():
    layout = GeneLayout([GeneLayer(("u",), "u", 7, 3)], ["u"], [7])
    importance = [[0.1, 0.7, 0.3, 0.9, 0.2, 0.3, 0.0]]  # order: 3, 1, 2, 5 (tie kept in index order), 4, 0, 6
    assert layout.layers[0].group_of_rank().tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert keep_of(layout, [1, 0, 0], importance) == [1, 2, 3]
    assert keep_of(layout, [0, 1, 0], importance) == [4, 5]
    assert keep_of(layout, [0, 0, 1], importance) == [0, 6]
    assert keep_of(layout, [1, 0, 1], importance) == [0, 1, 2, 3, 6]


def test_a_layer_never_ends_up_empty_it_keeps_its_most_important_group():
    layout = GeneLayout([GeneLayer(("u",), "u", 4, 2)], ["u"], [4])
    assert keep_of(layout, [0, 0], [[0.0, 5.0, 1.0, 4.0]]) == [1, 3]


def test_more_groups_than_kernels_leaves_the_last_groups_empty():
    layer = GeneLayer(("u",), "u", 3, 5)
    assert layer.group_of_rank().tolist() == [0, 1, 2]
    layout = GeneLayout([layer], ["u"], [3])
    assert keep_of(layout, [0, 0, 0, 1, 1], [[1.0, 2.0, 3.0]]) == [2]  # empty groups keep nothing: fallback


def test_each_class_decodes_with_its_own_order_and_each_unit_lands_in_its_columns():
    layout = GeneLayout([GeneLayer(("b",), "b", 2, 2), GeneLayer(("a",), "a", 3, 3)], ["a", "b"], [3, 2])
    b_importance = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a_importance = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    orders = importance_orders([b_importance, a_importance])
    genes = torch.tensor([[[1, 0, 1, 0, 0]], [[1, 0, 1, 0, 0]]], dtype=torch.bool)  # b: group 0; a: group 0
    keep = layout.decode(genes, orders)[:, 0].int().tolist()
    assert keep == [[1, 0, 0, 1, 0], [0, 0, 1, 0, 1]]  # columns a0 a1 a2 b0 b1


def test_rescnn_pairs_share_genes_in_the_authors_chromosome_layout():
    model = rescnn(10, width=0.125)
    convs = [name for name, unit in units(model) if isinstance(unit, ConvUnit)]
    layout = GeneLayout.from_model(model, convs)
    c = convs  # conv0 .. conv11 in the authors' numbering
    expected = [(c[0],), (c[2],), (c[1], c[3]), (c[4],), (c[6],), (c[5], c[7]), (c[8],), (c[10],), (c[9], c[11])]
    assert [layer.units for layer in layout.layers] == expected
    assert layout.layers[2].probe == "features.3"  # the residual join: conv3's output plus conv1's
    genes = torch.rand(2, 3, layout.genes, generator=torch.Generator().manual_seed(0)) < 0.5
    orders = [torch.randperm(layer.size).expand(2, -1) for layer in layout.layers]
    keep = {name: part for name, part in zip(layout.unit_names, torch.split(layout.decode(genes, orders),
                                                                              layout.unit_sizes, dim=2), strict=True)}
    for a, b in ((c[1], c[3]), (c[5], c[7]), (c[9], c[11])):
        assert torch.equal(keep[a], keep[b])


def test_the_modbench_search_leaves_the_first_conv_whole_and_keeps_the_ties():
    model = rescnn(10, width=0.125)
    searched = [name for name, _ in maskable_units(model)]
    layout = GeneLayout.from_model(model, searched)
    assert len(layout.layers) == 8 and layout.unit_names == searched
    assert layout.genes == 8 * 10


def test_resnet18_ties_identity_chains_and_downsample_shortcuts():
    model = resnet18(10, width=0.125)
    groups = {tuple(members): probe for members, probe in tied_units(model)}
    stem_chain = ("features.0", "features.1.body.1", "features.2.body.1")
    assert groups[stem_chain] == "features.2"
    assert groups[("features.3.body.1", "features.3.shortcut", "features.4.body.1")] == "features.4"
    layout = GeneLayout.from_model(model, [n for n, _ in maskable_units(model)])
    assert ("features.1.body.1", "features.2.body.1") in [layer.units for layer in layout.layers]


def test_mobilenetv2_ties_the_projections_of_a_stage_through_its_stride_2_block():
    model = mobilenetv2(10, width=0.125)
    groups = {tuple(members): probe for members, probe in tied_units(model)}
    # stage 3: a stride-2 block (no join, nested in a Sequential), then two identity joins
    assert groups[("features.4.1", "features.5.body.1", "features.6.body.1")] == "features.6"
    assert groups[("features.4.0",)] == "features.4.0"  # an expansion with its depthwise filters: untied
    layout = GeneLayout.from_model(model, [n for n, _ in maskable_units(model)])
    assert sorted(layout.unit_names) == sorted(n for n, _ in maskable_units(model))


def test_large_layers_get_large_groups():
    model = simcnn(10)
    layout = GeneLayout.from_model(model, [n for n, _ in maskable_units(model)])
    assert [layer.groups for layer in layout.layers] == [10, 10, 10, 100, 100, 100] + [100] * 6
    assert layout.genes == 3 * 10 + 9 * 100


def test_importance_is_the_mean_post_relu_l1_over_confident_samples_of_the_class():
    torch.manual_seed(0)
    model = simcnn(3, width=0.125).eval()
    x, y = torch.randn(24, 3, 32, 32), torch.arange(24) % 3
    with torch.no_grad():
        l1 = torch.relu(model.features[:2](x)).sum(dim=(2, 3))  # (samples, channels)
        own = torch.softmax(model(x), 1)[torch.arange(24), y]
    some = min(float(own[y == c].max()) for c in range(3))  # every class has a confident sample, not all do
    for confidence in (some, 1.01):  # 1.01: no sample is that sure, every class falls back to all its samples
        (first,) = kernel_importance(model, [(x[:10], y[:10]), (x[10:], y[10:])], 3, ["features.1"], confidence)
        for c in range(3):
            chosen = (y == c) & (own >= confidence) if confidence < 1 else y == c
            assert torch.allclose(first[c].float(), l1[chosen].mean(0), rtol=1e-4, atol=1e-4)
    assert (own < some).any()  # the first threshold really leaves samples out
