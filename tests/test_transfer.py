"""Sim-to-real report (`dmsfactory transfer`): crop rules, layout errors, metrics, controls, determinism.

Every "real" image here is one of OUR renders written in the real-folder layout (never a photo).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from dmsfactory.transfer import crops as C
from dmsfactory.transfer import metrics as M
from dmsfactory.transfer.layout import LayoutError, read_real

procedural = pytest.importorskip("dmsfactory.generators.procedural")

TINY = {"synthetic_epochs": 1, "real_epochs": 1, "finetune_steps": 2, "dp_epochs": 1}


# --- fixtures: renders as a "real" folder, and tiny factory shards -------------------------------------

def _entries(n: int, seed: int, **state) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        st = {"eye_openness_left": 1.0, "eye_openness_right": 1.0, "mouth_open": 0.0, "yawn": "none"}
        st.update(state)
        out.append(procedural.example_plan_entry(
            key=f"fx{seed}-{i:07d}", index=i, identity=f"fx{seed}_{i % 6}", identity_seed=int(seed * 100 + i % 6),
            sample_seed=int(seed * 1000 + i),
            identity_params={"sex": "female" if i % 2 else "male", "skin_tone": int(1 + i % 6)},
            state=st, head_pose_car={"yaw": float(rng.uniform(-15, 15)), "pitch": float(rng.uniform(-8, 8)),
                                     "roll": float(rng.uniform(-5, 5))},
            camera={"fov_deg": 40.0, "image_size": 256}))
    return out


@pytest.fixture(scope="module")
def renders():
    from dmsfactory.labelers.params import make_labels

    gen = procedural.ProceduralGenerator()
    gen.setup()
    groups = {
        "open": _entries(10, 1),
        "closed": _entries(10, 2, eye_openness_left=0.0, eye_openness_right=0.0),
        "yawn": _entries(10, 3, mouth_open=0.95, yawn="yawning_without_hand"),
        "no_yawn": _entries(10, 4),
    }
    out = {}
    for k, es in groups.items():
        ss = gen.generate(es)
        for s in ss:
            assert not s.quarantined, s.verdicts
            s.labels = make_labels(s.params)
        out[k] = ss
    return out


def _write_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="module")
def real_dir(renders, tmp_path_factory) -> Path:
    """Our renders in the real-folder layout: eye_state/, yawn/ (+ identities.csv), faces/ (points, pose, gaze)."""
    from dmsfactory.labelers.params import ibug68_index_map

    root = tmp_path_factory.mktemp("real")
    ib = list(ibug68_index_map())
    for cls in ("open", "closed"):
        for s in renders[cls]:
            _write_png(root / "eye_state" / cls / f"{s.key}.png", s.image)
    ids = []
    for cls in ("yawn", "no_yawn"):
        for s in renders[cls]:
            _write_png(root / "yawn" / cls / f"{s.key}.png", s.image)
            ids.append((f"{cls}/{s.key}.png", s.identity))
    with (root / "yawn" / "identities.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "identity"])
        w.writerows(ids)
    header = ["file", "identity"] + [f"{a}{i}" for i in range(68) for a in ("x", "y")] + ["yaw", "pitch", "roll",
                                                                                        "gaze_yaw", "gaze_pitch"]
    rows = []
    for s in renders["open"] + renders["no_yawn"]:
        name = f"{s.key}.png"
        _write_png(root / "faces" / "images" / name, s.image)
        pts = np.asarray(s.landmarks)[ib]
        hp = s.labels["head_pose"]
        gz = s.labels["gaze"]
        rows.append([name, s.identity] + [f"{v:.3f}" for v in pts.reshape(-1)]
                    + [hp["yaw"], hp["pitch"], hp["roll"], (gz["left"]["yaw"] + gz["right"]["yaw"]) / 2,
                       (gz["left"]["pitch"] + gz["right"]["pitch"]) / 2])
    with (root / "faces" / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A tiny factory dataset: open/closed eyes and yawns, renders + one augmented view."""
    from dmsfactory import pipeline
    from dmsfactory.spec import parse_spec

    out = tmp_path_factory.mktemp("shards")
    spec = parse_spec({
        "name": "transfer-tiny", "seed": 11, "backend": "procedural",
        "classes": {"alert": 1, "moderate_fatigue": 1, "severe_fatigue": 2},
        "conditions": {"lighting": {"daylight": 3, "night_ir": 1}, "accessory": {"none": 1},
                       "head_pose": {"yaw": {"min": -15, "max": 15}, "pitch": {"min": -8, "max": 8},
                                     "roll": {"min": -5, "max": 5}},
                       "camera": {"mount": {"steering_column": 1}, "fov_deg": 38}},
        "identities": {"count": 24, "images_per_identity": 6, "mixup_fraction": 0.0},
        "image": {"size": 192}, "shards": {"size": 48},
        "splits": {"train": 0.7, "val": 0.15, "test": 0.15},
        "augment": {"enabled": False}, "verify": {"enabled": False}, "privacy": {"enabled": False},
    })
    pipeline.run_plain(spec, out)
    return out


# --- crop rules ------------------------------------------------------------------------------------------

