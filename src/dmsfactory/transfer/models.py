"""The fixed, seeded reference models: one small CNN per task in plain torch (docs/transfer.md).

Hyper-parameters are fixed in :data:`TASKS` and were chosen before looking at any real image: the
architecture for speed on a 2-core CPU, epochs from the loss curves on the synthetic validation
split. They are not a knob: a report is only comparable with another report if the models are the
same. The classifiers' training framings (:data:`EYE_ZOOM`, :data:`YAWN_ZOOM`) came later and were
not chosen blind: they follow framing differences measured between the two domains (the eye sets'
crops looked at, MediaPipe's face box against the exact one on renders) and were checked on the real
development sets (docs/transfer-log.md); reports from before them are a different model. GroupNorm
instead of BatchNorm so that Opacus (DP-SGD, per-sample gradients) accepts the network.

``RefNet``: four stages (3x3 conv stride 2, GroupNorm, ReLU, then -- from the second stage on -- a
3x3 conv stride 1, GroupNorm, ReLU), widths 16/32/64/128; flatten; linear 128; LayerNorm; ReLU;
linear out.
Inputs are one grey channel, (x/255 - 0.5)/0.25.

Training: AdamW (weight decay 1e-4), the learning rate warmed up linearly over the first 5 % of the
steps then decayed to zero on a cosine, batch 64, horizontal flips
with the labels mirrored (iBUG points re-indexed, yaw/roll and gaze yaw negated), and a small random
zoom/shift of the crop (scale 0.9-1.1, shift up to 5 % of the side) standing for the framing noise
between exact and detected landmarks (crops.py); the classifiers zoom wider, log-uniformly: eye
0.65-1.1 (:data:`EYE_ZOOM`: eye crops from 1.3 to 2.2 eye widths, the framings pre-cropped eye sets
use), yawn 0.85-1.15 with shifts up to 8 % (:data:`YAWN_ZOOM`: the measured spread of that noise).
Binary tasks: one logit, binary cross-entropy with class weights that make both classes count
equally (so the 0.5 threshold targets balanced accuracy, whatever the class shares of the training
set). Landmarks: L1 on crop-normalised
coordinates. Angles: L1 on degrees / 30.

Why the warm-up: the hidden linear layer reads 2,048 non-negative features (GroupNorm + ReLU, about
800 summed per crop). Adam's first steps move every weight by about the full learning rate in the
direction of its gradient's sign, so at 2e-3 one step can shift a hidden unit's input by up to
~1.6 (2e-3 x 800), nearly alike on every crop: units pushed below zero for every input never get a
gradient again (dead ReLUs). Without warm-up 46-71 of the 128 units died in the first step and
107-127 by the end of the first epoch (yawn, 10k set, training seeds 0-4, 256 validation crops), and
at yawn training seed 3 all 128 by the fifth: a constant output, synthetic validation AUC 0.500.
Chosen on synthetic validation only (docs/transfer.md): gradient-norm clipping at 1.0 did not help
(Adam's step does not scale with the gradient's norm; 104-124 dead after one epoch), a lower rate
moved the collapse to another seed (1e-3: 127 dead at seed 1 after 25 steps), a 5 % warm-up left
37-85 dead after 25 steps and 75-107 after one epoch, and every yawn seed trained (77-100 dead at
the end: the warm-up does not prevent dead units, it keeps enough of them alive).

Why the LayerNorm (added after the warm-up): the warm-up was not enough. On a set made with
renderer 0.4.2 the yawn model at training seed 0 again trained to a constant (training loss 0.693
from the second epoch, synthetic validation AUC 0.500) while seeds 1 and 2 trained (validation AUC
> 0.9). Normalising the hidden layer's pre-activations over its 128 units, per crop, removes the
cause rather than the trigger: whatever a step does to the weights, every crop has units on both
sides of zero, so no unit can be pushed below zero for every input at once and the output cannot
go constant. Every ReLU in the network now follows a normalisation (GroupNorm in the convolutions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dmsfactory.augment.mirror import mirror_index
from dmsfactory.labelers.params import ibug68_index_map

MEAN, STD = 0.5, 0.25


# Random framing in training: a zoom (the crop side over the crop rule's) and a shift (up to this share
# of the side on each axis). Landmarks, head pose, gaze: uniform 0.9-1.1 and 5 %, the framing noise
# between exact and detected landmarks; wider framing made the landmark regressor worse (inner 51
# 8.2 -> 8.6 %, docs/transfer-log.md "Framing in training").
JITTER_SCALE = 0.1
JITTER_SHIFT = 0.05
# The two classifiers zoom log-uniformly over wider ranges, so that where the eye or face sits in its
# crop is not a cue. Eye: every framing from 1.3 to 2.2 eye widths (the rule cuts 2): pre-cropped eye
# sets come framed by their makers, tighter than the rule (the development set ~1.5 eye widths, CEW
# ~1.3-1.5), and the report cannot re-frame them. Yawn: the measured spread of the framing noise
# (MediaPipe's face box against the exact one on 309 demo renders: side ratio 0.85-1.11, 5-95 %;
# centre offset median 4.7 % of the side); real faces are framed by MediaPipe, synthetic ones exactly.
EYE_ZOOM = (0.65, 1.1)
YAWN_ZOOM = (0.85, 1.15)
YAWN_SHIFT = 0.08


@dataclass(frozen=True)
class TaskConfig:
    name: str
    kind: str  # "binary" | "points" | "angles"
    size: int
    n_out: int
    synthetic_epochs: int
    real_epochs: int  # k-fold "trained on real" reference, from scratch
    finetune_steps: int  # learning curve: steps on k real images
    dp_epochs: int  # DP-SGD fine-tune epochs on the private (real) training folds
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    batch: int = 64
    zoom: tuple[float, float] | None = None  # training zoom drawn log-uniformly in this range; None: 1 +- JITTER_SCALE
    shift: float = JITTER_SHIFT  # training shift, up to this share of the crop side per axis


# epochs from the synthetic validation curves of the development dataset (docs/transfer-log.md): eye 8 (AUC
# 0.906 at 4, 0.922 at 8, 0.925 at 12), yawn 16 (0.70 at 4, 0.84 at 8, 0.880 at 16), landmarks 16
# (inner-51 NME 0.133 at 8, 0.111 at 12, 0.107 at 16); from scratch on 1,160 synthetic eye crops
# (the size of a real set's training folds) 30 epochs beat 15 (AUC 0.884 vs 0.856): real_epochs 30
TASKS: dict[str, TaskConfig] = {
    "eye": TaskConfig("eye", "binary", 48, 1, synthetic_epochs=8, real_epochs=30, finetune_steps=150, dp_epochs=3,
                      zoom=EYE_ZOOM),
    "yawn": TaskConfig("yawn", "binary", 64, 1, synthetic_epochs=16, real_epochs=30, finetune_steps=150, dp_epochs=3,
                       zoom=YAWN_ZOOM, shift=YAWN_SHIFT),
    "landmarks": TaskConfig("landmarks", "points", 64, 136, synthetic_epochs=16, real_epochs=30, finetune_steps=200,
                            dp_epochs=3),
    "head_pose": TaskConfig("head_pose", "angles", 64, 3, synthetic_epochs=8, real_epochs=30, finetune_steps=150,
                            dp_epochs=3),
    "gaze": TaskConfig("gaze", "angles", 64, 2, synthetic_epochs=8, real_epochs=30, finetune_steps=150, dp_epochs=3),
}

WIDTHS = (16, 32, 64, 128)
HIDDEN = 128
WEIGHT_DECAY = 1e-4
ANGLE_UNIT = 30.0
# linear learning-rate warm-up over the first 5 % of the steps, then the cosine decay (module docstring)
WARMUP_FRACTION = 0.05


def training_settings() -> dict:
    """What ``fit`` and the model do beyond :data:`TASKS`, for the report's settings (reports before
    the warm-up existed have no ``warmup_fraction``, before the hidden LayerNorm no ``hidden_norm``)."""
    return {"optimizer": "AdamW", "weight_decay": WEIGHT_DECAY, "warmup_fraction": WARMUP_FRACTION,
            "hidden_norm": "LayerNorm",
            "schedule": "linear warm-up, then cosine decay to 0", "flip": True,
            "jitter_scale": JITTER_SCALE, "jitter_shift": JITTER_SHIFT, "angle_unit_deg": ANGLE_UNIT}


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class RefNet(nn.Module):
    def __init__(self, size: int, n_out: int, widths: tuple[int, ...] = WIDTHS, hidden: int = HIDDEN):
        super().__init__()
        if size % (2 ** len(widths)):
            raise ValueError(f"input size {size} must be divisible by {2 ** len(widths)}")
        layers: list[nn.Module] = []
        c = 1
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, 2, 1, bias=False), _gn(w), nn.ReLU()]
            if k > 0:
                layers += [nn.Conv2d(w, w, 3, 1, 1, bias=False), _gn(w), nn.ReLU()]
            c = w
        s = size // 2 ** len(widths)
        self.features = nn.Sequential(*layers)
        # LayerNorm before the hidden ReLU, as GroupNorm before every other one (module docstring)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * s * s, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def to_input(x_uint8: torch.Tensor) -> torch.Tensor:
    """(N, S, S) uint8 -> (N, 1, S, S) float."""
    return ((x_uint8.float() / 255.0 - MEAN) / STD).unsqueeze(1)


def make_model(task: str, seed: int) -> RefNet:
    cfg = TASKS[task]
    torch.manual_seed(seed)
    return RefNet(cfg.size, cfg.n_out)


# --- label transforms for the augmentations ---------------------------------------------------------

def _ibug_flip() -> np.ndarray:
    """iBUG-68 mirror permutation, derived from the 478-point mirror map and our iBUG index map."""
    ib = list(ibug68_index_map())
    mi = mirror_index()
    pos = {m: j for j, m in enumerate(ib)}
    perm = np.array([pos[int(mi[m])] for m in ib], np.int64)
    assert sorted(perm.tolist()) == list(range(68)), "iBUG map is not mirror-closed"
    return perm


_FLIP: dict[str, torch.Tensor] = {}


def ibug_flip() -> torch.Tensor:
    if "p" not in _FLIP:
        _FLIP["p"] = torch.from_numpy(_ibug_flip())
    return _FLIP["p"]


def augment(x: torch.Tensor, y: torch.Tensor, kind: str, task: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random flip and zoom/shift; ``x`` float (N, 1, S, S), labels transformed alike."""
    n = len(x)
    if n == 0:
        return x, y
    flip = torch.rand(n, generator=gen) < 0.5
    cfg = TASKS[task]
    u = torch.rand(n, generator=gen)
    if cfg.zoom is not None:  # the classifiers: log-uniform over their range (EYE_ZOOM, YAWN_ZOOM)
        lo, hi = (math.log(v) for v in cfg.zoom)
        scale = torch.exp(lo + u * (hi - lo))
    else:
        scale = 1.0 + (u * 2 - 1) * JITTER_SCALE  # >1 zooms out
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * cfg.shift * 2  # normalised [-1, 1] units
    sx = torch.where(flip, -scale, scale)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = sx
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = y.clone()
    if kind == "points":
        p = y.view(n, 68, 2)
        q = p * 2 - 1  # input coords in [-1, 1]
        ox = (q[..., 0] - shift[:, 0:1]) / sx[:, None]
        oy = (q[..., 1] - shift[:, 1:2]) / scale[:, None]
        o = torch.stack([ox, oy], -1) * 0.5 + 0.5
        perm = ibug_flip()
        o = torch.where(flip[:, None, None], o[:, perm], o)
        y = o.reshape(n, 136)
    elif kind == "angles":
        if task == "head_pose":  # yaw, pitch, roll: a mirror negates yaw and roll
            sign = torch.tensor([-1.0, 1.0, -1.0])
        else:  # gaze yaw, pitch
            sign = torch.tensor([-1.0, 1.0])
        y = torch.where(flip[:, None], y * sign, y)
    return x, y


