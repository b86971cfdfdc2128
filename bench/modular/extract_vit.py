"""Physical extraction of ViT modules: 'exact' (function-preserving) and 'paper' (NeMo's build).

Both modes copy the patch embedding and the tokens and rebuild the blocks from the retained
neurons. 'exact' mode rebuilds every block that ``keep`` names a unit of (copying the others) and
keeps the residual stream at full width: each sublayer computes only its retained outputs and adds
them into the stream at their indices, so the module computes what the masked model computes.
q and k keep the intersection of their masks; a head without v dims is dropped; the retained
heads' q, k and v are laid out zero-padded to one common width (that of the widest kept head,
rounded up to a multiple of 8 within the head size; the padding is not a parameter) and keep the
original softmax scale. 'paper' mode builds the
NeMo authors' module: block 0 intact, a narrowed stream and fresh LayerNorms in blocks 1..L-1
(not function-equivalent), and a ReLU before its task head.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.models.vit import Block, ViT
from bench.modular.layers import ExtractedAttention, ExtractedBlock, ExtractedViT, HeadProjection, PaperBlock
from bench.modular.masking import remove_generators
from bench.modular.slicing import fresh_norm, sliced_linear

UNIT_NAMES = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2")
HEAD_WIDTH_MULTIPLE = 8


def extract_vit(model: ViT, keep: dict[str, torch.Tensor], mode: str) -> ExtractedViT:
    """Shrink blocks 1..L-1 of ``model`` to the ``keep`` masks (checked by the caller, on the CPU)."""
    blocks = []
    dims = torch.arange(model.dim)  # paper mode: the stream's dims (indices into the full width)
    for i, block in enumerate(model.blocks):
        given = {u: keep[f"blocks.{i}.{u}"] for u in UNIT_NAMES if f"blocks.{i}.{u}" in keep}
        if mode == "paper" and i == 0 and given:
            raise ValueError("paper mode keeps block 0 whole; drop the 'blocks.0.*' entries from keep")
        if not given and (mode == "exact" or i == 0):  # paper mode narrows every block after block 0
            blocks.append(remove_generators(copy.deepcopy(block)))
            continue
        masks = {u: given.get(u, torch.ones(block.get_submodule(u).out_features, dtype=torch.bool))
                 for u in UNIT_NAMES}
        if mode == "exact":
            blocks.append(_exact_block(block, masks))
        else:
            blocks.append(_paper_block(block, masks, dims))
            dims = masks["mlp.fc2"].nonzero().flatten()
    if mode == "exact":
        norm = copy.deepcopy(model.norm)
        head = copy.deepcopy(model.head)
        head_dist = copy.deepcopy(model.head_dist)
        vit_class = ExtractedViT
    else:
        norm = fresh_norm(model.norm, len(dims))
        head = sliced_linear(model.head, cols=dims)
        head_dist = sliced_linear(model.head_dist, cols=dims) if model.head_dist is not None else None
        vit_class = PaperViT
    return vit_class(model, blocks, norm, head, head_dist)


class PaperViT(ExtractedViT):
    """A 'paper' mode module: its task head is ReLU + Linear on the class token, as the NeMo authors'
    (modules_arch/vit_module_HF.py, deit_module_HF.py: classifier = Sequential(ReLU, Linear))."""

    def replace_head(self, num_outputs: int) -> None:
        """ReLU + a new Linear on the class token; drop the distillation head."""
        super().replace_head(num_outputs)
        self.head = nn.Sequential(nn.ReLU(), self.head)


def _exact_block(block: Block, masks: dict[str, torch.Tensor]) -> ExtractedBlock:
    attn = block.attn
    heads, head_dim = attn.heads, attn.head_dim
    qk = masks["attn.q"] & masks["attn.k"]
    v = masks["attn.v"]
    kept_heads = v.view(heads, head_dim).any(dim=1).nonzero().flatten()  # heads with any v dim
    # q/k and v share one padded width, a multiple of 8 where the heads allow, so attention runs
    # through a fused kernel (the math fallback for unequal widths is several times slower on a
    # CPU; GPU flash, cuDNN and memory-efficient kernels need head widths in multiples of 8)
    widest = max(_widest(qk, kept_heads, head_dim), _widest(v, kept_heads, head_dim))
    width = min(head_dim, -(-widest // HEAD_WIDTH_MULTIPLE) * HEAD_WIDTH_MULTIPLE)
    qk_rows, qk_pos = _head_layout(qk, kept_heads, head_dim, width)
    v_rows, v_pos = _head_layout(v, kept_heads, head_dim, width)
    out_rows = masks["attn.out"].nonzero().flatten()
    # no q/k dim left in any kept head: all scores are 0 (uniform attention), as in the masked model
    q, k = (HeadProjection(sliced_linear(lin, rows=qk_rows) if len(qk_rows) else None, qk_pos,
                           len(kept_heads), width) for lin in (attn.q, attn.k))
    v_proj = HeadProjection(sliced_linear(attn.v, rows=v_rows), v_pos, len(kept_heads), width)
    out = sliced_linear(attn.out, rows=out_rows, cols=v_rows)
    new_attn = ExtractedAttention(q, k, v_proj, out, attn.scale)
    fc1_rows = masks["mlp.fc1"].nonzero().flatten()
    fc2_rows = masks["mlp.fc2"].nonzero().flatten()
    mlp = nn.Sequential(sliced_linear(block.mlp.fc1, rows=fc1_rows), nn.GELU(),
                        sliced_linear(block.mlp.fc2, rows=fc2_rows, cols=fc1_rows))
    norm1, norm2 = copy.deepcopy(block.norm1), copy.deepcopy(block.norm2)
    return ExtractedBlock(norm1, new_attn, out_rows, norm2, mlp, fc2_rows)


def _widest(mask: torch.Tensor, heads: torch.Tensor, head_dim: int) -> int:
    """The most kept dims of any of the given heads (at least 1)."""
    return max(1, int(mask.view(-1, head_dim)[heads].sum(dim=1).max()))


def _head_layout(mask: torch.Tensor, heads: torch.Tensor, head_dim: int,
                 width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept dims of the given heads: their original indices, and their positions when each head is
    padded to ``width``."""
    per_head = mask.view(-1, head_dim)[heads]  # (kept heads, head_dim)
    position = torch.arange(len(heads))[:, None] * width + per_head.long().cumsum(dim=1) - 1
    original = heads[:, None] * head_dim + torch.arange(head_dim)
    return original[per_head], position[per_head]


