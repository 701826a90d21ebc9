"""Identity-level leakage verdicts: judge an identity on a few views, give all its images the verdict.

Leakage is a property of an identity, not of one image: for a backend whose identity is a parameter
(the procedural renderer) every image of an identity shows the same face, and a geometric or
photometric augmentation does not change who it is (:data:`dmsfactory.augment.ops.IDENTITY_CHANGING_OPS`
lists the ops that would; none today). So the gate describes ``identity_views`` (k, default 3) of an
identity's planned renders, chosen to cover pose and lighting, and the **worst** view (the largest
margin ``threshold - distance`` against any real gallery face) decides for every image of that
identity, augmented copies included. A view is described on its labelled face only (HOG around the
face box, one descriptor: :meth:`~dmsfactory.privacy.descriptors.FaceDescriber.describe` with ``roi``).
Each image's verdict names the views that decided it, with the
sha256 of the exact bytes that were judged, so ``dmsfactory leakcheck`` can re-describe those views
from the shards and reproduce the verdict (docs/privacy.md).

The views come from the identity's **full** plan (never a ``--limit`` prefix or one batch), in the
fixed order of :func:`view_order`, so every batch (and worker process) that holds an image of the
identity reaches the same verdict. A view whose image gives no face descriptor is passed over for the
next one in that order, until k views have descriptors or the identity has none left.

Mixed identities (SynFace mixup) are identities of their own: their own renders are their views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from dmsfactory.generators import backend_traits
from dmsfactory.sample import FaceSample

# accessories that hide much of the face: a view with one says little about who the face is
OCCLUDING = ("sunglasses", "mask")


def leakage_mode(spec: Any) -> str:
    """``"identity"`` or ``"image"``: the leakage mode the gate runs for a spec (``privacy.leakage_mode``;
    ``auto`` picks identity for backends whose identity is a parameter)."""
    m = spec.privacy.leakage_mode
    if m == "auto":
        return "identity" if backend_traits(spec.backend)["identity_is_parameter"] else "image"
    return m


class ViewSource(Protocol):
    """Where identity views come from (implemented by the pipeline, which knows plan and generator)."""

    def candidates(self, identity: str) -> list[str]:
        """Keys of the identity's images the gate may use as views, in the order it tries them."""
        ...

    def render(self, key: str) -> FaceSample:
        """The image ``key`` as it is written (pixels and bbox), made again when not in the batch."""
        ...


def _feature(e: dict[str, Any], lights: list[str], mounts: list[str]) -> np.ndarray:
    hp = e.get("head_pose_car") or {}
    cam = e.get("camera") or {}
    f = [float(hp.get("yaw", 0.0)) / 30.0, float(hp.get("pitch", 0.0)) / 15.0]
    f += [1.0 if e.get("lighting") == x else 0.0 for x in lights]
    f += [0.5 if cam.get("mount") == x else 0.0 for x in mounts]
    return np.array(f)


def view_order(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An identity's planned renders in the order the gate tries them as views.

    First the most frontal daylight render without an occluding accessory (sunglasses, mask), then
    greedy farthest-point: each next view is the one farthest (max-min) from those already chosen in
    (yaw / 30 deg, pitch / 15 deg, lighting, camera mount), so k views spread over pose, lighting and
    mount. Occluded renders come last, in plan order. Deterministic (ties by plan index)."""
    if not entries:
        return []
    entries = sorted(entries, key=lambda e: int(e.get("index", 0)))
    clear = [e for e in entries if e.get("accessory") not in OCCLUDING]
    rest = [e for e in entries if e.get("accessory") in OCCLUDING]
    if not clear:
        return rest
    lights = sorted({str(e.get("lighting")) for e in clear})
    mounts = sorted({str((e.get("camera") or {}).get("mount")) for e in clear})
    feats = np.stack([_feature(e, lights, mounts) for e in clear])

    def frontal(i: int) -> tuple:
        hp = clear[i].get("head_pose_car") or {}
        return (clear[i].get("lighting") != "daylight", abs(float(hp.get("yaw", 0.0))) + abs(float(hp.get("pitch", 0.0))), i)

    order = [min(range(len(clear)), key=frontal)]
    dmin = np.linalg.norm(feats - feats[order[0]], axis=1)
    dmin[order[0]] = -1.0
    while len(order) < len(clear):
        nxt = int(np.argmax(dmin))  # first index on ties: plan order
        order.append(nxt)
        dmin = np.minimum(dmin, np.linalg.norm(feats - feats[nxt], axis=1))
        dmin[order] = -1.0
    return [clear[i] for i in order] + rest


@dataclass
class ViewResult:
    key: str
    sha256: str | None  # of the judged (encoded) bytes; None when judged from pixels
    faces: int
    match: Any | None  # leakage.Match of the view's best face (largest margin), None without a face/gallery
    descriptor: np.ndarray | None = None  # the primary face's descriptor (stored on the view's own sample)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, "sha256": self.sha256, "faces": self.faces}
        if self.match is not None:
            d.update(distance=round(self.match.distance, 4), margin=round(self.match.margin, 4),
                     gallery=self.match.gallery, file=self.match.file)
        return d


@dataclass
class IdentityVerdict:
    identity: str
    views: list[ViewResult] = field(default_factory=list)  # the views that gave a descriptor (<= k)
    tried: int = 0  # candidates looked at (views without a face included)
    best: Any | None = None  # the deciding match (largest margin over the views' faces)
    deciding_view: str | None = None
    gallery_distances: dict[str, float] = field(default_factory=dict)  # nearest face per gallery tier over the views

    @property
    def leaked(self) -> bool:
        return bool(self.best is not None and self.best.leaked)

    def scores(self, threshold: float) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": "identity", "identity": self.identity, "views": [v.as_dict() for v in self.views],
                               "views_tried": self.tried, "deciding_view": self.deciding_view, "threshold": threshold}
        if self.best is not None:
            out.update(self.best.as_dict())
        return out
