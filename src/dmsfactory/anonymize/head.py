"""The synthetic head: the factory's generator, driven only through plan entries (docs/CONTRACT.md).

Nothing here reaches into a renderer's internals. A synthetic identity is ``identity_seed`` +
``identity_params``; a face is rendered by handing the generator a plan entry with the head pose
(``head_pose_car``), the state (eye openness per eye, mouth_open, yawn), ``gaze_in_head``, the
camera and the lighting, and reading back what the contract promises: ``image``, ``landmarks``
(478, MediaPipe order), ``arrays["landmarks_3d"]`` (camera frame, m) and ``params["render"]``
(``head_pose_camera.rotation_matrix``). When the head model behind the generator changes (a
data-driven head replacing the procedural one), this module is unchanged.

Camera-frame pose: the plan entry sets the head in the car frame; the camera's rotation
``R_cam_car`` is read from a neutral render (head_pose_car = 0, so ``R_cam_head = R_cam_car``), and a
camera-frame pose ``R_rel`` (``dmsfactory.augment.pose`` convention: ``R_rel = F R_cam_head``) becomes
``head_pose_car = euler(R_cam_car^T F R_rel)``. Every render's reported camera-frame pose is checked
against the request (``PoseMismatch`` if the generator's conventions ever change).

Calibration (per identity, cached): MediaPipe reads a render's eye aspect ratio, mouth ratio, iris
offset and 6-point head pose with offsets of its own (a closed rendered eye reads EAR ~0.14, not 0).
The label is kept when the *same measurement* reads the same value on the original and on the
anonymised face, so each identity is rendered at a few eye/mouth/gaze settings, MediaPipe measures
them, and the anonymiser inverts those curves: it asks the head for the openness whose measured EAR
equals the original's measured EAR, and so on.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmsfactory.anonymize.compose import fit_shading
from dmsfactory.anonymize.mesh import index_sets, measure_landmarks, vertex_normals
from dmsfactory.errors import DmsFactoryError
from dmsfactory.generators.procedural import ProceduralGenerator
from dmsfactory.geometry import F, euler_from_matrix, matrix_from_euler

POSE_LIMITS = {"yaw": 85.0, "pitch": 55.0, "roll": 55.0}  # inside the plan entry's valid ranges
GAZE_LIMIT = 40.0
AGE_BANDS = (("young", 18, 25), ("adult", 26, 45), ("middle_aged", 46, 65), ("senior", 66, 80))


class RenderError(DmsFactoryError, RuntimeError):
    """The head generator could not render a plan entry (the reason is the generator's)."""


class PoseMismatch(DmsFactoryError, RuntimeError):
    """A render's reported camera-frame pose differs from the requested one (convention change)."""


def _seed(*parts: Any) -> int:
    h = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class SyntheticIdentity:
    """A synthetic person: the plan entry's identity fields."""

    id: str
    seed: int
    params: dict

    @classmethod
    def from_seed(cls, seed: int) -> "SyntheticIdentity":
        rng = np.random.default_rng(_seed("anon-identity", seed))
        group, lo, hi = AGE_BANDS[int(rng.integers(0, 3))]  # drivers: young..middle_aged
        params = {
            "sex": "female" if rng.uniform() < 0.5 else "male",
            "age_group": group,
            "age": int(rng.integers(lo, hi + 1)),
            "skin_tone": int(rng.integers(1, 7)),
            "mixup": None,
        }
        return cls(id=f"anon{seed:010d}", seed=int(seed), params=params)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "identity_seed": self.seed, "identity_params": copy.deepcopy(self.params)}


