"""Error analysis: what a binary face model keys on (occlusion maps) and how its score follows the
geometric cue that defines the label (eye aspect ratio, mouth ratio).

Occlusion: the crop is covered by one grey (value 128) patch at a time on a grid of 8 x 8 px
patches; the drop of the positive logit is the patch's importance (negative drops count 0). The
*region share* is the importance inside a region of interest (the mouth: the box of the iBUG mouth
points 48-67, enlarged by 25 % of its size on each side) over the total. A model that keys on the
mouth has a high mouth share on yawns; one that keys on context (a hand, a mask, the cabin) does not.
"""

from __future__ import annotations

import numpy as np
import torch

from dmsfactory.transfer.models import to_input

PATCH = 8
MAX_IMAGES = 200


@torch.no_grad()
def occlusion_maps(model, x: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """(N, S/patch, S/patch) logit drops for uint8 crops ``x`` (N, S, S)."""
    model.eval()
    n, s, _ = x.shape
    g = s // patch
    base = model(to_input(torch.from_numpy(np.ascontiguousarray(x)))).view(-1)
    out = np.zeros((n, g, g), np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    for i in range(n):
        batch = xt[i].unsqueeze(0).repeat(g * g, 1, 1).clone()
        for a in range(g):
            for b in range(g):
                batch[a * g + b, a * patch : (a + 1) * patch, b * patch : (b + 1) * patch] = 128
        lo = model(to_input(batch)).view(-1)
        out[i] = (base[i] - lo).clamp(min=0).view(g, g).numpy()
    return out


def region_share(maps: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Share of each map's importance inside its box (u0, v0, u1, v1 in crop units [0, 1])."""
    n, g, _ = maps.shape
    c = (np.arange(g) + 0.5) / g
    out = np.full(n, np.nan)
    for i in range(n):
        u0, v0, u1, v1 = boxes[i]
        inside = ((c[None, :] >= u0) & (c[None, :] <= u1)) & ((c[:, None] >= v0) & (c[:, None] <= v1))
        tot = maps[i].sum()
        if tot > 0:
            out[i] = float(maps[i][inside].sum() / tot)
    return out


def mouth_box(points_crop: np.ndarray, grow: float = 0.25) -> tuple[float, float, float, float]:
    """iBUG (68, 2) crop-unit points -> the enlarged box of the mouth points 48-67."""
    m = np.asarray(points_crop, np.float64).reshape(68, 2)[48:68]
    x0, y0 = m.min(0)
    x1, y1 = m.max(0)
    gx, gy = (x1 - x0) * grow, (y1 - y0) * grow
    return (x0 - gx, y0 - gy, x1 + gx, y1 + gy)


def area_share(boxes: np.ndarray, g: int) -> np.ndarray:
    """The share a map spread evenly would put in each box (what 'no preference' scores)."""
    c = (np.arange(g) + 0.5) / g
    out = []
    for u0, v0, u1, v1 in boxes:
        inside = ((c[None, :] >= u0) & (c[None, :] <= u1)) & ((c[:, None] >= v0) & (c[:, None] <= v1))
        out.append(inside.mean())
    return np.asarray(out)
