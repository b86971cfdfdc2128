"""Mask generators and the policy deciding which units of a zoo model are masked.

A generator sees a unit's *input*, pools it (over space for a conv, over tokens for a linear
layer) and maps it through Linear -> ReLU -> Linear -> tanh -> ReLU to a per-sample mask in
[0, 1) over the unit's outputs. Attaching generators turns a zoo model into its modular form
in place; the architecture is otherwise unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import ConvUnit, LinearUnit, Residual, units
from bench.models.vit import Attention
from bench.modular.autocast import without_autocast
from bench.modular.similarity import MaskList
from bench.modular.slicing import sliced_linear

# (hidden-halving threshold, first layer has a bias) per unit kind, as in the authors' code:
# MwT's conv generators halve from 128 outputs and have no first bias, NeMo's neuron generators
# halve only from 3073 (never, for ViT-s) and carry both biases.
CONV_GENERATOR = (128, False)
LINEAR_GENERATOR = (3073, True)


class MaskGenerator(nn.Module):
    """Linear(in -> h) -> ReLU -> Linear(h -> out) -> tanh -> ReLU on the pooled input.

    ``h`` is ``out`` when ``out < halve_from`` else ``out // 2``; weights kaiming-normal, biases
    1.0, so a fresh generator starts with most units open.
    """

    def __init__(self, in_features: int, out_features: int, halve_from: int = 128, first_bias: bool = False) -> None:
        super().__init__()
        hidden = out_features if out_features < halve_from else out_features // 2
        self.fc1 = nn.Linear(in_features, hidden, bias=first_bias)
        self.fc2 = nn.Linear(hidden, out_features)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight)
            if fc.bias is not None:
                nn.init.constant_(fc.bias, 1.0)
        self.shared: tuple[SharedInput, int] | None = None  # (group, slot) when it shares its input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shared is not None:
            group, slot = self.shared
            return group.mask(slot, x)
        return joint_masks([self], x)[0]

    def sliced(self, inputs: torch.Tensor, outputs: torch.Tensor) -> MaskGenerator:
        """A generator reading only the ``inputs`` features and masking only the ``outputs`` units (index
        tensors): the masks this one gives those units when every other input is zero (the authors'
        module-reuse generators pad the dropped inputs with zeros). Its hidden layer is kept whole."""
        new = MaskGenerator.__new__(MaskGenerator)  # no fresh layers: the sliced copies are its layers
        nn.Module.__init__(new)
        new.fc1, new.fc2 = sliced_linear(self.fc1, cols=inputs), sliced_linear(self.fc2, rows=outputs)
        new.shared = None
        return new


def _pooled(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, features): ``x`` averaged over space (batch, c, h, w) or tokens (batch, tokens, c), in ``dtype``."""
    dims = (2, 3) if x.dim() == 4 else 1 if x.dim() == 3 else None
    return x.to(dtype) if dims is None else x.mean(dim=dims, dtype=dtype)


def joint_masks(generators: list[MaskGenerator], x: torch.Tensor) -> list[torch.Tensor]:
    """The masks of generators of equal shape that read the same ``x``, in one pass.

    One pooling, one product for the first layers (weights side by side) and one batched product
    for the second: a group of n generators costs the kernels of one. In the weights' dtype,
    outside autocast: the masks feed the mask losses, the small products cost nothing, and no
    weight or gradient is cast at every step.
    """
    first, n = generators[0], len(generators)
    with without_autocast(x.device.type):
        pooled = _pooled(x, first.fc1.weight.dtype)  # (batch, in_features)
        if n == 1:
            return [F.relu(torch.tanh(first.fc2(F.relu(first.fc1(pooled)))))]  # (batch, out_features)
        w1 = torch.cat([g.fc1.weight for g in generators])  # (n * hidden, in_features)
        b1 = torch.cat([g.fc1.bias for g in generators]) if first.fc1.bias is not None else None
        hidden = F.relu(F.linear(pooled, w1, b1)).view(len(pooled), n, -1).permute(1, 2, 0)  # (n, hidden, batch)
        w2 = torch.stack([g.fc2.weight for g in generators])  # (n, out_features, hidden)
        b2 = torch.stack([g.fc2.bias for g in generators])[:, :, None]  # (n, out_features, 1)
        # masks transposed, so that each generator's weight gradient comes out contiguous
        masks = F.relu(torch.tanh(torch.baddbmm(b2, w2, hidden)))  # (n, out_features, batch)
        return list(masks.transpose(1, 2).unbind(0))  # n x (batch, out_features)