@dataclass
class Calibration:
    """What MediaPipe reads on this identity's renders (see module docstring)."""

    openness: list[float]
    ear: dict[str, list[float]]  # side -> EAR at each openness
    mouth: list[float]
    mar: list[float]
    iris0: dict[str, tuple[float, float]]  # side -> offset at gaze (0, 0)
    iris_gain: tuple[float, float]  # offset units per degree of gaze (yaw -> +x, pitch -> -y)
    pose_offset: dict[str, float]  # measured = offset + gain * rendered (camera frame, per axis)
    pose_gain: dict[str, float]
    renders: int = 0
    detected: int = 0

    def openness_for(self, side: str, ear_value: float) -> float:
        return _invert(self.openness, self.ear[side], ear_value)

    def ear_slope(self, side: str, o: float) -> float:
        """d(measured EAR)/d(openness) near ``o`` (for closed-loop corrections)."""
        ys = np.maximum.accumulate(np.asarray(self.ear[side], float))
        xs = np.asarray(self.openness, float)
        k = int(np.clip(np.searchsorted(xs, o) - 1, 0, len(xs) - 2))
        return float(max((ys[k + 1] - ys[k]) / max(xs[k + 1] - xs[k], 1e-6), 0.05))

    def mouth_for(self, mar_value: float) -> float:
        return _invert(self.mouth, self.mar, mar_value)

    def mar_slope(self, m: float) -> float:
        ys = np.maximum.accumulate(np.asarray(self.mar, float))
        xs = np.asarray(self.mouth, float)
        k = int(np.clip(np.searchsorted(xs, m) - 1, 0, len(xs) - 2))
        return float(max((ys[k + 1] - ys[k]) / max(xs[k + 1] - xs[k], 1e-6), 0.05))

    def gaze_for(self, iris: dict[str, tuple[float, float]]) -> dict[str, float]:
        dx = np.mean([iris[s][0] - self.iris0[s][0] for s in ("left", "right")])
        dy = np.mean([iris[s][1] - self.iris0[s][1] for s in ("left", "right")])
        gy = float(np.clip(dx / self.iris_gain[0], -GAZE_LIMIT, GAZE_LIMIT))
        gp = float(np.clip(-dy / self.iris_gain[1], -GAZE_LIMIT, GAZE_LIMIT))
        return {"yaw": gy, "pitch": gp}

    def pose_for(self, measured: dict[str, float]) -> dict[str, float]:
        """The pose to render so that MediaPipe reads ``measured`` on this identity."""
        return {k: (measured[k] - self.pose_offset[k]) / self.pose_gain[k] for k in ("yaw", "pitch", "roll")}

    def to_json(self) -> dict[str, Any]:
        r = lambda xs: [round(float(x), 4) for x in xs]  # noqa: E731
        return {"openness": r(self.openness), "ear": {k: r(v) for k, v in self.ear.items()}, "mouth": r(self.mouth),
                "mar": r(self.mar), "iris0": {k: r(v) for k, v in self.iris0.items()}, "iris_gain": r(self.iris_gain),
                "pose_offset": {k: round(v, 3) for k, v in self.pose_offset.items()},
                "pose_gain": {k: round(v, 4) for k, v in self.pose_gain.items()},
                "renders": self.renders, "detected": self.detected}


def _invert(xs: list[float], ys: list[float], y: float) -> float:
    """x in [xs[0], xs[-1]] whose (monotone-made) curve value is y (clamped at the ends)."""
    xs_a = np.asarray(xs, float)
    ys_a = np.maximum.accumulate(np.asarray(ys, float))
    if y <= ys_a[0]:
        return float(xs_a[0])
    if y >= ys_a[-1]:
        return float(xs_a[-1])
    # strictly increasing pieces only (flat runs would make interp ambiguous)
    keep = np.concatenate([[True], np.diff(ys_a) > 1e-9])
    return float(np.interp(y, ys_a[keep], xs_a[keep]))


