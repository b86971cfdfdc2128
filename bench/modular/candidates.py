"""Many candidate modules scored in one forward pass of one shared model.

A candidate is a keep mask over the searched units. ``CandidateScorer`` stacks k candidates along
the batch (candidate-major: the cached inputs repeated k times) and gives every searched unit a
``StackedMask`` generator, so that each sample is multiplied by its own candidate's channel mask
after BN and before the ReLU. A dropped kernel's channel is then 0 everywhere downstream, which is
what physically removing it computes (``bench.modular.extract``; a test proves the equality), so
the search never slices a model: only the final modules are extracted. With ``batch_stats`` every
BatchNorm normalises each candidate with that candidate's own statistics over the scored samples
(``CandidateBatchNorm``), as the module in training mode would on those samples and close to what
``recalibrate_batchnorm`` stores for the composed module: a candidate is rated as the module it
becomes, not with the statistics the full model saw.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import units


class StackedMask(nn.Module):
    """Per-sample channel masks for a stack of candidates: ``masks`` (k, channels), each repeated per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.masks.shape[0]
        return self.masks.repeat_interleave(x.shape[0] // k, dim=0)  # (k * samples, channels)


class CandidateBatchNorm(nn.Module):
    """A BatchNorm2d applied to ``candidates`` stacked candidates, each with its own statistics.

    Mean and variance per candidate and channel over that candidate's samples and pixels (what the
    layer computes in training mode on that candidate's batch), then the layer's own affine.
    """

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.norm = norm
        self.candidates = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, channels = self.candidates, x.shape[1]
        samples = x.float()
        if k > 1:  # (k * n, c, h, w) -> (n, k * c, h, w): each candidate's channels are channels of their own
            samples = samples.view(k, -1, *x.shape[1:]).transpose(0, 1).reshape(-1, k * channels, *x.shape[2:])
        weight, bias = self.norm.weight, self.norm.bias
        out = F.batch_norm(samples, None, None, None if weight is None else weight.float().repeat(k),
                           None if bias is None else bias.float().repeat(k), training=True, eps=self.norm.eps)
        if k > 1:
            out = out.view(-1, k, channels, *x.shape[2:]).transpose(0, 1).reshape(x.shape)
        return out.to(x.dtype)


def _stacked_norms(model: nn.Module) -> list[CandidateBatchNorm]:
    """Every BatchNorm2d of ``model`` replaced (in place) by a ``CandidateBatchNorm`` around it."""
    norms = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                norms.append(CandidateBatchNorm(child))
                setattr(parent, name, norms[-1])
    return norms


class CandidateScorer:
    """Own-class logits of candidate modules on cached inputs, ``samples_per_pass`` samples a forward.

    ``model`` is copied once (eval mode, on its device) and the copy's searched units get stacked
    masks; ``unit_names``/``unit_sizes`` are the columns of a keep matrix. With ``batch_stats`` each
    candidate's BatchNorm statistics come from its own samples of a pass (all cached inputs when
    they fit in ``samples_per_pass``). ``candidates`` and ``seconds`` count the work done, for a
    candidates-per-second figure.
    """

    def __init__(self, model: nn.Module, unit_names: Sequence[str], unit_sizes: Sequence[int],
                 inputs: torch.Tensor, samples_per_pass: int = 4096, bf16: bool = False,
                 batch_stats: bool = False) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.norms = _stacked_norms(self.model) if batch_stats else []
        named = dict(units(self.model))
        self.masks = []
        for name in unit_names:
            named[name].generator = StackedMask()
            self.masks.append(named[name].generator)
        self.sizes = list(unit_sizes)
        self.inputs = inputs
        self.samples_per_pass = max(1, samples_per_pass)
        self.bf16 = bf16
        self.candidates = 0
        self.seconds = 0.0

    @torch.inference_mode()
    def own_class_logits(self, keep: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """(n, samples) float: candidate i's logit of class ``classes[i]`` on every cached input.

        ``keep`` (n, units) bool gives each candidate's kept kernels.
        """
        start = time.perf_counter()
        keep = keep.to(self.inputs.device).float()
        classes = classes.to(self.inputs.device)
        chunk = min(len(self.inputs), self.samples_per_pass)
        per_pass = max(1, self.samples_per_pass // chunk)
        out = torch.empty(len(keep), len(self.inputs), device=self.inputs.device)
        for first in range(0, len(keep), per_pass):
            rows = slice(first, first + per_pass)
            for mask, part in zip(self.masks, torch.split(keep[rows], self.sizes, dim=1), strict=True):
                mask.masks = part
            for s in range(0, len(self.inputs), chunk):
                out[rows, s:s + chunk] = self._pass(self.inputs[s:s + chunk], classes[rows])
        if out.is_cuda:
            torch.cuda.synchronize(out.device)
        self.candidates += len(keep)
        self.seconds += time.perf_counter() - start
        return out

    def _pass(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        k = len(classes)
        for norm in self.norms:
            norm.candidates = k
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x.repeat(k, 1, 1, 1)).float()  # (k * samples, num_classes)
        logits = logits.view(k, len(x), -1)
        return logits.gather(2, classes[:, None, None].expand(k, len(x), 1)).squeeze(2)  # (k, samples)

    @property
    def per_second(self) -> float:
        """Candidate modules scored per second so far (on all cached inputs each)."""
        return self.candidates / self.seconds if self.seconds > 0 else 0.0
