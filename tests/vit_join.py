"""The extracted ViT block's former residual join, kept as the reference the dense join is tested and timed against.

Before the dense join, each sublayer of an ``ExtractedBlock`` computed only its kept rows (the out
projection's and fc2's) and added them into the stream at their dims with ``index_add`` along the
last dimension. ``IndexAddBlock`` runs that computation on a block's own parameters (its padded out
weight cached in inference as the block caches its own), so both forms read the same weights.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from bench.modular.autocast import compute_dtype
from bench.modular.layers import ExtractedBlock, ExtractedViT, added_at


class IndexAddBlock(nn.Module):
    """``block`` computed with compact out / fc2 rows added at their dims (``index_add``)."""

    def __init__(self, block: ExtractedBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block, attn = self.block, self.block.attn
        h = block.norm1(x)
        y = F.scaled_dot_product_attention(attn.q(h), attn.k(h), attn.v(h), scale=attn.scale)
        y = y.transpose(1, 2).flatten(2)  # (batch, tokens, heads * width)
        rows = torch.arange(attn.out.out_features, device=y.device)
        weight = attn.spread("compact_out", attn.out.weight, (rows[:, None], attn.v.pos[None, :]),
                             (len(rows), y.shape[-1]), compute_dtype(y))
        x = added_at(x, -1, block.attn_rows, F.linear(y, weight, attn.out.bias))
        return added_at(x, -1, block.mlp_rows, block.mlp(block.norm2(x)))


def with_index_add_join(module: ExtractedViT) -> ExtractedViT:
    """A copy of ``module`` whose extracted blocks join the stream the former way (``IndexAddBlock``)."""
    former = copy.deepcopy(module)
    former.blocks = nn.ModuleList(IndexAddBlock(b) if isinstance(b, ExtractedBlock) else b for b in former.blocks)
    return former