class HeadModel:
    """Renders synthetic faces through a generator's plan-entry interface.

    ``generator``: anything with ``generate(list[plan entry]) -> list[FaceSample]`` (default: the
    factory's procedural generator). The render camera is fixed (``mount``, ``fov_deg``,
    ``distance_m``); only the image size follows the face being replaced.
    """

    def __init__(self, generator=None, mount: str = "steering_column", fov_deg: float = 30.0, distance_m: float = 0.65):
        if generator is None:
            generator = ProceduralGenerator()
            generator.setup()
        self.gen = generator
        self.mount, self.fov_deg, self.distance_m = mount, float(fov_deg), float(distance_m)
        self._R_cw: dict[int, np.ndarray] = {}
        self._canonical: np.ndarray | None = None
        self._calib: "OrderedDict[tuple, Calibration]" = OrderedDict()
        self.renders = 0

    # ------------------------------------------------------------------ plan entries
    def entry(self, identity: SyntheticIdentity, size: int, *, head_pose_car=None, state=None, gaze=None,
              lighting: str = "daylight", sample_seed: int = 0) -> dict[str, Any]:
        st = {"eye_openness_left": 1.0, "eye_openness_right": 1.0, "mouth_open": 0.0, "yawn": "none",
              "brow_raise": 0.0, "smile": 0.0}
        st.update(state or {})
        return {
            "key": f"{identity.id}-{sample_seed}", "index": 0, "split": "test", "identity": identity.id,
            "identity_seed": int(identity.seed), "sample_seed": int(sample_seed),
            "identity_params": copy.deepcopy(identity.params),
            "class": "alert", "kss": 3, "lighting": lighting, "illuminance_lux": 1000.0, "accessory": "none",
            "camera": {"mount": self.mount, "fov_deg": self.fov_deg, "distance_m": self.distance_m, "image_size": int(size)},
            "state": st,
            "head_pose_car": dict(head_pose_car or {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}),
            "gaze_in_head": dict(gaze or {"yaw": 0.0, "pitch": 0.0}),
            "gaze_zone": "front", "action": "safe_drive", "phone": None,
        }

    def render(self, entry: dict[str, Any]):
        s = self.gen.generate([entry])[0]
        self.renders += 1
        if s.quarantined or s.image is None or s.landmarks is None:
            raise RenderError(f"head generator could not render {entry.get('key')}: "
                              + ("; ".join(s.quarantine_reasons) or "no image/landmarks returned"))
        return s

    def camera_rotation(self, size: int) -> np.ndarray:
        """R_cam_car of the render camera (from a neutral render: head_pose_car = 0)."""
        R = self._R_cw.get(size)
        if R is None:
            ident = SyntheticIdentity.from_seed(0)
            s = self.render(self.entry(ident, size))
            R = self._R_cw[size] = np.asarray(s.params["render"]["head_pose_camera"]["rotation_matrix"], float)
        return R

    def head_frame_landmarks(self, s) -> np.ndarray:
        """(478, 3) head-frame landmarks of a rendered sample (from ``landmarks_3d`` and the reported
        ``head_pose_camera``: X_cam = R X_head + t)."""
        hp = s.params["render"]["head_pose_camera"]
        R = np.asarray(hp["rotation_matrix"], float)
        t = np.asarray(hp["translation_m"], float)
        return (np.asarray(s.arrays["landmarks_3d"], float) - t) @ R

    def canonical_model(self, n: int = 8) -> np.ndarray:
        """The pose-measurement model: mean head-frame landmarks of ``n`` neutral synthetic identities
        (seeds 1..n) as the generator builds them; a generic face, the same for every measurement."""
        if self._canonical is None:
            acc = np.zeros((478, 3))
            for k in range(1, n + 1):
                acc += self.head_frame_landmarks(self.render(self.entry(SyntheticIdentity.from_seed(k), 128)))
            self._canonical = acc / n
        return self._canonical

    def car_pose_for(self, R_rel: np.ndarray, size: int) -> tuple[dict[str, float], bool]:
        """head_pose_car that shows the head at camera-frame rotation ``R_rel``; (pose, clipped)."""
        R_wh = self.camera_rotation(size).T @ (F @ R_rel)
        e = euler_from_matrix(R_wh)
        clipped = False
        for k, lim in POSE_LIMITS.items():
            if abs(e[k]) > lim:
                e[k] = math.copysign(lim, e[k])
                clipped = True
        return {k: float(v) for k, v in e.items()}, clipped

    def render_at(self, identity: SyntheticIdentity, size: int, R_rel: np.ndarray, state: dict, gaze: dict,
                  lighting: str, sample_seed: int, check_pose: bool = True):
        hp, clipped = self.car_pose_for(R_rel, size)
        e = self.entry(identity, size, head_pose_car=hp, state=state, gaze=gaze, lighting=lighting, sample_seed=sample_seed)
        s = self.render(e)
        if check_pose and not clipped:
            got = F @ np.asarray(s.params["render"]["head_pose_camera"]["rotation_matrix"], float)
            err = math.degrees(math.acos(float(np.clip((np.trace(got.T @ R_rel) - 1) / 2, -1, 1))))
            if err > 0.5:
                raise PoseMismatch(f"render reports a camera-frame pose {err:.2f} deg from the request: the "
                                   "generator's camera/pose convention differs from docs/renderer.md")
        return s, e, clipped

    # ------------------------------------------------------------------ calibration
    def _measure(self, mesh, s, size: int):
        found = mesh.landmarks(s.image)
        if not found:
            return None
        return measure_landmarks(found[0][0], size, size, self.fov_deg, model=self.canonical_model())

    def calibrate(self, identity: SyntheticIdentity, mesh, lighting: str = "daylight", size: int = 256,
                  sample_seed: int = 7) -> Calibration:
        """MediaPipe's readings of this identity (see module docstring); cached per identity.

        12 renders: eye openness = mouth opening at 0, 0.2, ..., 1 (frontal); yaw +-25 and pitch
        +-15 deg (eyes open, mouth closed); gaze yaw 20 and pitch 15 deg."""
        key = (identity.seed, repr(sorted(identity.params.items())), lighting, size)
        c = self._calib.get(key)
        if c is not None:
            self._calib.move_to_end(key)
            return c
        levels = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        zero = {"yaw": 0.0, "pitch": 0.0}
        eo, ear_l, ear_r, mar_v = [], [], [], []
        pose_pts: list[tuple[dict, dict]] = []
        iris0 = None
        n = det = 0
        for o in levels:
            st = {"eye_openness_left": o, "eye_openness_right": o, "mouth_open": o,
                  "yawn": "yawning_without_hand" if o >= 0.6 else "none"}
            s, _, _ = self.render_at(identity, size, np.eye(3), st, zero, lighting, sample_seed)
            n += 1
            m = self._measure(mesh, s, size)
            if m is None:
                continue
            det += 1
            eo.append(o)
            ear_l.append(m.ear["left"])
            ear_r.append(m.ear["right"])
            mar_v.append(m.mar)
            if o == 1.0:
                iris0 = m.iris
            if o <= 0.2 and m.head_pose is not None:
                pose_pts.append(({"yaw": 0.0, "pitch": 0.0, "roll": 0.0}, m.head_pose))
        for yaw, pitch in ((25.0, 0.0), (-25.0, 0.0), (0.0, 15.0), (0.0, -15.0)):
            s, _, _ = self.render_at(identity, size, matrix_from_euler(yaw, pitch, 0.0), {}, zero, lighting, sample_seed)
            n += 1
            m = self._measure(mesh, s, size)
            if m is not None and m.head_pose is not None:
                det += 1
                pose_pts.append(({"yaw": yaw, "pitch": pitch, "roll": 0.0}, m.head_pose))
        gains: list[float | None] = []
        for gy, gp in ((20.0, 0.0), (0.0, 15.0)):
            s, _, _ = self.render_at(identity, size, np.eye(3), {}, {"yaw": gy, "pitch": gp}, lighting, sample_seed)
            n += 1
            m = self._measure(mesh, s, size)
            if m is None or iris0 is None:
                gains.append(None)
                continue
            det += 1
            if gy:
                gains.append(float(np.mean([m.iris[k][0] - iris0[k][0] for k in ("left", "right")]) / gy))
            else:
                gains.append(float(-np.mean([m.iris[k][1] - iris0[k][1] for k in ("left", "right")]) / gp))
        if len(eo) < 3 or iris0 is None or len(pose_pts) < 3:
            raise RenderError(f"calibration of {identity.id}: MediaPipe read the face in only {det} of {n} renders")
        # gaze: the label verifier's 11 deg per unit offset where a calibration render failed
        g = tuple(x if x is not None and abs(x) > 1e-3 else 1.0 / 11.0 for x in gains)
        off, gain = {}, {}
        for k in ("yaw", "pitch", "roll"):
            x = np.array([a[k] for a, _ in pose_pts])
            y = np.array([b[k] for _, b in pose_pts])
            if np.ptp(x) > 1.0:
                gk, ok = np.polyfit(x, y, 1)
                gk = float(np.clip(gk, 0.5, 1.5))
                ok = float(np.mean(y - gk * x))
            else:
                gk, ok = 1.0, float(np.mean(y - x))
            off[k], gain[k] = ok, gk
        c = Calibration(eo, {"left": ear_l, "right": ear_r}, list(eo), mar_v, iris0, g, off, gain, n, det)  # type: ignore[arg-type]
        self._calib[key] = c
        if len(self._calib) > 256:
            self._calib.popitem(last=False)
        return c

    def tone_table(self, mesh=None, lighting: str = "daylight", size: int = 192, sample_seed: int = 7) -> dict[int, np.ndarray]:
        """Mean skin colour (RGB, 0-255) of a frontal render for each Fitzpatrick skin tone 1-6
        (identity seed 1, the calibration lighting): used to give a synthetic identity a skin tone
        near the original's, so the relighting ratio stays near 1."""
        key = (lighting, size, sample_seed)
        t = getattr(self, "_tones", {}).get(key)
        if t is None:
            import cv2

            t = {}
            skin = index_sets()["skin"]
            base = SyntheticIdentity.from_seed(1)
            for tone in range(1, 7):
                ident = SyntheticIdentity(base.id, base.seed, {**base.params, "skin_tone": tone})
                s, _, _ = self.render_at(ident, size, np.eye(3), {}, {"yaw": 0.0, "pitch": 0.0}, lighting, sample_seed)
                n = vertex_normals(s.arrays["landmarks_3d"])
                img = cv2.GaussianBlur(s.image.astype(np.float32), (0, 0), 1.5)
                coef = fit_shading(img, np.asarray(s.landmarks, float)[skin] - 0.5, n[skin])
                A = np.hstack([np.ones((len(skin), 1)), n[skin]])
                t[tone] = (A @ coef).mean(0)
            if not hasattr(self, "_tones"):
                self._tones = {}
            self._tones[key] = t
        return t


def rel_matrix(pose: dict[str, float]) -> np.ndarray:
    return matrix_from_euler(pose["yaw"], pose["pitch"], pose["roll"])