class SharedInput:
    """Generators of units that read the same tensor (ViT q/k/v; a ResNet block's first conv and its
    shortcut), computed together by ``joint_masks`` at the first member's call.

    Each member then takes its mask once; the group keeps no reference after the last one. Not a
    module: the generators stay where they are, with their own parameters and state-dict keys.
    """

    def __init__(self, generators: list[MaskGenerator]) -> None:
        self.generators = generators
        self._input: torch.Tensor | None = None
        self._masks: list[torch.Tensor | None] = []

    def mask(self, slot: int, x: torch.Tensor) -> torch.Tensor:
        """Member ``slot``'s mask for ``x``."""
        if x is not self._input or self._masks[slot] is None:
            self._input, self._masks = x, joint_masks(self.generators, x)
        mask, self._masks[slot] = self._masks[slot], None
        if all(m is None for m in self._masks):
            self._input = None
        return mask


class FixedMask(nn.Module):
    """A constant 0/1 mask standing in for a generator (the module-mask view of a modular model)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("value", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1)


def maskable_units(model: nn.Module) -> list[tuple[str, ConvUnit | LinearUnit]]:
    """The units a modularization method may mask, in order.

    CNNs: every conv unit but the first. ViTs: every linear unit of encoder blocks 1..L-1 (block 0
    and the classifier stay whole). A model may define ``maskable_units()`` to choose its own.
    """
    if hasattr(model, "maskable_units"):
        return model.maskable_units()
    family = getattr(model, "family", None)
    if family == "cnn":
        return [(n, u) for n, u in units(model) if isinstance(u, ConvUnit)][1:]
    if family == "vit":
        return [(n, u) for n, u in units(model) if n.startswith("blocks.") and not n.startswith("blocks.0.")]
    raise ValueError(f"no masking policy for model family {family!r}")


def new_generator(unit: ConvUnit | LinearUnit) -> MaskGenerator:
    """A fresh generator shaped for ``unit`` (conv: kernel masks, linear: neuron masks)."""
    if isinstance(unit, ConvUnit):
        halve_from, first_bias = CONV_GENERATOR
        return MaskGenerator(unit.conv.in_channels, unit.num_units, halve_from, first_bias)
    halve_from, first_bias = LINEAR_GENERATOR
    return MaskGenerator(unit.in_features, unit.num_units, halve_from, first_bias)


def attach_generators(model: nn.Module) -> nn.Module:
    """Give every maskable unit of ``model`` a fresh ``MaskGenerator``; returns ``model``.

    Generators of units that read the same input and have equal shapes are grouped (``SharedInput``).
    """
    for _, unit in maskable_units(model):
        unit.generator = new_generator(unit)
    for siblings in sibling_units(model):
        generators = [u.generator for u in siblings]
        if all(isinstance(g, MaskGenerator) for g in generators) and len({_shape(g) for g in generators}) == 1:
            group = SharedInput(generators)
            for slot, g in enumerate(generators):
                g.shared = (group, slot)
    return model


def sibling_units(model: nn.Module) -> list[list[ConvUnit | LinearUnit]]:
    """Units of the zoo's models that read the same tensor: attention's q, k, v; a residual block's
    first body unit and its shortcut."""
    groups: list[list[ConvUnit | LinearUnit]] = []
    for m in model.modules():
        if isinstance(m, Attention):
            groups.append([m.q, m.k, m.v])
        elif isinstance(m, Residual) and m.shortcut is not None and isinstance(m.body[0], ConvUnit):
            groups.append([m.body[0], m.shortcut])
    return groups


def _shape(g: MaskGenerator) -> tuple:
    return g.fc1.weight.shape, g.fc1.bias is not None, g.fc2.weight.shape


def fix_masks(model: nn.Module, keep: dict[str, torch.Tensor]) -> nn.Module:
    """Replace the generators named in ``keep`` by their fixed 0/1 masks; returns ``model``."""
    named = dict(units(model))
    for name, mask in keep.items():
        unit = named[name]
        unit.generator = FixedMask(mask.to(next(unit.parameters()).device))
    return model


def remove_generators(model: nn.Module) -> nn.Module:
    """Drop every generator: the standard architecture again; returns ``model``."""
    for _, unit in units(model):
        unit.generator = None
        unit.mask = None
    return model


def generator_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(model parameters, mask-generator parameters): the two optimizer groups of modular training."""
    gen_ids = {id(p) for _, u in units(model) if u.generator is not None for p in u.generator.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if id(p) not in gen_ids], [p for p in params if id(p) in gen_ids]


def current_masks(model: nn.Module) -> MaskList:
    """The masks of the last forward pass, one (batch, units) tensor per masked unit, in order."""
    return MaskList(u.mask for _, u in maskable_units(model) if u.generator is not None and u.mask is not None)