def test_crop_rule_same_framing_on_render_and_its_mediapipe_redetection(renders):
    """The face crop of a render from its exact landmarks and from MediaPipe's re-detection frame the same face.

    Tolerance, from 309 renders of the demo spec where MediaPipe found the face (all conditions, camera yaw
    up to 70 deg): IoU median 0.86 (5th percentile 0.68, min 0.54), centre offset median 0.047 of the side
    (95th percentile 0.116), side ratio 0.85-1.11 (5-95 %). The misses are MediaPipe fitting a human face
    to our longest identities (its box up to 23 % shorter; docs/transfer-log.md), not the rule. So: median IoU
    >= 0.80, at least 80 % of faces >= 0.72, every centre within 0.12 of the side, every side ratio in
    0.75-1.15; crops of open eyes median IoU >= 0.6, none below 0.4 (measured median 0.73)."""
    from dmsfactory.labelers.config import VerifyConfig
    from dmsfactory.labelers.verify import VerifyStage

    st = VerifyStage(VerifyConfig(enabled=True))
    faces, eyes = [], []
    for s in renders["open"] + renders["no_yawn"]:
        p = st.detect(s.image)
        assert p is not None, f"MediaPipe missed a frontal render {s.key}"
        exact = np.asarray(s.landmarks)
        faces.append(C.framing_agreement(C.face_box(exact), C.face_box(p)))
        if s in renders["open"]:
            for side in ("left", "right"):
                eyes.append(C.framing_agreement(C.eye_box(exact, side), C.eye_box(p, side))["iou"])
        # the check can fail: the same rule on landmarks moved by 15 % of the crop side is out of tolerance
        moved = exact + 0.15 * C.face_box(exact).side
        assert C.framing_agreement(C.face_box(exact), C.face_box(moved))["iou"] < 0.72
    st.close()
    iou = np.array([f["iou"] for f in faces])
    off = np.array([f["centre_offset"] for f in faces])
    side = np.array([f["side_ratio"] for f in faces])
    assert np.median(iou) >= 0.80 and (iou >= 0.72).mean() >= 0.8, iou
    assert off.max() <= 0.12, off
    assert side.min() >= 0.75 and side.max() <= 1.15, side
    assert np.median(eyes) >= 0.6 and min(eyes) >= 0.4, eyes


def test_synthetic_face_crops_are_framed_by_the_given_detector_and_targets_stay_exact(shards):
    """``frame``: the face crop is cut around the detector's points (as on a real image), the landmark
    targets are the exact points in that crop, eye crops keep the exact landmarks, and a sample the
    detector misses leaves the face-crop tasks with its reason counted (not silently)."""
    from dmsfactory.labelers.params import ibug68_index_map
    from dmsfactory.training.data import iter_samples
    from dmsfactory.transfer.synth import NOT_FRAMED, face_crops, read_synthetic

    tasks = ("eye", "yawn", "landmarks")
    exact = read_synthetic(shards, "train", tasks, limit=12)
    docs = [(np.asarray(r["image"]), np.asarray(r["json"]["landmarks"]["xy"], np.float64))
            for r, _ in zip(iter_samples(shards, "train"), range(12))]
    points = {img.tobytes(): xy for img, xy in docs}
    seen = []

    def shifted(img):  # a "detector" that finds every other face 12 px to the right of its exact place
        seen.append(1)
        return None if len(seen) % 2 == 0 else points[np.asarray(img).tobytes()] + np.array([12.0, 0.0])

    framed = read_synthetic(shards, "train", tasks, limit=12, frame=shifted)
    assert framed.excluded["landmarks"][NOT_FRAMED] == 6 and framed.excluded["yawn"][NOT_FRAMED] >= 1
    assert len(framed.tasks["landmarks"]) == 6 and len(exact.tasks["landmarks"]) == 12
    assert len(framed.tasks["eye"]) == len(exact.tasks["eye"])  # eye crops: exact landmarks, unaffected
    np.testing.assert_array_equal(framed.tasks["eye"].x, exact.tasks["eye"].x)
    ib = np.asarray(ibug68_index_map(), np.int64)
    for row, (img, xy) in zip(range(6), docs[::2]):
        big, _, box = face_crops(C.grey(img), xy + np.array([12.0, 0.0]))
        np.testing.assert_array_equal(framed.tasks["landmarks"].x[row], big)
        np.testing.assert_allclose(framed.tasks["landmarks"].y[row], box.to_crop(xy[ib], C.LANDMARK_SIZE).reshape(-1),
                                   rtol=1e-6, atol=1e-6)
        assert not np.array_equal(big, exact.tasks["landmarks"].x[2 * row])  # the framing did move


def test_no_augmented_leaves_out_the_augment_stages_views_and_counts_them(tmp_path):
    """``augmented=False``: the rows are exactly the rendered images' rows, and every augmented view is
    counted as left out for each task (never dropped silently)."""
    from dmsfactory import pipeline
    from dmsfactory.spec import parse_spec
    from dmsfactory.transfer.synth import AUGMENTED, read_synthetic

    spec = parse_spec({
        "name": "transfer-aug", "seed": 5, "backend": "procedural",
        "classes": {"alert": 1, "severe_fatigue": 1},
        "conditions": {"lighting": {"daylight": 1}, "accessory": {"none": 1},
                       "camera": {"mount": {"steering_column": 1}, "fov_deg": 38}},
        "identities": {"count": 8, "images_per_identity": 2, "mixup_fraction": 0.0},
        "image": {"size": 128}, "splits": {"train": 0.75, "val": 0.125, "test": 0.125},
        "augment": {"enabled": True, "policy": "geometric", "views_per_image": 1},
        "verify": {"enabled": False}, "privacy": {"enabled": False},
    })
    pipeline.run_plain(spec, tmp_path)
    tasks = ("eye", "landmarks")
    every = read_synthetic(tmp_path, "train", tasks)
    renders = read_synthetic(tmp_path, "train", tasks, augmented=False)
    aug = [m["augmented"] for m in every.tasks["landmarks"].meta]
    assert sum(aug) > 0 and not all(aug)
    keep = [i for i, a in enumerate(aug) if not a]
    np.testing.assert_array_equal(renders.tasks["landmarks"].x, every.tasks["landmarks"].x[keep])
    np.testing.assert_array_equal(renders.tasks["landmarks"].y, every.tasks["landmarks"].y[keep])
    assert not any(m["augmented"] for m in renders.tasks["eye"].meta)
    assert len(renders.tasks["eye"]) == sum(not m["augmented"] for m in every.tasks["eye"].meta)
    for t in tasks:
        assert renders.excluded[t][AUGMENTED] == sum(aug) and AUGMENTED not in every.excluded[t]


