"""Metrics against small hand-computed cases."""

import math

import pytest
import torch
from torch import nn

import bench.pipeline.latency
from bench.models.vit import vit_s
from bench.pipeline import metrics
from bench.protocol.modules import ActivityStats, ModuleSet


def test_pairwise_jaccard_hand_computed():
    sets = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    # J(0,1) = 1/3, J(0,2) = 1, J(1,2) = 1/3
    assert metrics.mean_pairwise_jaccard(sets) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)


def test_pairwise_jaccard_edge_cases():
    assert math.isnan(metrics.mean_pairwise_jaccard(torch.ones(1, 3, dtype=torch.bool)))
    empty = torch.zeros(2, 3, dtype=torch.bool)
    assert metrics.mean_pairwise_jaccard(empty) == 1.0  # two empty sets are identical
    disjoint = torch.tensor([[1, 0], [0, 1]], dtype=torch.bool)
    assert metrics.mean_pairwise_jaccard(disjoint) == 0.0


def test_pairwise_jaccard_matches_brute_force():
    torch.manual_seed(0)
    sets = torch.rand(12, 30) > 0.6
    brute = []
    for i in range(12):
        for j in range(12):
            if i != j:
                inter = (sets[i] & sets[j]).sum().item()
                union = (sets[i] | sets[j]).sum().item()
                brute.append(inter / union if union else 1.0)
    assert metrics.mean_pairwise_jaccard(sets) == pytest.approx(sum(brute) / len(brute))


def _modules(masks: list[list[int]]) -> ModuleSet:
    return ModuleSet("kernel", ["a", "b"], [2, 2], torch.tensor(masks, dtype=torch.bool))


def test_cohesion_restricts_samples_to_their_class_module():
    modules = _modules([[1, 1, 0, 0], [0, 0, 1, 1]])
    samples = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)
    stats = ActivityStats(["a", "b"], [2, 2], torch.zeros(2, 4, dtype=torch.long), torch.tensor([2, 2]),
                          samples, torch.tensor([0, 0, 1, 1]))
    # class 0 inside {0,1}: {0,1} vs {0} -> 1/2 ; class 1 inside {2,3}: {2,3} vs {2,3} -> 1
    assert metrics.cohesion(stats, modules) == pytest.approx(0.75)


def test_coupling_is_mean_jaccard_between_class_modules():
    modules = _modules([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]])
    # J(0,1) = 1/3, J(0,2) = 1/2, J(1,2) = 1/2
    assert metrics.coupling(modules) == pytest.approx((1 / 3 + 0.5 + 0.5) / 3)


def test_retention_and_params():
    assert metrics.retention(torch.tensor([True, False, True, True])) == 0.75
    assert metrics.count_params(nn.Linear(3, 2)) == 8