def loss_fn(kind: str, class_weight: tuple[float, float] | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-sample loss (N,)."""
    if kind == "binary":
        w0, w1 = class_weight or (1.0, 1.0)

        def f(out, y):
            t = y.view(-1)
            ce = F.binary_cross_entropy_with_logits(out.view(-1), t, reduction="none")
            return ce * (w1 * t + w0 * (1 - t))

        return f
    if kind == "points":
        return lambda out, y: (out - y).abs().mean(1)
    return lambda out, y: (out - y / ANGLE_UNIT).abs().mean(1)


def balanced_weights(y: np.ndarray) -> tuple[float, float]:
    y = np.asarray(y).reshape(-1)
    p = float(y.mean()) if len(y) else 0.5
    if p <= 0 or p >= 1:
        return (1.0, 1.0)
    return (0.5 / (1 - p), 0.5 / p)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, task: str, *, steps: int | None = None, epochs: int | None = None,
        lr: float, seed: int, batch: int = 64, class_weight=None, progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Train ``model`` in place on uint8 crops ``x`` (N, S, S) and float targets ``y`` (N, D)."""
    cfg = TASKS[task]
    n = len(x)
    if n == 0:
        return []
    b = min(batch, n)
    per_epoch = math.ceil(n / b)
    total = steps if steps is not None else per_epoch * int(epochs or 0)
    if total <= 0:
        return []
    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    warm = math.ceil(WARMUP_FRACTION * total)

    def lr_factor(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(s - warm, total - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    lf = loss_fn(cfg.kind, class_weight)
    model.train()
    losses, run, k = [], 0.0, 0
    step = 0
    while step < total:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, b):
            if step >= total:
                break
            idx = perm[i : i + b]
            xb, yb = augment(to_input(xt[idx]), yt[idx], cfg.kind, task, gen)
            loss = lf(model(xb), yb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            run += float(loss.detach())
            k += 1
            step += 1
            if step % per_epoch == 0 or step == total:
                losses.append(run / max(1, k))
                run, k = 0.0, 0
                if progress is not None:
                    progress(step, total)
    return losses


def train_new(task: str, init_seed: int, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, fit_seed: int,
              class_weight=None, progress: Callable[[int, int], None] | None = None) -> tuple[nn.Module, list[float]]:
    """A fresh model (``make_model(task, init_seed)``) fitted on (x, y): one call that a worker process can
    run (``transfer/jobs.py``; there ``progress`` must pickle, e.g. ``jobs.StderrProgress``)."""
    model = make_model(task, init_seed)
    losses = fit(model, x, y, task, epochs=epochs, lr=lr, seed=fit_seed, class_weight=class_weight, progress=progress)
    return model, losses


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, task: str, batch: int = 256) -> np.ndarray:
    """Scores (binary: probability of the positive class), crop-normalised points (N, 136) or degrees."""
    cfg = TASKS[task]
    model.eval()
    outs = []
    xt = torch.from_numpy(np.ascontiguousarray(x))
    for i in range(0, len(xt), batch):
        outs.append(model(to_input(xt[i : i + batch])))
    if not outs:
        return np.zeros((0, cfg.n_out if cfg.kind != "binary" else 1), np.float32)
    o = torch.cat(outs)
    if cfg.kind == "binary":
        return torch.sigmoid(o.view(-1)).numpy().astype(np.float64)
    if cfg.kind == "angles":
        return (o * ANGLE_UNIT).numpy().astype(np.float64)
    return o.numpy().astype(np.float64)