def test_crop_pixels_and_coordinates_agree():
    img = np.zeros((100, 120, 3), np.uint8)
    cv2.circle(img, (70, 40), 3, (255, 255, 255), -1)
    box = C.exact_box(C.Box(60.0, 50.0, 40.0))
    out = C.crop(img, box, 64)
    v, u = np.unravel_index(np.argmax(out), out.shape)
    uv = box.to_crop(np.array([[70.0, 40.0]]), 64)[0] * 64
    assert abs(u - uv[0]) <= 2 and abs(v - uv[1]) <= 2
    assert np.allclose(box.from_crop(box.to_crop(np.array([[70.0, 40.0]]), 64)), [[70.0, 40.0]])
    # outside the image is black, not an error
    edge = C.crop(img, C.Box(0.0, 0.0, 50.0), 32)
    assert edge.shape == (32, 32) and edge[:8, :8].max() == 0


def test_a_non_square_eye_crop_is_squared_with_its_own_edges_not_black_bars():
    # a bright, wide eye crop (as a maker's tight box can be): made square around its centre, the added
    # rows repeat the top and bottom edges, so nothing in the model's input is darker than the image
    img = np.full((30, 60, 3), 200, np.uint8)
    img[:, 28:32] = 40  # a dark vertical stripe through the middle, continued into the added rows
    out = C.whole_image_crop(img, 48)
    assert out.shape == (48, 48)
    assert out.min() >= 35 and out[0, 0] >= 190 and out[-1, -1] >= 190  # no black anywhere
    assert out[0, 24] < 60 and out[-1, 24] < 60  # the edge rows are repeated, stripe included
    square = C.whole_image_crop(np.full((40, 40, 3), 120, np.uint8), 48)
    assert square.shape == (48, 48) and square.min() == square.max() == 120  # a square crop is only resized


def test_eye_crops_report_how_many_images_were_not_square(tmp_path, renders):
    from dmsfactory.transfer.real import prepare_class_set

    eye = cv2.cvtColor(cv2.resize(renders["open"][0].image, (40, 40)), cv2.COLOR_RGB2BGR)
    for cls, shapes in (("open", [(40, 40), (30, 40)]), ("closed", [(40, 28), (40, 40), (36, 40)])):
        (tmp_path / "eye_crops" / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            cv2.imwrite(str(tmp_path / "eye_crops" / cls / f"{i}.png"), eye[:h, :w])
    rt = prepare_class_set(read_real(tmp_path).classes["eye_crops"], None)
    assert len(rt) == 5 and rt.notes["not_square_edges_repeated"] == 3
    assert rt.x.min(axis=(1, 2)).min() > 0  # no black bar in any crop (the downsized render itself has no black pixel)


def test_flip_augmentation_moves_points_with_pixels():
    import torch

    from dmsfactory.transfer.models import augment, ibug_flip

    perm = ibug_flip().numpy()
    assert sorted(perm.tolist()) == list(range(68)) and np.array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[48] == 54 and perm[30] == 30  # eye and mouth corners swap, nose tip stays
    size = 64
    pts = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2))
    img = np.zeros((1, 1, size, size), np.float32)
    j = 40
    u, v = pts[j]
    img[0, 0, int(v * size), int(u * size)] = 1.0
    x = torch.from_numpy(img)
    y = torch.from_numpy(pts.reshape(1, -1).astype(np.float32))
    for s in range(8):
        xo, yo = augment(x, y, "points", "landmarks", torch.Generator().manual_seed(s))
        vv, uu = np.unravel_index(int(xo[0, 0].argmax()), (size, size))
        q = yo.view(68, 2).numpy()
        # the bright pixel sits where point j or its mirror partner now is
        d = min(np.hypot(q[k, 0] * size - (uu + 0.5), q[k, 1] * size - (vv + 0.5)) for k in (j, perm[j]))
        assert d < 2.0, (s, d)


