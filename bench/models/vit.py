"""Vision Transformers of the zoo: ViT-s and DeiT-s for 32x32 inputs (patch 4, pre-norm).

q, k, v, the attention output and both MLP layers are separate ``LinearUnit`` layers, so each
neuron can be masked and removed; attention runs through ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.models.layers import LinearUnit
from bench.models.spec import check_depth, check_width


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = LinearUnit(dim, dim)
        self.k = LinearUnit(dim, dim)
        self.v = LinearUnit(dim, dim)
        self.out = LinearUnit(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)  # (batch, heads, tokens, head_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        y = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.out(y.transpose(1, 2).flatten(2))


class MLP(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = LinearUnit(dim, hidden)
        self.fc2 = LinearUnit(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViT (or DeiT with ``distilled``): patch embedding, class (+ distillation) token, blocks, head.

    A distilled model predicts the mean of its class-token and distillation-token heads;
    ``forward_heads`` gives both for the distillation loss.
    """

    family = "vit"

    def __init__(
        self,
        num_classes: int,
        dim: int = 384,
        depth: int = 12,
        heads: int = 12,
        mlp_dim: int = 1536,
        patch: int = 4,
        image_size: int = 32,
        distilled: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        num_tokens = 2 if distilled else 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, (image_size // patch) ** 2 + num_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.head_dist = nn.Linear(dim, num_classes) if distilled else None
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def distilled(self) -> bool:
        """Whether the model has a distillation token and head."""
        return self.head_dist is not None

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded patches with the class (and distillation) token prepended: (batch, tokens, dim)."""
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        prefix = [self.cls_token] + ([self.dist_token] if self.dist_token is not None else [])
        prefix = [t.expand(x.shape[0], -1, -1) for t in prefix]
        return torch.cat([*prefix, x], dim=1) + self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised token features after the last block: (batch, tokens, dim)."""
        x = self.tokens(x)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class-token logits and distillation-token logits (None without a distillation token)."""
        feats = self.forward_features(x)
        dist = self.head_dist(feats[:, 1]) if self.head_dist is not None else None
        return self.head(feats[:, 0]), dist

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, dist = self.forward_heads(x)
        return cls if dist is None else (cls + dist) / 2

    def replace_head(self, num_outputs: int) -> None:
        """Put a new Linear on the class token (the reused module's head); drop the distillation head."""
        self.head = nn.Linear(self.dim, num_outputs).to(self.head.weight.device)
        self.head_dist = None


def _vit(num_classes: int, width: float, depth: int, heads: int, distilled: bool) -> ViT:
    check_width(width)
    check_depth(depth, minimum=2, why=" (modules mask every block but the first)")
    dim = max(heads, round(384 * width / heads) * heads)
    return ViT(num_classes, dim=dim, depth=depth, heads=heads, mlp_dim=max(1, round(1536 * width)),
               distilled=distilled)


def vit_s(num_classes: int, width: float = 1.0, depth: int = 12) -> ViT:
    """ViT-s: hidden 384, 12 blocks, 12 heads, MLP 1536, patch 4 (``width`` scales hidden and MLP)."""
    return _vit(num_classes, width, depth, heads=12, distilled=False)


def deit_s(num_classes: int, width: float = 1.0, depth: int = 12) -> ViT:
    """DeiT-s: ViT-s with 6 heads and a distillation token (teacher: the standard ResNet18)."""
    return _vit(num_classes, width, depth, heads=6, distilled=True)
