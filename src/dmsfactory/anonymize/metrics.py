"""T/AI 110.2-style figures: SSIM (whole frame and outside the face), PSNR, KID, identity distances.

* SSIM: Wang et al. 2004 on luminance (ITU-R BT.601 Y), Gaussian window sigma 1.5, K1 0.01, K2 0.03
  (``skimage.metrics.structural_similarity``); "outside the face" averages the SSIM map over pixels
  outside every changed region.
* PSNR: 10 log10(255^2 / MSE); ``"inf"`` when the pixels are identical.
* KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 between
  two feature sets. Offline the features are dlib's 128-d face descriptors of the original and the
  anonymised face crops (``feature_space`` says so); a TorchScript feature extractor can be given
  instead (e.g. an Inception network the user has weights for). KID values depend on the feature
  space: a dlib-descriptor KID is not comparable with an Inception KID.
* Identity: dlib distance between each original face and its anonymised face (same-person threshold
  0.6), and a gallery test: every anonymised face against all original faces of the run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dmsfactory.privacy.descriptors import FaceDescriber, mediapipe_box_to_hog


def _y(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float64)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    _, m = structural_similarity(_y(a), _y(b), data_range=255.0, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, full=True)
    return m


def region_mask(shape: tuple[int, ...], regions: list[tuple[int, int, int, int]]) -> np.ndarray:
    m = np.zeros(shape[:2], bool)
    for x0, y0, x1, y1 in regions:
        m[max(0, y0):y1, max(0, x0):x1] = True
    return m


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    mse = float(d.mean()) if d.size else 0.0
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def frame_metrics(orig: np.ndarray, anon: np.ndarray, regions: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    m = ssim_map(orig, anon)
    inside = region_mask(orig.shape, regions)
    out = ~inside
    return {"ssim": float(m.mean()), "ssim_outside_face": float(m[out].mean()) if out.any() else None,
            "ssim_face_region": float(m[inside].mean()) if inside.any() else None,
            "psnr": psnr(orig, anon), "psnr_outside_face": psnr(orig, anon, out) if out.any() else None,
            "face_area_fraction": float(inside.mean())}


def fmt_db(x: float | None) -> float | str | None:
    return "inf" if x is not None and math.isinf(x) else (None if x is None else round(x, 3))


def kid(x: np.ndarray, y: np.ndarray) -> float | None:
    """Unbiased KID (MMD^2, cubic polynomial kernel) between feature rows ``x`` and ``y``."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return None
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


class IdentityMeter:
    """dlib descriptors of original and anonymised faces; distances, gallery search, KID."""

    def __init__(self, threshold: float = 0.6):
        self.threshold = float(threshold)
        self.describer = FaceDescriber(detectors=("mediapipe",))
        self.orig: list[np.ndarray] = []
        self.anon: list[np.ndarray] = []
        self.pairs: list[tuple[int, int]] = []
        self.keys: list[str] = []

    def describe(self, img: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        p = np.asarray(landmarks, float)
        re_, le = p[[33, 133]].mean(0), p[[362, 263]].mean(0)
        box = (float(p[:468, 0].min()), float(p[:468, 1].min()), float(p[:468, 0].max()), float(p[:468, 1].max()))
        return self.describer.describe_box(img, mediapipe_box_to_hog(box, [tuple(re_), tuple(le)]))

    def add(self, key: str, orig: np.ndarray, orig_lm: np.ndarray, anon: np.ndarray, anon_lm: np.ndarray) -> float:
        a = self.describe(orig, orig_lm)
        b = self.describe(anon, anon_lm)
        self.orig.append(a)
        self.anon.append(b)
        self.keys.append(key)
        return float(np.linalg.norm(a - b))

    def summary(self) -> dict[str, Any]:
        if not self.orig:
            return {"faces": 0}
        A, B = np.stack(self.orig), np.stack(self.anon)
        d = np.linalg.norm(A - B, axis=1)
        G = np.linalg.norm(B[:, None, :] - A[None, :, :], axis=2)  # anonymised x gallery of originals
        nearest = G.min(1)
        t = self.threshold
        return {
            "faces": int(len(d)),
            "threshold": t,
            "distance_to_original": {"min": float(d.min()), "median": float(np.median(d)), "mean": float(d.mean()),
                                     "max": float(d.max())},
            "share_above_threshold": float((d > t).mean()),
            "share_within_threshold": float((d <= t).mean()),
            "gallery": {"size": int(len(A)), "anonymised_found": int((nearest < t).sum()),
                        "nearest_distance_min": float(nearest.min()), "nearest_distance_median": float(np.median(nearest))},
            "kid": {"feature_space": "dlib_resnet_128d_face_descriptor", "kid": kid(A, B),
                    "kid_x1000": None if kid(A, B) is None else 1000.0 * kid(A, B),
                    "note": "not comparable with Inception-feature KID (T/AI 110.2 uses Inception features)"},
        }