def test_classifiers_see_wider_framings_than_the_regressors():
    """Pre-cropped eye sets are framed tighter than the 2-eye-width rule: the eye model's zoom spans
    EYE_ZOOM (1.3-2.2 eye widths); the yawn model's spans YAWN_ZOOM (the measured exact-vs-detected
    framing spread); the regressors (landmarks here) keep the small framing jitter."""
    import torch

    from dmsfactory.transfer.models import EYE_ZOOM, JITTER_SCALE, YAWN_ZOOM, augment

    size, n = 48, 256
    img = np.zeros((n, 1, size, size), np.float32)
    img[:, :, 12:36, 12:36] = 1.0  # a bright square half the crop wide, centred
    x = torch.from_numpy(img)

    def zooms(task, kind, y):
        xo, _ = augment(x, y, kind, task, torch.Generator().manual_seed(0))
        row = xo[:, 0, :, :].amax(dim=1)  # columns the square covers, per crop
        return 24.0 / (row > 0.5).sum(dim=1).numpy()  # the crop side relative to the rule's

    eye = zooms("eye", "binary", torch.zeros(n, 1))
    yawn = zooms("yawn", "binary", torch.zeros(n, 1))
    lm = zooms("landmarks", "points", torch.full((n, 136), 0.5))
    assert eye.min() >= EYE_ZOOM[0] - 0.06 and eye.max() <= EYE_ZOOM[1] + 0.06
    assert eye.min() < 0.72 and eye.max() > 1.0  # it reaches both ends: ~1.3 and ~2.2 eye widths
    assert yawn.min() >= YAWN_ZOOM[0] - 0.06 and yawn.max() <= YAWN_ZOOM[1] + 0.06
    assert yawn.min() < 0.88 and yawn.max() > 1.12  # beyond the regressors' 0.9-1.1
    assert lm.min() >= 1 - JITTER_SCALE - 0.06 and lm.max() <= 1 + JITTER_SCALE + 0.06


# --- layout -----------------------------------------------------------------------------------------------

def test_layout_reads_the_render_folder(real_dir):
    data = read_real(real_dir)
    assert data.tasks() == ["eye", "yawn", "landmarks", "head_pose", "gaze"]
    assert len(data.classes["eye_state"]) == 20 and sum(data.classes["eye_state"].labels) == 10
    assert data.classes["yawn"].identities is not None
    assert len(data.faces) == 20 and data.faces.identities is not None


def test_layout_errors_name_the_bad_file_or_folder(tmp_path, renders):
    img = renders["open"][0].image
    r = tmp_path / "real"
    _write_png(r / "yawn" / "yawn" / "a.png", img)
    _write_png(r / "yawn" / "no-yawn" / "b.png", img)  # wrong class folder name
    _write_png(r / "eye_state" / "open" / "c.png", img)  # closed/ missing
    (r / "eye_state" / "open" / "notes.txt").write_text("x")  # not an image
    (r / "videos").mkdir()  # unknown task folder
    _write_png(r / "faces" / "images" / "d.png", img)
    _write_png(r / "faces" / "images" / "e.png", img)
    (r / "faces" / "labels.csv").write_text("file,yaw,pitch,roll\nd.png,1,abc,3\nmissing.png,0,0,0\n")
    with pytest.raises(LayoutError) as ei:
        read_real(r)
    msg = ei.value.problems
    text = "\n".join(msg)
    assert any(str(r / "yawn" / "no-yawn") in m and "no_yawn" in m for m in msg), text
    assert any(str(r / "eye_state" / "closed") in m and "missing" in m for m in msg), text
    assert any(str(r / "eye_state" / "open" / "notes.txt") in m and "not an image" in m for m in msg), text
    assert any(str(r / "videos") in m and "unknown" in m for m in msg), text
    assert any("line 2" in m and "'pitch'" in m and "abc" in m for m in msg), text
    assert any("missing.png" in m and "not found" in m for m in msg), text
    assert any(str(r / "faces" / "images" / "e.png") in m and "not listed" in m for m in msg), text
    # the command prints one line per problem and exits 2
    from dmsfactory.cli import main

    assert main(["transfer", str(tmp_path / "no-such-shards"), "--real", str(r)]) == 2


def test_layout_pts_files_and_bad_pts(tmp_path, renders):
    img = renders["open"][0].image
    r = tmp_path / "real"
    _write_png(r / "faces" / "images" / "a.png", img)
    _write_png(r / "faces" / "images" / "b.png", img)
    pts = "\n".join(f"{10 + i} {20 + i}" for i in range(68))
    (r / "faces" / "images" / "a.pts").write_text(f"version: 1\nn_points: 68\n{{\n{pts}\n}}\n")
    (r / "faces" / "images" / "b.pts").write_text("version: 1\nn_points: 5\n{\n1 2\n}\n")
    (r / "faces" / "labels.csv").write_text("file\na.png\nb.png\n")
    with pytest.raises(LayoutError) as ei:
        read_real(r)
    assert any(str(r / "faces" / "images" / "b.pts") in m and "68" in m for m in ei.value.problems)
    (r / "faces" / "images" / "b.pts").unlink()
    data = read_real(r)
    assert data.faces.points[0][3] == (13.0, 23.0) and data.faces.points[1] is None


# --- metrics ---------------------------------------------------------------------------------------------

