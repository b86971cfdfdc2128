"""CNNSplitter's search speed: candidate modules scored per second, stacked along the batch or one at a time.

Run with ``pytest tests/benchmarks/test_cnnsplitter_speed.py --benchmark-only`` (add ``-m cuda`` on a
GPU machine). Each round scores one generation's worth of candidates of a small population on the
held-out set of ``digits`` (144 images); ``extra_info`` holds candidates per second.
"""

import pytest
import torch

from bench.models.cnn import simcnn
from bench.modular.candidates import CandidateScorer
from bench.modular.masking import maskable_units

pytestmark = pytest.mark.benchmark(group="cnnsplitter")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
SAMPLES = 144  # the held-out split of digits
MODELS = {"simcnn-w.25": lambda: simcnn(10, width=0.25), "simcnn": lambda: simcnn(10)}
CANDIDATES = {"cpu": 40, "cuda": 400}
STACKED = {"stacked": 8192, "one-at-a-time": SAMPLES}  # samples a forward pass: many candidates, or one


def _score(scorer: CandidateScorer, keep: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    return scorer.own_class_logits(keep, classes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mode", list(STACKED))
def test_candidates_per_second(benchmark, device, name, mode):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if device == "cpu" and name == "simcnn":
        pytest.skip("the full-size SimCNN is timed on the GPU only")
    torch.manual_seed(0)
    model = MODELS[name]().eval().to(device)
    named = maskable_units(model)
    names, sizes = [n for n, _ in named], [u.num_units for _, u in named]
    count = CANDIDATES[device]
    keep, classes = torch.rand(count, sum(sizes)) < 0.7, torch.arange(count) % 10
    inputs = torch.randn(SAMPLES, 3, 32, 32, device=device)
    scorer = CandidateScorer(model, names, sizes, inputs, STACKED[mode], bf16=device == "cuda")
    _score(scorer, keep[:2], classes[:2])  # warm-up
    scorer.candidates, scorer.seconds = 0, 0.0
    votes = benchmark.pedantic(_score, args=(scorer, keep, classes), rounds=3, iterations=1)
    benchmark.extra_info["candidates_per_second"] = round(scorer.per_second, 1)
    assert votes.shape == (count, SAMPLES) and torch.isfinite(votes).all()
