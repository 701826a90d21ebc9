"""Augmentation: geometry carried with the pixels, left/right swap, replay, occlusion, config errors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dmsfactory.augment import AugmentConfig, AugmentStage
from dmsfactory.augment.mirror import mirror_index
from dmsfactory.augment.ops import EYE_LEFT, EYE_RIGHT, OPS
from dmsfactory.augment.pose import euler_from_matrix, matrix_from_euler
from dmsfactory.sample import FaceSample
from dmsfactory.spec import SpecError, parse_spec

cv2.setNumThreads(1)


def _mesh(img: np.ndarray) -> np.ndarray:
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True, max_num_faces=1) as fm:
        r = fm.process(img)
    assert r.multi_face_landmarks, "MediaPipe found no face in the test photo"
    h, w = img.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in r.multi_face_landmarks[0].landmark], np.float64)


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    img = cv2.resize(data.astronaut()[0:260, 120:330], (256, 256), interpolation=cv2.INTER_AREA)
    return img, _mesh(img)


def _labels() -> dict:
    return {
        "eyes": {"left": {"state": "open", "openness": 0.9, "visible": True, "tag": "L"},
                 "right": {"state": "close", "openness": 0.1, "visible": True, "tag": "R"}},
        "mouth": {"openness": 0.8, "yawn": "yawning_without_hand"},
        "head_pose": {"yaw": 0.0, "pitch": 0.0, "roll": 6.0},
        "head_pose_car": {"yaw": 20.0, "pitch": -4.0, "roll": 6.0},
        "gaze": {"left": {"vector": [0.3, 0.1, -0.95], "yaw": 17.5, "pitch": -5.7},
                 "right": {"vector": [0.2, 0.1, -0.97], "yaw": 11.6, "pitch": -5.7},
                 "zone": "left_mirror", "on_road": False},
        "gaze_zone_dmd": "left_mirror",
        "action": "phone_call_left",
        "hands_on_wheel": "only_right",
    }


def _sample(photo, key="spec000000-0000007") -> FaceSample:
    img, lm = photo
    return FaceSample(key=key, index=7, params={"seed": 1}, image=img.copy(), labels=_labels(),
                      landmarks=lm.astype(np.float32), visibility=np.ones(478, bool),
                      bbox=(float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max())),
                      split="val", identity="id000003")


def _only(op: str, **extra) -> AugmentConfig:
    return AugmentConfig(enabled=True, policy="none", views_per_image=1, probabilities={op: 1.0}, **extra)


# ---------------------------------------------------------------------------------------------
def test_mirror_map_is_an_involution_that_swaps_eyes():
    m = mirror_index()
    assert np.array_equal(m[m], np.arange(478))
    assert m[33] == 263 and m[133] == 362 and m[61] == 291 and m[468] == 473
    assert {int(m[i]) for i in EYE_RIGHT} == set(EYE_LEFT)
    assert m[1] == 1 and m[152] == 152  # midline points map to themselves


def test_mirror_map_matches_mediapipe_on_a_mirrored_photo(photo):
    img, lm = photo
    flipped_det = _mesh(np.ascontiguousarray(img[:, ::-1]))
    ours = lm.copy()
    ours[:, 0] = img.shape[1] - ours[:, 0]
    ours = ours[mirror_index()]
    err = np.linalg.norm(ours - flipped_det, axis=1)
    # MediaPipe is not exactly mirror-equivariant, but a wrong pair would be off by a landmark spacing
    assert np.median(err) < 1.5 and err.max() < 6.0, (np.median(err), err.max())
    shuffled = ours[np.r_[1:478, 0]]
    assert np.median(np.linalg.norm(shuffled - flipped_det, axis=1)) > 3 * np.median(err)


def test_flip_swaps_left_right_landmarks_and_labels(photo):
    s = _sample(photo)
    v = AugmentStage(_only("hflip"), seed=1).process([s])[1]
    w = s.image.shape[1]
    assert np.array_equal(v.image, s.image[:, ::-1])
    # the subject's right outer eye corner (33) of the flipped image is the mirrored left corner (263)
    np.testing.assert_allclose(v.landmarks[33], [w - s.landmarks[263][0], s.landmarks[263][1]], atol=1e-4)
    np.testing.assert_allclose(v.landmarks[473], [w - s.landmarks[468][0], s.landmarks[468][1]], atol=1e-4)
    assert v.labels["eyes"]["left"]["tag"] == "R" and v.labels["eyes"]["right"]["tag"] == "L"
    assert v.labels["gaze"]["zone"] == "right_mirror" and v.labels["gaze_zone_dmd"] == "right_mirror"
    assert v.labels["gaze"]["left"]["vector"][0] == pytest.approx(-0.2)
    assert v.labels["gaze"]["left"]["yaw"] == pytest.approx(-11.6)
    assert v.labels["head_pose"] == {"yaw": -0.0, "pitch": 0.0, "roll": -6.0}
    assert v.labels["action"] == "phone_call_right" and v.labels["hands_on_wheel"] == "only_left"
    assert v.labels["cabin"] == "right_hand_drive"
    x0, y0, x1, y1 = v.bbox
    assert x0 == pytest.approx(w - s.bbox[2], abs=1e-6) and x1 == pytest.approx(w - s.bbox[0], abs=1e-6)
    # the flipped eye really is where MediaPipe sees it: EAR-eye 33/133 is near the detected one
    det = _mesh(v.image)
    assert np.linalg.norm(det[[33, 133, 468]] - v.landmarks[[33, 133, 468]], axis=1).max() < 6.0


def test_front_right_gaze_is_not_flipped_by_default(photo):
    s = _sample(photo)
    s.labels["gaze"]["zone"] = "front_right"
    v = AugmentStage(_only("hflip"), seed=1).process([s])[1]
    assert [e["op"] for e in v.aug] == ["view", "skipped"] and np.array_equal(v.image, s.image)
    v2 = AugmentStage(_only("hflip", flip_front_right="not_valid"), seed=1).process([s])[1]
    assert v2.labels["gaze"]["zone"] == "not_valid"


def _dot_image(points: np.ndarray, size=256) -> np.ndarray:
    """Gaussian blobs at sub-pixel positions (continuous coordinates, pixel centre = i + 0.5)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = np.zeros((size, size), np.float64)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    return np.repeat(np.clip(img * 250, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _centroid(img: np.ndarray, x: float, y: float, r=6) -> np.ndarray:
    g = img[:, :, 0].astype(np.float64)
    x0, y0 = int(x) - r, int(y) - r
    patch = g[y0: y0 + 2 * r + 1, x0: x0 + 2 * r + 1]
    yy, xx = np.mgrid[0: patch.shape[0], 0: patch.shape[1]] + 0.5
    return np.array([(patch * (xx + x0)).sum(), (patch * (yy + y0)).sum()]) / patch.sum()


@pytest.mark.parametrize("op", ["affine", "hflip"])
def test_keypoints_follow_pixels_and_closed_form(photo, op):
    _, lm = photo
    idx = [1, 33, 291, 473, 152, 10]  # well separated blobs
    s = _sample(photo)
    s.image = _dot_image(lm[idx])
    cfg = _only(op, rotate_deg=15, translate=0.05)
    for key in ("k1-0000001", "k2-0000002", "k3-0000003"):
        s.key = key
        v = AugmentStage(cfg, seed=5).process([s])[1]
        rec = [e for e in v.aug if e["op"] == op][0]["params"]
        if op == "affine":
            a = np.asarray(rec["matrix"])
            ang, sc = math.radians(rec["angle_deg"]), rec["scale"]
            np.testing.assert_allclose(a[:, :2], sc * np.array([[math.cos(ang), math.sin(ang)],
                                                                 [-math.sin(ang), math.cos(ang)]]), atol=1e-12)
            expected = s.landmarks.astype(np.float64) @ a[:, :2].T + a[:, 2]
            np.testing.assert_allclose(v.landmarks, expected, atol=1e-3)
            assert v.labels["head_pose"]["roll"] == pytest.approx(6.0 - rec["angle_deg"], abs=1e-9)
            assert v.labels["head_pose"]["yaw"] == pytest.approx(0.0, abs=1e-9)
            assert v.labels["head_pose_car"]["roll"] == 6.0  # image rotation = camera roll: car frame unchanged
        for i in idx:  # the blob drawn at landmark i moved exactly where landmark i went
            c0 = _centroid(s.image, *s.landmarks[i]) - s.landmarks[i]  # rendering/quantisation bias
            j = int(mirror_index()[i]) if op == "hflip" else i
            c = _centroid(v.image, *v.landmarks[j])
            if op == "affine":
                c0 = a[:, :2] @ c0
            else:
                c0[0] = -c0[0]
            assert np.linalg.norm(c - c0 - v.landmarks[j]) < 0.1, (op, i, c, v.landmarks[j])


def test_round_trip_by_inverting_recorded_geometry(photo):
    s = _sample(photo)
    cfg = AugmentConfig(enabled=True, policy="geometric", views_per_image=6)
    for v in AugmentStage(cfg, seed=9).process([s])[1:]:
        pts = v.landmarks.astype(np.float64)
        for e in reversed([e for e in v.aug if e["op"] in ("affine", "hflip")]):
            if e["op"] == "affine":
                a = np.asarray(e["params"]["matrix"])
                pts = (pts - a[:, 2]) @ np.linalg.inv(a[:, :2]).T
            else:
                pts[:, 0] = s.image.shape[1] - pts[:, 0]
                pts = pts[mirror_index()]
        assert np.abs(pts - s.landmarks).max() <= 0.1


def test_replay_reproduces_every_op_exactly(photo):
    s = _sample(photo)
    for name in OPS:
        st = AugmentStage(_only(name), seed=11)
        v = st.process([s])[1]
        r = AugmentStage.replay(s, v.aug)
        assert np.array_equal(r.image, v.image), name
        assert np.array_equal(r.landmarks, v.landmarks) and np.array_equal(r.visibility, v.visibility), name
        assert r.labels == v.labels and r.bbox == v.bbox and r.key == v.key, name
    cfg = AugmentConfig(enabled=True, views_per_image=4, probabilities={n: 0.6 for n in OPS})
    for v in AugmentStage(cfg, seed=2).process([s])[1:]:
        r = AugmentStage.replay(s, v.aug)
        assert np.array_equal(r.image, v.image) and r.labels == v.labels and r.aug == v.aug


def test_deterministic_per_key_and_independent_of_batch(photo):
    a, b = _sample(photo, "s-0000001"), _sample(photo, "s-0000002")
    cfg = AugmentConfig(enabled=True, views_per_image=2)
    one = AugmentStage(cfg, seed=4).process([a, b])
    two = AugmentStage(cfg, seed=4).process([b.copy()]) + AugmentStage(cfg, seed=4).process([a.copy()])
    by_key = {v.key: v for v in two}
    for v in one:
        assert np.array_equal(v.image, by_key[v.key].image) and v.aug == by_key[v.key].aug
    assert not np.array_equal(one[1].image, one[2].image)  # views differ
    other_seed = AugmentStage(cfg, seed=5).process([a])
    assert other_seed[1].aug != one[1].aug


def test_views_share_identity_split_index_and_keys(photo):
    s = _sample(photo)
    out = AugmentStage(AugmentConfig(enabled=True, views_per_image=3), seed=0).process([s])
    assert [o.key for o in out] == [s.key, f"{s.key}_a0", f"{s.key}_a1", f"{s.key}_a2"]
    for v in out[1:]:
        assert (v.index, v.split, v.identity, v.source_key) == (7, "val", "id000003", s.key)
        assert "." not in v.key
        v.to_json()  # serialisable
    out2 = AugmentStage(AugmentConfig(enabled=True, views_per_image=2, keep_originals=False), seed=0).process([s])
    assert [o.key for o in out2] == [f"{s.key}_a0", f"{s.key}_a1"]


def test_occluded_and_out_of_frame_landmarks_are_flagged(photo):
    s = _sample(photo)
    lm = s.landmarks
    x0, y0 = lm[list(EYE_RIGHT)].min(0) - 2
    x1, y1 = lm[list(EYE_RIGHT)].max(0) + 2
    v = AugmentStage(_only("occlusion"), seed=0).augment_one(s, 0)
    from dmsfactory.augment.ops import View, apply_occlusion
    from dmsfactory.augment.stage import _to_view

    view = _to_view(s)
    apply_occlusion(view, {"x0": float(x0), "y0": float(y0), "x1": float(x1), "y1": float(y1), "colour": [0, 0, 0],
                           "eye_fraction": 0.5})
    assert not view.visibility[list(EYE_RIGHT)].any() and view.visibility[list(EYE_LEFT)].all()
    assert view.labels["eyes"]["right"]["visible"] is False and view.labels["eyes"]["left"]["visible"] is True
    assert isinstance(view, View) and v.visibility is not None
    # a big shift pushes part of the face out of the frame: those points are not visible
    big = AugmentStage(_only("affine", translate=0.5, rotate_deg=0), seed=0)
    for j in range(6):
        w = big.augment_one(s, j)
        out = (w.landmarks[:, 0] < 0) | (w.landmarks[:, 0] >= 256) | (w.landmarks[:, 1] < 0) | (w.landmarks[:, 1] >= 256)
        assert np.array_equal(~out, w.visibility)
    # every occluder hides what it covers: no visible landmark sits on an occluder pixel it painted
    for name in ("hand_over_mouth", "hair_over_eye", "wheel_edge"):
        w = AugmentStage(_only(name), seed=3).augment_one(s, 0)
        assert (~w.visibility).sum() > 0, name


def test_hand_over_mouth_updates_yawn_label(photo):
    s = _sample(photo)
    v = AugmentStage(_only("hand_over_mouth"), seed=1).augment_one(s, 0)
    assert v.labels["mouth"]["yawn"] == "yawning_with_hand" and v.labels["mouth"]["visible"] is False
    assert not v.visibility[[13, 14]].any()
    assert s.labels["mouth"]["yawn"] == "yawning_without_hand"  # the source is untouched


def test_pose_conventions_round_trip_and_match_the_renderer():
    from dmsfactory.augment.pose import forward, gaze_angles, rotate_head_pose

    for e in [(10, 5, 3), (-40, 20, -15), (60, -30, 40)]:
        d = euler_from_matrix(matrix_from_euler(*e))
        assert (d["yaw"], d["pitch"], d["roll"]) == pytest.approx(e)
        g = gaze_angles(forward(e[0], e[1]))
        assert (g["yaw"], g["pitch"]) == pytest.approx(e[:2])
        # rotating the image by a, then by -a, restores the pose
        back = rotate_head_pose(rotate_head_pose(dict(zip(("yaw", "pitch", "roll"), e)), 13.0), -13.0)
        assert (back["yaw"], back["pitch"], back["roll"]) == pytest.approx(e)
    render = pytest.importorskip("dmsfactory.generators.procedural.render")
    for e in [(10, 5, 3), (-40, 20, -15)]:
        np.testing.assert_allclose(render.euler_to_R(*e), matrix_from_euler(*e), atol=1e-12)


def _spec(augment: dict) -> dict:
    return {"name": "t", "seed": 1, "classes": {"alert": 1}, "identities": {"count": 2, "images_per_identity": 1},
            "augment": augment}


@pytest.mark.parametrize("bad,field", [
    ({"probabilities": {"affine": 1.5}}, "probabilities.affine"),
    ({"probabilities": {"twirl": 0.5}}, "augment.probabilities.twirl"),
    ({"strength": 3}, "augment.strength"),
    ({"scale": {"min": 1.2, "max": 0.9}}, "augment.scale"),
    ({"policy": "wild"}, "augment.policy"),
    ({"rotation": 10}, "augment.rotation"),
    ({"jpeg_quality": {"min": 0, "max": 50}}, "jpeg_quality"),
])
def test_bad_policy_config_names_the_field(bad, field):
    with pytest.raises(SpecError) as ei:
        parse_spec(_spec(bad))
    assert any(field in p for p in ei.value.problems), ei.value.problems
    assert parse_spec(_spec({"enabled": True, "policy": "face_guide", "strength": 0.5})).augment.strength == 0.5


def test_bad_input_gets_a_clear_error(photo):
    s = _sample(photo)
    s.landmarks = s.landmarks[:68]
    s.visibility = s.visibility[:68]
    v = AugmentStage(_only("hflip"), seed=0).process([s])[1]
    assert v.quarantined and "478" in v.quarantine_reasons[0]
    s2 = _sample(photo)
    s2.image = s2.image.astype(np.float32)
    v2 = AugmentStage(_only("affine"), seed=0).process([s2])[1]
    assert v2.quarantined and "uint8" in v2.quarantine_reasons[0]


# --- round 2: albumentations-backed ops, noise bank, copies ---------------------------------------
def test_standard_ops_are_albumentations_transforms_with_recorded_params(photo):
    import albumentations as A

    s = _sample(photo)
    img = s.image
    h, w = img.shape[:2]
    for name, impl in [("affine", "A.Affine"), ("brightness_contrast", "A.RandomBrightnessContrast"),
                       ("saturation", "A.ColorJitter"), ("occlusion", "A.CoarseDropout"),
                       ("motion_blur", "A.MotionBlur"), ("jpeg", "A.ImageCompression")]:
        v = AugmentStage(_only(name), seed=21).augment_one(s, 0)
        p = [e for e in v.aug if e["op"] == name][0]["params"]
        assert p["impl"] == impl, name
        # the same albumentations transform, called directly with the recorded parameters
        if name == "affine":
            m = np.eye(3)
            m[:2] = np.asarray(p["matrix"])
            m[:2, 2] = m[:2, :2] @ [0.5, 0.5] + m[:2, 2] - 0.5
            ref = A.Affine(p=1.0, border_mode=cv2.BORDER_CONSTANT, fill=0).apply(img, matrix=m, output_shape=(h, w))
        elif name == "brightness_contrast":
            ref = A.RandomBrightnessContrast(p=1.0).apply(img, alpha=p["alpha"], beta=p["beta"])
            assert 0.85 - 1e-9 <= p["alpha"] <= 1.15 + 1e-9 and abs(p["beta"]) <= 0.2 * 255 + 1e-9
        elif name == "saturation":
            ref = A.ColorJitter(p=1.0).apply(img, brightness=1.0, contrast=1.0, saturation=p["factor"], hue=0.0,
                                             order=[2])
        elif name == "occlusion":
            x0, y0 = max(0, round(p["x0"])), max(0, round(p["y0"]))
            x1, y1 = min(w, round(p["x1"])), min(h, round(p["y1"]))
            ref = A.CoarseDropout(p=1.0, fill=p["colour"][0]).apply(img, holes=np.array([[x0, y0, x1, y1]]), seed=0)
        elif name == "motion_blur":
            k = np.asarray(p["kernel"], np.float32)
            assert k.shape[0] % 2 == 1 and 3 <= k.shape[0] <= 11 and abs(k.sum() - 1) < 1e-5
            ref = A.MotionBlur(p=1.0).apply(img, kernel=k)
        else:
            ref = A.ImageCompression(p=1.0).apply(img, quality=p["quality"], image_type=".jpg")
        assert np.array_equal(v.image, ref), name
        assert not np.array_equal(v.image, img), name


def test_gaussian_noise_bank_has_the_recorded_sigma(photo):
    from dmsfactory.augment.ops import NOISE_BANK_ID

    s = _sample(photo)
    s.image = np.full_like(s.image, 128)  # no clipping: the difference is the noise itself
    st = AugmentStage(_only("gaussian_noise", noise_sigma={"min": 0.04, "max": 0.04}), seed=3)
    diffs = []
    for j in range(3):
        v = st.augment_one(s, j)
        p = [e for e in v.aug if e["op"] == "gaussian_noise"][0]["params"]
        assert p["bank"] == NOISE_BANK_ID and p["sigma"] == pytest.approx(0.04)
        d = v.image.astype(np.float64) - 128
        assert abs(d.mean()) < 0.2 and d.std() == pytest.approx(0.04 * 255, rel=0.03), d.std()
        # neighbouring pixels are uncorrelated
        assert abs(np.corrcoef(d[:, :-1].ravel(), d[:, 1:].ravel())[0, 1]) < 0.02
        diffs.append(d)
    assert not np.array_equal(diffs[0], diffs[1])
    bad = [dict(e, params=dict(e["params"], bank="other")) if e["op"] == "gaussian_noise" else e for e in v.aug]
    with pytest.raises(ValueError, match="noise bank"):
        AugmentStage.replay(s, bad)


def test_round1_records_still_replay(photo):
    s = _sample(photo)
    rec = [{"stage": "augment", "view": 0, "op": "view", "params": {"seed": 0, "source_key": s.key}},
           {"stage": "augment", "view": 0, "op": "brightness_contrast", "params": {"alpha": 1.1, "beta": 10.0}},
           {"stage": "augment", "view": 0, "op": "motion_blur", "params": {"length": 5, "angle": 30.0}},
           {"stage": "augment", "view": 0, "op": "gaussian_noise", "params": {"sigma": 0.02, "seed": 5}},
           {"stage": "augment", "view": 0, "op": "jpeg", "params": {"quality": 50}}]
    a, b = AugmentStage.replay(s, rec), AugmentStage.replay(s, rec)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, s.image)
    one = AugmentStage.replay(s, rec[:2])  # round-1 brightness/contrast: contrast around the grey mean
    mean = cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY).mean()
    lut = np.clip(np.round(np.arange(256) * 1.1 + (1 - 1.1) * mean + 10.0), 0, 255).astype(np.uint8)
    assert np.array_equal(one.image, cv2.LUT(s.image, lut))


def test_views_never_write_into_the_source_or_each_other(photo):
    s = _sample(photo)
    img0, lab0, lm0 = s.image.copy(), repr(s.labels), s.landmarks.copy()
    params0 = repr(s.params)
    cfg = AugmentConfig(enabled=True, views_per_image=3, probabilities={n: 1.0 for n in OPS})
    out = AugmentStage(cfg, seed=8).process([s])
    # every in-place writer fired (occluders), yet the source is untouched
    assert np.array_equal(s.image, img0) and repr(s.labels) == lab0 and np.array_equal(s.landmarks, lm0)
    assert repr(s.params) == params0
    views = out[1:]
    for i, v in enumerate(views):
        assert not np.shares_memory(v.image, s.image)
        assert v.labels is not s.labels and v.params is not s.params
        for u in views[i + 1:]:
            assert not np.shares_memory(v.image, u.image) and v.labels is not u.labels
    # an op chain that leaves the pixels alone still hands out a private image
    s2 = _sample(photo)
    s2.labels["gaze"]["zone"] = "front_right"
    v = AugmentStage(_only("hflip"), seed=1).augment_one(s2, 0)
    assert np.array_equal(v.image, s2.image) and not np.shares_memory(v.image, s2.image)