def test_auc_and_threshold_known_values():
    y = np.array([0, 0, 1, 1])
    assert M.roc_auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert M.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)  # ties count one half
    assert M.roc_auc(y, np.array([0.9, 0.8, 0.1, 0.2])) == pytest.approx(0.0)
    t, b = M.best_threshold(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert b == pytest.approx(0.75)
    fpr, tpr = M.roc_curve(y, np.array([0.1, 0.4, 0.35, 0.8]))
    assert fpr[0] == 0 and tpr[-1] == 1 and np.trapezoid(tpr, fpr) == pytest.approx(0.75)
    assert M.balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5


def test_best_threshold_is_the_first_best_candidate_by_its_definition():
    """The counted-by-search version against trying every candidate with balanced_accuracy (ties,
    NaN and infinite scores, one class only): the same threshold and the same value, bit for bit."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        y = rng.integers(0, 2 if trial % 5 else 1, n)
        s = np.round(rng.random(n), 1 if trial % 2 else 6)
        if trial % 7 == 0:
            s[rng.random(n) < 0.3] = np.nan
        if trial % 11 == 0:
            s[rng.random(n) < 0.3] = rng.choice([np.inf, -np.inf])
        u = np.unique(s)
        cands = np.r_[u[0] - 1.0, (u[:-1] + u[1:]) / 2.0, u[-1] + 1.0] if len(u) > 1 else np.r_[u[0] - 1.0, u[0]]
        vals = [M.balanced_accuracy(y, (s > t).astype(int)) for t in cands]
        j = int(np.argmax(vals))
        t, b = M.best_threshold(y, s)
        assert b == vals[j] and (t == cands[j] or (np.isnan(t) and np.isnan(cands[j]))), trial


def test_threshold_rows_fit_on_real_labels_and_the_cv_row_sees_only_the_other_folds():
    from dmsfactory.transfer.protocol import fold_splits, score_rows, threshold_rows
    from dmsfactory.transfer.real import RealTask

    y = np.r_[np.zeros(20), np.ones(20)][:, None]
    rt = RealTask("yawn", "yawn", np.zeros((40, 1), np.float32), y, None, [f"{i}.jpg" for i in range(40)], 40, 40)
    fold = np.arange(40) % 2
    splits = fold_splits(fold)
    assert [f for f, _, _ in splits] == [0, 1]
    # ranked right but every score below 0.5: the model's own threshold calls every row negative
    s = np.r_[np.linspace(0.0, 0.1, 20), np.linspace(0.3, 0.4, 20)]
    rows = threshold_rows("synthetic_only", "yawn", rt, s, splits, seed=0, n_boot=20)
    assert score_rows("yawn", rt, s, 0, 20)["accuracy"] == 0.5
    assert rows["synthetic_only_cv"]["accuracy"] == 1.0 and rows["synthetic_only_oracle"]["accuracy"] == 1.0
    assert 0.1 < rows["synthetic_only_oracle"]["threshold"] < 0.3 and rows["synthetic_only_cv"]["threshold"] is None
    # the order flips between the folds: the other fold's threshold misleads (fold 1 is judged by fold 0's,
    # all wrong; fold 0 by fold 1's, which can only call every row one class), the whole set's helps
    s = np.where(fold == 0, np.where(y[:, 0] == 1, 0.9, 0.1), np.where(y[:, 0] == 1, 0.2, 0.8))
    rows = threshold_rows("m", "yawn", rt, s, splits, seed=0, n_boot=20)
    assert rows["m_cv"]["balanced_accuracy"] == 0.25 and rows["m_oracle"]["balanced_accuracy"] == 0.75


def test_bootstrap_intervals_cover_the_point_estimate_and_shrink_with_n():
    rng = np.random.default_rng(3)
    widths = []
    for n in (60, 600):
        y = rng.integers(0, 2, n)
        s = y * 0.6 + rng.normal(0, 0.5, n)
        groups = [str(i // 3) for i in range(n)]
        for g in (None, groups):
            m = M.binary_metrics(y, s, 0.3, g, seed=1, n_boot=300)
            for k in ("accuracy", "balanced_accuracy", "auc"):
                lo, hi = m[f"{k}_ci"]
                assert lo <= m[k] <= hi, (n, k, m)
        widths.append(m["auc_ci"][1] - m["auc_ci"][0])
        true = rng.uniform(0, 100, (n, 68, 2))
        e = M.nme_metrics(M.nme_per_image(true + rng.normal(0, 2, true.shape), true), seed=2, n_boot=300)
        for g in ("all68", "inner51", "jaw17"):
            assert e[f"{g}_ci"][0] <= e[g] <= e[f"{g}_ci"][1]
    assert widths[1] < widths[0] * 0.6


def test_folds_keep_identities_together_and_balance_classes():
    from dmsfactory.transfer.protocol import make_folds

    ids = [f"p{i // 7}" for i in range(350)]
    y = np.array([[float((i // 7) % 2)] for i in range(350)])
    fold = make_folds(350, y, ids, 5, seed=4)
    for p in set(ids):
        assert len({fold[i] for i, q in enumerate(ids) if q == p}) == 1
    for f in range(5):
        share = y[fold == f, 0].mean()
        assert 0.35 <= share <= 0.65 and 50 <= (fold == f).sum() <= 90
    assert not np.array_equal(fold, make_folds(350, y, ids, 5, seed=5))  # the seed moves people between folds


# --- the report can fail: shuffled synthetic labels score at chance ------------------------------------------

def test_shuffled_synthetic_labels_score_at_chance(shards, real_dir):
    import torch

    from dmsfactory.transfer.models import balanced_weights, fit, make_model, predict
    from dmsfactory.transfer.real import Detector, prepare_class_set
    from dmsfactory.transfer.synth import read_synthetic

    torch.set_num_threads(1)
    syn = read_synthetic(shards, "train", ("eye",)).tasks["eye"]
    assert 0.2 < syn.y.mean() < 0.8, syn.y.mean()
    rt = prepare_class_set(read_real(real_dir).classes["eye_state"], Detector())
    assert len(rt) == 40
    res = {}
    labels = {"true": syn.y}
    for k in range(8):
        labels[f"shuffled{k}"] = syn.y[np.random.default_rng(k).permutation(len(syn.y))]
    for name, y in labels.items():
        m = make_model("eye", 1)
        fit(m, syn.x, y, "eye", epochs=8, lr=2e-3, seed=2, class_weight=balanced_weights(y[:, 0]))
        res[name] = M.binary_metrics(rt.y[:, 0], predict(m, rt.x, "eye"), groups=rt.ids, seed=0, n_boot=300)
    assert res["true"]["auc"] >= 0.8 and res["true"]["balanced_accuracy"] >= 0.7, res["true"]
    # one shuffled-label model's AUC still moves with whatever nuisance it happened to fit (40 rows of 10
    # people: shuffles 0-7 scored 0.46-0.77 with the warm-up, 0.30-0.66 without), so eight shuffles are
    # averaged; at its threshold each predicts no better than a coin, and none ranks as well as the true model
    shuffled = [res[f"shuffled{k}"] for k in range(8)]
    assert abs(np.mean([r["auc"] for r in shuffled]) - 0.5) < 0.08, shuffled
    assert all(0.35 <= r["balanced_accuracy"] <= 0.65 for r in shuffled), shuffled
    assert max(r["auc"] for r in shuffled) < res["true"]["auc"]


# --- training stability: the hidden layer must not die in the first steps -----------------------------------

def _mouth_toys(n: int, seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Drawn grey "faces" (not renders, not photos): a dark mouth ellipse, tall on the ~11 % positives."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    y = (rng.random(n) < 0.11).astype(np.float32)
    x = np.empty((n, size, size), np.uint8)
    for i in range(n):
        base = 90 + 60 * rng.random() + 40 * (xx - 0.5) * rng.standard_normal()
        h = (0.16 if y[i] else 0.04) * (0.8 + 0.4 * rng.random())
        mouth = ((xx - 0.5) / 0.14) ** 2 + ((yy - 0.72) / h) ** 2 < 1
        x[i] = np.clip(base + 12 * rng.standard_normal((size, size)) - 70 * mouth, 0, 255)
    return x, y[:, None]


def test_reference_training_keeps_the_hidden_units_alive_early():
    """The yawn model once trained to a constant output (every hidden ReLU dead, synthetic AUC 0.500 at
    training seed 3): Adam's first full-rate steps pushed the hidden units below zero on every input.
    The warm-up keeps them alive: the first 25 steps of a 1,700-step run (the real yawn run's length)
    leave most of the 128 hidden units active on some input (without the warm-up: 49-94 here, seeds
    0-7; with it and the LayerNorm 95-101, seeds 0-4), and the output still depends on the input.
    The LayerNorm before the hidden ReLU (added when a yawn model collapsed again on a 0.4.2 set,
    despite the warm-up) leaves every crop with units on both sides of zero: 40-45 of 128 active on
    each crop here, where a collapsed head has none."""
    import torch

    from dmsfactory.transfer import models as Mo

    torch.set_num_threads(1)
    x, y = _mouth_toys(64, 0)

    class Stop(Exception):
        pass

    def stop(step, total):
        if step >= 25:
            raise Stop

    for seed in range(3):
        m = Mo.make_model("yawn", seed)
        with pytest.raises(Stop):  # batch 64 = the whole set: progress runs after every step
            Mo.fit(m, x, y, "yawn", steps=1700, lr=Mo.TASKS["yawn"].lr, seed=seed + 1,
                   class_weight=Mo.balanced_weights(y[:, 0]), progress=stop)
        with torch.no_grad():
            pre = m.head[2](m.head[1](m.head[0](m.features(Mo.to_input(torch.from_numpy(x))))))
            out = m.head[4](torch.relu(pre)).view(-1)
        alive = int(((pre > 0).sum(0) > 0).sum())
        assert alive >= 90, (seed, alive)
        assert int((pre > 0).sum(1).min()) >= 32, seed  # on every crop
        assert float(out.std()) > 1e-3, (seed, float(out.std()))


# --- the whole command: files, card link, determinism --------------------------------------------------------

@pytest.mark.slow
def test_transfer_end_to_end_is_deterministic_and_linked_from_the_card(shards, real_dir, tmp_path):
    import torch

    from dmsfactory.transfer.run import run_transfer

    runs = []
    for k in range(2):
        rep = run_transfer(shards, real_dir, tmp_path / f"r{k}", seed=5, settings=TINY, n_boot=50, folds=2,
                           control=True, link_card=True)
        runs.append(rep)
    torch.set_num_threads(1)
    a, b = runs
    assert set(a["sets"]) == {"eye_state", "yawn", "landmarks", "head_pose", "gaze"}
    for name in a["sets"]:
        assert a["sets"][name]["methods"] == b["sets"][name]["methods"], name
    ey = a["sets"]["eye_state"]
    assert ey["rows"] == 40 and ey["detected"] == 20 and ey["detection_rate"] == 1.0
    m = ey["methods"]
    for k in ("synthetic_only", "control_shuffled_labels", "real_kfold", "finetune_k50", "finetune_k200",
              "finetune_all", "dp_eps1", "dp_eps4", "dp_eps8", "mediapipe_ear_cv", "mediapipe_ear_oracle", "chance"):
        assert k in m, k
    assert m["dp_eps1"]["privacy"]["epsilon_max"] <= 1.0 + 1e-6
    assert m["mediapipe_ear_oracle"]["auc"] > 0.9  # closed render eyes have a low EAR: the baseline sees them
    lm = a["sets"]["landmarks"]["methods"]
    assert {"dlib_68", "mediapipe_mesh", "synthetic_only", "real_kfold"} <= set(lm)
    assert lm["mediapipe_mesh"]["inner51"] < 0.2  # the fixture's points are the renderer's exact ones
    assert "mouth_share" in a["sets"]["yawn"]["analysis"]
    out = Path(a["out"])
    for f in ("report.md", "report.json", "predictions.csv", "plots/roc_eye_state.png", "plots/nme_landmarks.png",
              "plots/learning_curve_yawn.png", "plots/occlusion_yawn.png", "models/eye_synthetic.safetensors"):
        assert (out / f).is_file(), f
    js = json.loads((out / "report.json").read_text())
    assert js["settings"]["overrides"] == TINY
    assert js["settings"]["framing"] == "exact" and js["settings"]["augmented_views"] == "used"
    assert js["settings"]["training"]["warmup_fraction"] == 0.05  # reports tell the warm-up apart
    md = (out / "report.md").read_text()
    assert "Non-standard settings" in md and "synthetic only" in md
    # the CPU kernels that trained the models are part of the result (another path, other figures)
    assert js["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and js["machine"]["cores"] >= 1
    assert f"torch CPU kernels {js['machine']['torch_cpu_capability']}" in md
    card = (Path(shards) / "README.md").read_text()
    assert card.count("## Sim-to-real transfer") == 1
    assert card.count("r1/report.md)") == 1 and card.count("r0/report.md)") == 1  # one line per report folder
    from dmsfactory.transfer.link import card_lines, refresh_card

    refresh_card(shards, out / "report.md")  # refreshing the same report adds nothing
    assert (Path(shards) / "README.md").read_text() == card
    assert any("r1/report.md" in ln for ln in card_lines(shards))  # what the card writer re-emits
    # a different seed changes the numbers (the figures are not constants)
    c = run_transfer(shards, real_dir, tmp_path / "r2", seed=6, settings=TINY, n_boot=50, folds=2, tasks=("eye",),
                     link_card=False, quick=True, seeds=2)
    assert c["sets"]["eye_state"]["methods"]["synthetic_only"] != a["sets"]["eye_state"]["methods"]["synthetic_only"]
    # seeds=2: the first training seed is the table's model, the second is what --seed 7 would train
    spread = c["sets"]["eye_state"]["synthetic_only_seeds"]
    assert spread["seeds"] == [6, 7] and spread["auc"]["values"][0] == c["sets"]["eye_state"]["methods"]["synthetic_only"]["auc"]
    d = run_transfer(shards, real_dir, tmp_path / "r3", seed=7, settings=TINY, n_boot=50, folds=2, tasks=("eye",),
                     link_card=False, quick=True)
    assert spread["auc"]["values"][1] == d["sets"]["eye_state"]["methods"]["synthetic_only"]["auc"]
    assert spread["auc"]["min"] <= spread["auc"]["mean"] <= spread["auc"]["max"]
    cv = spread["accuracy_threshold_cv"]["values"]  # each seed's scores with thresholds from c's real training folds
    assert len(cv) == 2 and cv[0] == c["sets"]["eye_state"]["methods"]["synthetic_only_cv"]["accuracy"]
    assert all(0.0 <= v <= 1.0 for v in cv)
    assert "training seeds (6, 7" in (Path(c["out"]) / "report.md").read_text()
    assert "synthetic_only_seeds" not in a["sets"]["eye_state"]  # one seed: no spread reported
    # --quick: no learning curve and no DP-SGD rows; the rest is there
    quick = set(c["sets"]["eye_state"]["methods"])
    assert {"synthetic_only", "real_kfold", "finetune_all", "chance"} <= quick
    assert not any(k.startswith(("finetune_k", "real_only_k", "dp_eps")) for k in quick)
    assert any(k.startswith("dp_eps") for k in a["sets"]["eye_state"]["methods"])


@pytest.mark.slow
def test_jobs_give_the_numbers_of_one_process(shards, real_dir, tmp_path):
    """Training seeds, the control and the real folds (with fine-tunes and DP-SGD) on two worker processes
    give the report of one process; the workers' CPU time is counted."""
    from dmsfactory.transfer.run import run_transfer

    kw = dict(seed=3, settings=TINY, n_boot=50, folds=2, tasks=("eye", "landmarks"), control=True, seeds=2,
              link_card=False)
    one = run_transfer(shards, real_dir, tmp_path / "one", jobs=1, **kw)
    two = run_transfer(shards, real_dir, tmp_path / "two", jobs=2, **kw)
    assert one["settings"]["jobs"] == 1 and two["settings"]["jobs"] == 2
    for name in ("eye_state", "landmarks"):
        a, b = one["sets"][name], two["sets"][name]
        assert a["methods"] == b["methods"], name
        assert a["synthetic_only_seeds"] == b["synthetic_only_seeds"], name
        assert {"control_shuffled_labels", "real_kfold", "finetune_k50", "dp_eps1"} <= set(a["methods"]), name
    assert one["synthetic"]["eye"]["losses"] == two["synthetic"]["eye"]["losses"]
    for f in ("eye_state_eps1_fold0.json", "landmarks_eps8_fold1.json"):  # DP ledgers written by the workers
        assert (tmp_path / "two" / "ledgers" / f).read_text() == (tmp_path / "one" / "ledgers" / f).read_text(), f
    # the workers' CPU time is in the report's: two processes cannot report less than one did on its own
    assert two["timings"]["train_synthetic_eye_cpu"] >= 0.5 * one["timings"]["train_synthetic_eye_cpu"]


def test_a_dead_worker_is_a_clear_error_naming_the_usual_causes():
    from dmsfactory.transfer.jobs import Jobs, JobsError

    with Jobs(2) as jobs:
        assert jobs.map(pow, [dict(base=2, exp=3), dict(base=3, exp=2)]) == [8, 9]  # results in call order
        with pytest.raises(JobsError, match="ran out of memory.*--jobs 1.*__main__"):
            jobs.map(os._exit, [dict(status=1), dict(status=1)])
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        Jobs(0)


def test_undecodable_real_image_is_named(shards, tmp_path, renders):
    from dmsfactory.transfer.run import TransferInputError, run_transfer

    r = tmp_path / "real"
    for i, s in enumerate(renders["open"][:3]):
        _write_png(r / "eye_state" / "open" / f"{i}.png", s.image)
    for i, s in enumerate(renders["closed"][:3]):
        _write_png(r / "eye_state" / "closed" / f"{i}.png", s.image)
    (r / "eye_state" / "closed" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TransferInputError) as ei:
        run_transfer(shards, r, tmp_path / "o", settings=TINY, n_boot=10, folds=2, link_card=False)
    assert any("broken.jpg" in p for p in ei.value.problems)


def test_converter_keypoints_layout_and_refuses_the_repo(tmp_path, renders):
    import subprocess
    import sys

    from dmsfactory.labelers.params import ibug68_index_map

    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "P1_Facial_Keypoints"
    ib = list(ibug68_index_map())
    rows = [[""] + [str(i) for i in range(136)]]
    for i, s in enumerate(renders["open"][:4]):
        name = f"Some_Person_{i:02d}.jpg"
        _write_png(src / "data" / "training" / name, s.image)
        rows.append([name] + [f"{v:.1f}" for v in np.asarray(s.landmarks)[ib].reshape(-1)])
    (src / "data" / "training_frames_keypoints.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    out = tmp_path / "fmt"
    script = repo / "scripts" / "convert_real.py"
    r = subprocess.run([sys.executable, str(script), "keypoints", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = read_real(out)
    assert data.tasks() == ["landmarks"] and len(data.faces) == 4
    assert set(data.faces.identities) == {"Some_Person"}
    r = subprocess.run([sys.executable, str(script), "keypoints", str(src), str(repo / "out" / "x-real")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "inside the repository" in r.stderr


def test_converter_cew_zip_to_eye_crops_with_person_and_photo_identities(tmp_path, renders):
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parent.parent
    src = tmp_path / "DBSE-monitor"
    z = src / "Drowsiness" / "train" / "dataset" / "dataset_B_Eye_Images.zip"
    z.parent.mkdir(parents=True)
    patch = cv2.cvtColor(cv2.resize(renders["open"][0].image, (24, 24)), cv2.COLOR_RGB2GRAY)
    data = cv2.imencode(".jpg", patch)[1].tobytes()
    names = {"openLeftEyes": ["Ann_Lee_0001_L.jpg", "Ann_Lee_0002_L.jpg", "Bo_Ma_0001_L.jpg"],
             "openRightEyes": ["Ann_Lee_0001_R.jpg"],
             "closedLeftEyes": ["closed_eye_0007.jpg_face_1_L.jpg"],
             "closedRightEyes": ["closed_eye_0007.jpg_face_1_R.jpg", "closed_eye_0010.png_face_2_R.jpg"]}
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("dataset_B_Eye_Images/", b"")
        for folder, files in names.items():
            for f in files:
                zf.writestr(f"dataset_B_Eye_Images/{folder}/{f}", data)
    out = tmp_path / "fmt"
    script = repo / "scripts" / "convert_real.py"
    r = subprocess.run([sys.executable, str(script), "cew", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cs = read_real(out).classes["eye_crops"]
    assert sum(cs.labels) == 3 and len(cs) == 7  # 1 = closed
    ids = {f.name: i for f, i in zip(cs.files, cs.identities)}
    assert ids["Ann_Lee_0001_L.jpg"] == ids["Ann_Lee_0002_L.jpg"] == ids["Ann_Lee_0001_R.jpg"] == "Ann_Lee"
    assert ids["Bo_Ma_0001_L.jpg"] == "Bo_Ma"
    assert ids["closed_eye_0007.jpg_face_1_L.jpg"] == ids["closed_eye_0007.jpg_face_1_R.jpg"] == "closed_eye_0007"
    assert ids["closed_eye_0010.png_face_2_R.jpg"] == "closed_eye_0010"
    assert (out / "eye_crops" / "open" / "Bo_Ma_0001_L.jpg").read_bytes() == data  # bytes as in the zip
    bad = tmp_path / "bad"
    (bad / "Drowsiness" / "train" / "dataset").mkdir(parents=True)
    r = subprocess.run([sys.executable, str(script), "cew", str(bad), str(tmp_path / "fmt2")], capture_output=True, text=True)
    assert r.returncode != 0 and "dataset_B_Eye_Images.zip not found" in r.stderr
