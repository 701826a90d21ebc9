"""A compact multi-head DMS state classifier in plain torch (Opacus-compatible: GroupNorm, no BatchNorm)."""

from __future__ import annotations

import torch
from torch import nn

from dmsfactory.training.data import HEAD_VALUES, IGNORE

MEAN, STD = 0.5, 0.25


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, cout), cout),
        nn.ReLU(inplace=False),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(min(8, cout), cout),
        nn.ReLU(inplace=False),
        nn.MaxPool2d(2),
    )


class DMSNet(nn.Module):
    """4 conv blocks (w, 2w, 4w, 4w) -> global average pool -> one linear head per label."""

    def __init__(self, heads: tuple[str, ...], width: int = 24):
        super().__init__()
        self.heads = tuple(heads)
        w = width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 4 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out = nn.ModuleDict({h: nn.Linear(4 * w, len(HEAD_VALUES[h])) for h in self.heads})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.pool(self.features(x)).flatten(1)
        return {h: self.out[h](f) for h in self.heads}


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255.0 - MEAN) / STD


def per_sample_loss(logits: dict[str, torch.Tensor], y: torch.Tensor, heads: tuple[str, ...]) -> torch.Tensor:
    """Sum over heads of cross-entropy per sample (heads with a missing label contribute 0)."""
    total = None
    for i, h in enumerate(heads):
        t = y[:, i]
        ce = nn.functional.cross_entropy(logits[h], t.clamp(min=0), reduction="none")
        ce = ce * (t != IGNORE).float()
        total = ce if total is None else total + ce
    return total
