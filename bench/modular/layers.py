"""The layers of extracted modules: what an extracted CNN or ViT is made of.

Built by ``bench.modular.extract_cnn`` and ``bench.modular.extract_vit``; kept apart from the
code that builds them so that a reader of a module's forward pass finds it in one place.
``ExtractedResidual`` joins the kept channels of a residual pair; the ViT layers keep the residual
stream at full width ('exact' mode) or narrow it (``PaperBlock``, NeMo's build).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import ConvUnit
from bench.models.vit import ViT
from bench.modular.autocast import compute_dtype
from bench.modular.slicing import copy_parameter


def added_at(x: torch.Tensor, dim: int, index: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``x`` with ``source`` added at positions ``index`` along ``dim``, in the dtype of ``x + source``.

    Under autocast a sublayer's output may be bfloat16 while the stream it joins is float32; the
    join promotes as the model's own ``x + sublayer(x)`` does.
    """
    dtype = torch.promote_types(x.dtype, source.dtype)
    return x.to(dtype).index_add(dim, index, source.to(dtype))


class ExtractedResidual(nn.Module):
    """``body(x) + shortcut(x)`` over the union of their channels (``width``), then optional ReLU.

    Each branch's channels are added at their positions within the union (``body_index``,
    ``shortcut_index``); an absent shortcut is the identity.
    """

    def __init__(self, body: nn.Sequential, shortcut: ConvUnit | None, body_index: torch.Tensor,
                 shortcut_index: torch.Tensor, width: int, relu: bool) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.register_buffer("body_index", body_index)
        self.register_buffer("shortcut_index", shortcut_index)
        self.width = width
        self.relu = relu
        # when one branch already spans the union in order, add the other into it (no zero buffer)
        everything = torch.arange(width, device=body_index.device)
        self.onto = ("shortcut" if torch.equal(shortcut_index, everything)
                     else "body" if torch.equal(body_index, everything) else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if self.onto == "shortcut":
            out = added_at(s, 1, self.body_index, y)
        elif self.onto == "body":
            out = added_at(y, 1, self.shortcut_index, s)
        else:
            out = y.new_zeros(y.shape[0], self.width, y.shape[2], y.shape[3])  # (batch, union, h, w)
            out = added_at(added_at(out, 1, self.body_index, y), 1, self.shortcut_index, s)
        return torch.relu(out) if self.relu else out


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
        self.cls_token = copy_parameter(source.cls_token)
        self.dist_token = copy_parameter(source.dist_token) if source.dist_token is not None else None
        self.pos_embed = copy_parameter(source.pos_embed)
        self.blocks = nn.ModuleList(blocks)
        self.norm = norm
        self.head = head
        self.head_dist = head_dist


class SpreadWeights(nn.Module):
    """Base of layers that zero-pad a compact weight into a wider layout at call time.

    While training, the padded copy is rebuilt at each call so that gradients reach only the
    compact parameters. In inference (no grad) it is built once per parameter version, device and
    compute dtype (autocast's, when it is on) and reused, so a module runs as many kernels as its
    model and casts no weight per call.
    """

    def __init__(self) -> None:
        super().__init__()
        self._spread_cache: dict[str, tuple[tuple, torch.Tensor]] = {}

    def spread(self, key: str, tensor: torch.Tensor, index: tuple[torch.Tensor, ...], shape: tuple[int, ...],
               dtype: torch.dtype) -> torch.Tensor:
        """``tensor`` placed at ``index`` (as ``Tensor.index_put`` reads it) of a zero tensor of ``shape``.

        ``dtype`` is the dtype the caller computes in; the cached inference copy is stored in it.
        """
        if torch.is_grad_enabled():
            return tensor.new_zeros(shape).index_put(index, tensor)
        stamp = (id(tensor), tensor._version, tensor.device, tensor.dtype, dtype)
        cached = self._spread_cache.get(key)
        if cached is None or cached[0] != stamp:
            padded = tensor.new_zeros(shape, dtype=dtype).index_put(index, tensor.to(dtype))
            cached = (stamp, padded)
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
        dtype = compute_dtype(x)
        if self.linear is None:
            out = x.new_zeros(b, n, features, dtype=dtype)
        else:
            weight = self.spread("weight", self.linear.weight, (self.pos,), (features, d), dtype)
            bias = self.spread("bias", self.linear.bias, (self.pos,), (features,), dtype)
            out = F.linear(x, weight, bias)  # (batch, tokens, heads * width)
        return out.view(b, n, self.heads, self.width).transpose(1, 2)  # (batch, heads, tokens, width)


class ExtractedAttention(SpreadWeights):
    """Attention over the retained heads, its out projection's kept rows placed in the full-width stream.

    ``out`` reads the kept (head, v-dim) features and computes the kept rows; at each call (cached in
    inference) its weight and bias are spread over the padded head layout and the stream's width, zero
    elsewhere, so the output adds to the stream as it is.
    """

    def __init__(self, q: HeadProjection, k: HeadProjection, v: HeadProjection, out: nn.Linear,
                 scale: float) -> None:
        super().__init__()
        self.q, self.k, self.v, self.out = q, k, v, out
        self.scale = scale

    def forward(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, width of ``x``): the out projection's kept ``rows``, zero at the other dims."""
        y = F.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x), scale=self.scale)
        y = y.transpose(1, 2).flatten(2)  # (batch, tokens, heads * width)
        dtype, shape = compute_dtype(y), (x.shape[-1], y.shape[-1])
        weight = self.spread("out", self.out.weight, (rows[:, None], self.v.pos[None, :]), shape, dtype)
        bias = self.spread("out_bias", self.out.bias, (rows,), shape[:1], dtype)
        return F.linear(y, weight, bias)


class ExtractedBlock(SpreadWeights):
    """Pre-norm block on the full-width stream: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    Each sublayer computes its kept rows (``attn_rows``, ``mlp_rows``) through a weight spread over the
    stream's width with zero rows elsewhere (the out projection's in ``ExtractedAttention``, fc2's
    here), so both residual joins are plain additions and the other dims pass through unchanged.
    """

    def __init__(self, norm1: nn.LayerNorm, attn: ExtractedAttention, attn_rows: torch.Tensor,
                 norm2: nn.LayerNorm, mlp: nn.Sequential, mlp_rows: torch.Tensor) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.register_buffer("attn_rows", attn_rows)
        self.register_buffer("mlp_rows", mlp_rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), self.attn_rows)
        fc1, activation, fc2 = self.mlp
        h = activation(fc1(self.norm2(x)))  # (batch, tokens, kept fc1 neurons)
        dtype, shape = compute_dtype(h), (x.shape[-1], fc2.in_features)
        weight = self.spread("fc2", fc2.weight, (self.mlp_rows,), shape, dtype)
        bias = self.spread("fc2_bias", fc2.bias, (self.mlp_rows,), shape[:1], dtype)
        return x + F.linear(h, weight, bias)


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
        wide = added_at(x.new_zeros(b, n, self.full).index_copy(-1, self.in_dims, x), -1, self.out_dims, y)
        # wide: (batch, tokens, full), the stream after attention's residual add
        z = self.mlp(self.norm2(wide.index_select(-1, self.out_dims)))  # (batch, tokens, |fc2|)
        return wide.index_select(-1, self.fc2_dims) + z