def _paper_block(block: Block, masks: dict[str, torch.Tensor], in_dims: torch.Tensor) -> PaperBlock:
    attn = block.attn
    dims = {
        "in": in_dims,
        "qk": (masks["attn.q"] & masks["attn.k"]).nonzero().flatten(),
        "v": masks["attn.v"].nonzero().flatten(),
        "out": masks["attn.out"].nonzero().flatten(),
        "fc1": masks["mlp.fc1"].nonzero().flatten(),
        "fc2": masks["mlp.fc2"].nonzero().flatten(),
    }
    layers = {
        "norm1": fresh_norm(block.norm1, len(dims["in"])),
        "q": sliced_linear(attn.q, rows=dims["qk"], cols=dims["in"]),
        "k": sliced_linear(attn.k, rows=dims["qk"], cols=dims["in"]),
        "v": sliced_linear(attn.v, rows=dims["v"], cols=dims["in"]),
        "out": sliced_linear(attn.out, rows=dims["out"], cols=dims["v"]),
        "norm2": fresh_norm(block.norm2, len(dims["out"])),
        "mlp": nn.Sequential(sliced_linear(block.mlp.fc1, rows=dims["fc1"], cols=dims["out"]), nn.GELU(),
                             sliced_linear(block.mlp.fc2, rows=dims["fc2"], cols=dims["fc1"])),
    }
    return PaperBlock(dims, layers, attn.q.in_features, attn.heads, attn.scale)
