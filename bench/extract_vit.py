"""Physical extraction of ViT modules: 'exact' (function-preserving) and 'paper' (NeMo's build).

Both modes copy the patch embedding and the tokens and rebuild the blocks from the retained
neurons. 'exact' mode rebuilds every block that ``keep`` names a unit of (copying the others) and
keeps the residual stream at full width: each sublayer computes only its retained outputs and adds
them into the stream at their indices, so the module computes what the masked model computes.
q and k keep the intersection of their masks; a head without v dims is dropped; the retained
heads' q, k and v are laid out zero-padded to one common width (that of the widest kept head;
the padding is not a parameter) and keep the original softmax scale. 'paper' mode builds the
NeMo authors' module: block 0 intact, a narrowed stream and fresh LayerNorms in blocks 1..L-1
(not function-equivalent).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from bench.masking import remove_generators
from bench.models.vit import Block, ViT

UNIT_NAMES = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.fc1", "mlp.fc2")


class ExtractedViT(ViT):
    """A ViT whose encoder blocks (and, in paper mode, final norm and heads) were shrunk.

    Assembled from the given parts, so ``ViT.__init__`` (which would build full-size layers) is
    not run. ``dim`` is the width the head reads, so ``replace_head`` builds a head that fits.
    """

    def __init__(self, source: ViT, blocks: list[nn.Module], norm: nn.LayerNorm, head: nn.Linear,
                 head_dist: nn.Linear | None) -> None:
        nn.Module.__init__(self)
        self.num_classes = source.num_classes
        self.dim = head.in_features
        self.patch_embed = copy.deepcopy(source.patch_embed)
        self.cls_token = _copy_parameter(source.cls_token)
        self.dist_token = _copy_parameter(source.dist_token) if source.dist_token is not None else None
        self.pos_embed = _copy_parameter(source.pos_embed)
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm
        self.head = head
        self.head_dist = head_dist


class SpreadWeights(nn.Module):
    """Base of layers that zero-pad a compact weight into a wider layout at call time.

    While training, the padded copy is rebuilt at each call so that gradients reach only the
    compact parameters. In inference (no grad) it is built once and reused until the parameter
    changes (its version, device or dtype), so a module runs as many kernels as its model.
    """

    def __init__(self) -> None:
        super().__init__()
        self._spread_cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    def spread(self, key: str, tensor: torch.Tensor, pos: torch.Tensor, shape: tuple[int, ...],
               dim: int) -> torch.Tensor:
        """``tensor`` placed at indices ``pos`` along ``dim`` of a zero tensor of ``shape``."""
        if torch.is_grad_enabled():
            return tensor.new_zeros(shape).index_copy(dim, pos, tensor)
        stamp = (id(tensor), tensor._version, tensor.device, tensor.dtype)
        cached = self._spread_cache.get(key)
        if cached is None or cached[0] != stamp:
            cached = (stamp, tensor.new_zeros(shape).index_copy(dim, pos, tensor))
            self._spread_cache[key] = cached
        return cached[1]


class HeadProjection(SpreadWeights):
    """A Linear computing some heads' kept dims, laid out as (batch, heads, tokens, width).

    Row ``i`` of the Linear lands at position ``pos[i]`` of the ``heads * width`` features; the
    other positions stay zero. The padding is applied to the weight (a few thousand numbers), not to
    the activations, and is not a parameter. Without a Linear every feature is zero (uniform attention).
    """

    def __init__(self, linear: nn.Linear | None, pos: torch.Tensor, heads: int, width: int) -> None:
        super().__init__()
        self.linear = linear
        self.register_buffer("pos", pos)
        self.heads = heads
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        features = self.heads * self.width
        if self.linear is None:
            out = x.new_zeros(b, n, features)
        else:
            weight = self.spread("weight", self.linear.weight, self.pos, (features, d), 0)
            bias = self.spread("bias", self.linear.bias, self.pos, (features,), 0)
            out = F.linear(x, weight, bias)  # (batch, tokens, heads * width)
        return out.view(b, n, self.heads, self.width).transpose(1, 2)  # (batch, heads, tokens, width)


class ExtractedAttention(SpreadWeights):
    """Attention over the retained heads; returns the out projection's kept rows (batch, tokens, rows).

    ``out`` reads the kept (head, v-dim) features; its weight is spread over the padded head layout
    at each call, like ``HeadProjection``'s.
    """

    def __init__(self, q: HeadProjection, k: HeadProjection, v: HeadProjection, out: nn.Linear,
                 scale: float) -> None:
        super().__init__()
        self.q, self.k, self.v, self.out = q, k, v, out
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), scale=self.scale)
        y = y.transpose(1, 2).flatten(2)  # (batch, tokens, heads * width)
        weight = self.spread("out", self.out.weight, self.v.pos, (self.out.out_features, y.shape[-1]), 1)
        return F.linear(y, weight, self.out.bias)


class ExtractedBlock(nn.Module):
    """Pre-norm block on the full-width stream; each sublayer adds its kept rows at their indices."""

    def __init__(self, norm1: nn.LayerNorm, attn: ExtractedAttention, attn_rows: torch.Tensor,
                 norm2: nn.LayerNorm, mlp: nn.Sequential, mlp_rows: torch.Tensor) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.register_buffer("attn_rows", attn_rows)
        self.register_buffer("mlp_rows", mlp_rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.index_add(-1, self.attn_rows, self.attn(self.norm1(x)))
        return x.index_add(-1, self.mlp_rows, self.mlp(self.norm2(x)))


class PaperBlock(nn.Module):
    """NeMo's module block: narrowed stream in (``in_dims``), narrowed stream out (fc2's kept dims).

    As in the reference code, q/k/v are zero-padded back to full width so the original heads
    (count, width, scale) run unchanged; the attention output and the residual meet in a full-width
    buffer, which is cut to the out projection's dims for the MLP and to fc2's dims for the output.
    """

    def __init__(self, dims: dict[str, torch.Tensor], layers: dict[str, nn.Module], full: int,
                 heads: int, scale: float) -> None:
        super().__init__()
        self.norm1, self.q, self.k, self.v = layers["norm1"], layers["q"], layers["k"], layers["v"]
        self.out, self.norm2, self.mlp = layers["out"], layers["norm2"], layers["mlp"]
        for name in ("in", "qk", "v", "out", "fc2"):
            self.register_buffer(f"{name}_dims", dims[name])
        self.full = full
        self.heads = heads
        self.scale = scale

    def _heads(self, t: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        wide = t.new_zeros(b, n, self.full).index_copy(-1, dims, t)  # (batch, tokens, full)
        return wide.view(b, n, self.heads, -1).transpose(1, 2)  # (batch, heads, tokens, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h = self.norm1(x)
        q = self._heads(self.q(h), self.qk_dims)
        k = self._heads(self.k(h), self.qk_dims)
        v = self._heads(self.v(h), self.v_dims)
        y = F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2).flatten(2)
        y = self.out(y.index_select(-1, self.v_dims))  # (batch, tokens, |out|)
        wide = x.new_zeros(b, n, self.full).index_copy(-1, self.in_dims, x).index_add(-1, self.out_dims, y)
        # wide: (batch, tokens, full), the stream after attention's residual add
        z = self.mlp(self.norm2(wide.index_select(-1, self.out_dims)))  # (batch, tokens, |fc2|)
        return wide.index_select(-1, self.fc2_dims) + z


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
    else:
        norm = _fresh_norm(model.norm, len(dims))
        head = sliced_linear(model.head, cols=dims)
        head_dist = sliced_linear(model.head_dist, cols=dims) if model.head_dist is not None else None
    return ExtractedViT(model, blocks, norm, head, head_dist)


def _exact_block(block: Block, masks: dict[str, torch.Tensor]) -> ExtractedBlock:
    attn = block.attn
    heads, head_dim = attn.heads, attn.head_dim
    qk = masks["attn.q"] & masks["attn.k"]
    v = masks["attn.v"]
    kept_heads = v.view(heads, head_dim).any(dim=1).nonzero().flatten()  # heads with any v dim
    # q/k and v share one padded width, so attention runs through the fused kernel (the math
    # fallback for unequal widths is several times slower on a CPU)
    width = max(_widest(qk, kept_heads, head_dim), _widest(v, kept_heads, head_dim))
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
        "norm1": _fresh_norm(block.norm1, len(dims["in"])),
        "q": sliced_linear(attn.q, rows=dims["qk"], cols=dims["in"]),
        "k": sliced_linear(attn.k, rows=dims["qk"], cols=dims["in"]),
        "v": sliced_linear(attn.v, rows=dims["v"], cols=dims["in"]),
        "out": sliced_linear(attn.out, rows=dims["out"], cols=dims["v"]),
        "norm2": _fresh_norm(block.norm2, len(dims["out"])),
        "mlp": nn.Sequential(sliced_linear(block.mlp.fc1, rows=dims["fc1"], cols=dims["out"]), nn.GELU(),
                             sliced_linear(block.mlp.fc2, rows=dims["fc2"], cols=dims["fc1"])),
    }
    return PaperBlock(dims, layers, attn.q.in_features, attn.heads, attn.scale)


def sliced_linear(linear: nn.Linear, rows: torch.Tensor | None = None,
                  cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding copies of ``linear``'s weight rows/columns (all when None)."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                    device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _fresh_norm(norm: nn.LayerNorm, width: int) -> nn.LayerNorm:
    """A newly initialised LayerNorm (weight 1, bias 0) over ``width`` features, as the reference does."""
    w = norm.weight
    return nn.LayerNorm(width, eps=norm.eps, device=w.device, dtype=w.dtype)


def _copy_parameter(p: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)