class Fixed(nn.Module):
    """A model whose logits are its inputs."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x


def test_accuracy_with_restricted_columns():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 2.0], [3.0, 5.0, 1.0]])
    # Restricted to classes (0, 2): argmax -> [1, 1, 0] in task labels.
    batches = [(logits, torch.tensor([1, 0, 0]))]
    assert metrics.accuracy(Fixed(), batches, columns=[0, 2]) == pytest.approx(2 / 3)
    assert metrics.accuracy(Fixed(), batches) == pytest.approx(1 / 3)


def test_one_vs_rest_accuracy_says_target_when_the_argmax_over_every_class_is_it():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 1.0, 2.0], [3.0, 5.0, 1.0], [0.0, 1.0, 9.0]])
    # argmax [1, 2, 1, 2]: for target 1 the answers are [0, 1, 0, 1] (0: the target, 1: another class),
    # for target 2 [1, 0, 1, 0]; the labels [0, 1, 1, 1].
    batches = [(logits[:2], torch.tensor([0, 1])), (logits[2:], torch.tensor([1, 1]))]
    assert metrics.one_vs_rest_accuracy(Fixed(), batches, 1) == pytest.approx(3 / 4)
    assert metrics.one_vs_rest_accuracy(Fixed(), batches, 2) == pytest.approx(1 / 4)


def test_flops_count_linear_and_conv_as_multiply_adds():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))
    expected = 4 * 3 * 9 * 32 * 32 + 4 * 32 * 32 * 10
    assert metrics.count_flops(model) == expected


def test_flops_include_attention():
    model = vit_s(10, width=0.25, depth=2)
    tokens, dim, heads = 65, 96, 12
    per_block = heads * tokens * tokens * (dim // heads) * 2  # q·kᵀ and attn·v
    counts = metrics.flops_by_operator(model)
    assert counts["scaled_dot_product_attention"] == 2 * per_block
    assert counts["linear"] == 2 * tokens * (4 * dim * dim + 2 * dim * 384) + dim * 10
    assert metrics.count_flops(model) == sum(counts.values())


class _Uncounted(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):
        return torch.ops.aten.mv(self.w, x.flatten()[:8])


def test_flops_fail_loudly_on_uncounted_compute():
    with pytest.raises(RuntimeError, match="cannot count"):
        metrics.count_flops(_Uncounted())


def _big_and_small() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 64, 3, padding=1))
    return big, nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))


ROUNDS = {("small", 8): [3.0, 2.0, 4.0], ("big", 8): [6.0, 5.0, 7.0],  # seconds each round of the fake clock
          ("small", 1): [2.0, 1.0, 3.0], ("big", 1): [4.0, 4.0, 8.0]}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_latency_ratios_divide_the_fastest_rounds_at_a_throughput_batch_and_one_image(precision, monkeypatch):
    """A fake clock (no wall-clock figure asserted): each timed pass runs for real, in eval mode, without gradients,
    on one thread and in the run's precision; the ratio divides each side's fastest round."""
    big, small = _big_and_small()
    names = {id(big): "big", id(small): "small"}
    timed = {key: list(seconds) for key, seconds in ROUNDS.items()}

    def fake_seconds(run, device, max_seconds):
        model, (x,) = run.func, run.args
        assert not model.training and not torch.is_grad_enabled() and torch.get_num_threads() == 1
        assert torch.is_autocast_enabled("cpu") == (precision == "bf16")
        assert run().shape[0] == x.shape[0]  # a real pass of the batch
        return timed[(names[id(model)], x.shape[0])].pop(0)

    monkeypatch.setattr(bench.pipeline.latency, "call_seconds", fake_seconds)
    big.train()
    small.eval()
    ratios = metrics.latency_ratios(small, big, precision, throughput_batch=8)
    assert ratios == {"latency_ratio": 2.0 / 5.0, "latency_ratio_b1": 1.0 / 4.0}
    assert all(not seconds for seconds in timed.values())  # every round timed
    assert big.training and not small.training  # train/eval modes restored


def test_latency_ratios_time_real_passes():
    """The real clock, briefly: a positive, finite ratio (how large is the benchmarks' business)."""
    big, small = _big_and_small()
    ratios = metrics.latency_ratios(small, big, "fp32", throughput_batch=4, max_seconds=0.01)
    assert all(0 < value < math.inf for value in ratios.values())


def test_latency_ratios_reject_an_unknown_precision():
    big, small = _big_and_small()
    with pytest.raises(ValueError, match="precision"):
        metrics.latency_ratios(small, big, "fp16", throughput_batch=2)


def test_flops_do_not_depend_on_precision():
    model = vit_s(10, width=0.25, depth=2)
    full = metrics.count_flops(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert metrics.count_flops(model) == full
    assert metrics.count_flops(model.to(torch.bfloat16)) == full


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_latency_ratios_on_a_gpu_time_graph_replays(precision):
    from bench.modular.extract import extract
    from bench.modular.masking import attach_generators, maskable_units

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    torch.manual_seed(0)
    model = attach_generators(vit_s(10, width=0.5, depth=4)).cuda()
    keep = {n: torch.rand(u.num_units) < 0.3 for n, u in maskable_units(model)}
    for mask in keep.values():
        mask[0] = True
    module = extract(model, keep)
    ratios = metrics.latency_ratios(module, vit_s(10, width=0.5, depth=4).cuda(), precision, throughput_batch=256)
    assert 0 < ratios["latency_ratio"] < 1  # launch overhead alone would make both equally fast
