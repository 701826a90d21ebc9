"""Tests of the procedural renderer (geometry labels by construction, validation, determinism)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dmsfactory.generators.procedural import (
    IBUG68_FROM_MEDIAPIPE,
    PlanEntryError,
    ProceduralGenerator,
    conditioning_map,
    depth_map,
    example_plan_entry,
    render,
)
from dmsfactory.generators.procedural import topology as T
from dmsfactory.generators.procedural.render import apply_expression, camera_euler, identity_model


def test_mesh_indices_mean_what_mediapipe_means():
    """The 468 landmarks on the face model's mean keep MediaPipe's meaning, by position."""
    from dmsfactory.augment.mirror import mirror_index
    from dmsfactory.generators.procedural import facemodel as FM

    m = FM.load()
    v = T.mean_landmarks()
    assert v.shape == (468, 3)
    assert v[263, 0] > 0.03 and v[33, 0] < -0.03  # outer eye corners: subject's left at +x
    assert 0.080 < np.linalg.norm(v[263] - v[33]) < 0.100  # adult exocanthion width
    assert np.allclose(0.5 * (v[33] + v[263]), 0.0, atol=1e-6)  # head-frame origin
    # eye corners are the corners of the model's eye holes (lateral/medial ends of the lid margins)
    for side, outer, inner in (("right", 33, 133), ("left", 263, 362)):
        U = m.mean[m.eyes[side]["upper"]]
        lat, med = (U[0], U[-1]) if abs(U[0, 0]) > abs(U[-1, 0]) else (U[-1], U[0])
        assert np.linalg.norm(v[outer] - lat) < 1e-6 and np.linalg.norm(v[inner] - med) < 1e-6
    assert v[1, 2] > np.percentile(v[:, 2], 99.5)  # nose tip (pronasale) most forward
    assert abs(v[1, 0]) < 5e-4 and abs(v[13, 0]) < 5e-4 and abs(v[14, 0]) < 5e-4  # midline
    # 13/14 are the upper/lower lip contact points at the midline; closed lips at rest
    assert v[13, 1] > v[14, 1] and np.linalg.norm(v[13] - v[14]) < 0.0015
    for idx, line in ((13, m.mouth["upper"]), (14, m.mouth["lower"])):
        d = np.linalg.norm(m.mean[line] - v[idx], axis=1)
        assert np.sort(d)[:2].sum() < np.linalg.norm(m.mean[line][:-1] - m.mean[line][1:], axis=1).max() + 1e-6  # on the lip line
    assert v[1, 1] > v[13, 1] > v[152, 1]  # upper lip below the nose, chin lowest of the three
    assert v[10, 1] > np.percentile(v[:, 1], 98)  # forehead top
    assert abs(v[133, 0]) < abs(v[33, 0]) and abs(v[362, 0]) < abs(v[263, 0])  # inner corners medial
    mi = mirror_index()[:468]
    np.testing.assert_allclose(v[mi] * [-1, 1, 1], v, atol=1e-3)  # the mean face is symmetric
    assert len(IBUG68_FROM_MEDIAPIPE) == 68 and v[IBUG68_FROM_MEDIAPIPE[36], 0] < 0 < v[IBUG68_FROM_MEDIAPIPE[45], 0]


def test_closing_an_eye_moves_only_that_eyes_lid():
    from dmsfactory.generators.procedural import facemodel as FM

    m = FM.load()
    e = example_plan_entry()
    im = identity_model(e["identity_seed"], e["identity_params"])
    st = dict(e["state"])
    a = m.landmarks(apply_expression(im.v0, st, im)[0])
    st["eye_openness_right"] = 0.0
    b = m.landmarks(apply_expression(im.v0, st, im)[0])
    moved = np.nonzero(np.linalg.norm(a - b, axis=1) > 3e-4)[0]
    assert 159 in moved and 145 in moved and 386 not in moved and 374 not in moved
    centre = a[list(T.R_EYE_UPPER + T.R_EYE_LOWER)].mean(0)
    assert np.all(np.linalg.norm(a[moved] - centre, axis=1) < 0.035)  # only the right eye's region
    assert not set(moved) & set(T.L_EYE_UPPER + T.L_EYE_LOWER + T.R_BROW + T.L_BROW + T.LIPS_OUTER + (1, 4))
    assert np.linalg.norm(b[159] - b[145]) < 1e-9  # closed: the margins meet


def test_pose_recovered_by_pnp_on_exact_landmarks():
    for yaw in (-40.0, 0.0, 25.0):
        e = example_plan_entry(head_pose_car={"yaw": yaw, "pitch": 5.0, "roll": -3.0})
        r = render(e)
        K = np.array(r.render_info["intrinsics"]["K"])
        ok, rv, tv = cv2.solvePnP(r.landmarks_head[:468].astype(np.float64), r.landmarks[:468].astype(np.float64), K, None,
                                  flags=cv2.SOLVEPNP_SQPNP)
        R, _ = cv2.Rodrigues(rv)
        got = camera_euler(R)
        lab = r.render_info["head_pose_camera"]
        assert abs(got[0] - lab["yaw"]) < 0.5 and abs(got[1] - lab["pitch"]) < 0.5 and abs(got[2] - lab["roll"]) < 0.5
        np.testing.assert_allclose(tv.ravel(), lab["translation_m"], atol=2e-3)
    # a level head seen from the steering-column camera (below the face) looks above the camera: pitch_cam > 0
    r0 = render(example_plan_entry())
    assert abs(r0.render_info["head_pose_camera"]["yaw"]) < 1e-6 and r0.render_info["head_pose_camera"]["pitch"] > 5


def test_visibility_self_occlusion_and_mask():
    # a short-haired identity (long hair may legitimately hang over the cheek at this yaw)
    r = render(example_plan_entry(identity_params={"sex": "male", "age": 34, "skin_tone": 3, "mixup": None}, head_pose_car={"yaw": 60.0}))
    assert r.render_info["identity"]["code"]["hair_length"] < 0.05
    # yaw > 0: face turns to the subject's left, so the subject's right cheek (234) faces the camera
    # and the left cheek side (454, left ear side) turns away
    assert r.visibility[234] and not r.visibility[454]
    assert r.visibility[:468].sum() < 400
    r2 = render(example_plan_entry(accessory="mask"))
    assert not r2.visibility[[13, 14, 0, 17]].any()  # lips under the mask
    assert r2.visibility[[33, 263, 159, 386]].all()  # eyes above it
    r3 = render(example_plan_entry(state={"eye_openness_left": 0.0}))
    assert not r3.visibility[473:478].any() and r3.visibility[468]  # closed lid hides that iris


def test_deterministic_and_distinct():
    e = example_plan_entry(lighting="night_ir", accessory="glasses")
    a, b = render(e), render(e)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.landmarks, b.landmarks)
    c = render(example_plan_entry(lighting="night_ir", accessory="glasses", sample_seed=7))
    assert not np.array_equal(a.image, c.image)


def test_each_identity_wears_its_own_glasses_frame():
    """Frames vary between identities (material, colour, size, shape, rim) and stay with the person:
    two samples of one identity wear the same frame, recorded in the render info; a thin metal rim
    covers fewer pixels than a wide acetate one."""
    from dmsfactory.generators.procedural.parts import GLASSES_RIM, glasses_style

    styles = [glasses_style(float(s)) for s in range(300)]
    assert glasses_style(5.0) == styles[5]
    assert {st["material"] for st in styles} == {"acetate", "metal"}
    assert len({tuple(st["colour"]) for st in styles}) >= 6
    for st in styles:
        lo, hi = GLASSES_RIM[st["material"]]
        assert lo <= st["rim"] <= hi and 0.023 <= st["half_width_m"] <= 0.028 and 2.0 <= st["shape_exponent"] <= 4.0

    def frame_pixels(seed, sample_seed=99, accessory="glasses"):
        r = render(example_plan_entry(accessory=accessory, identity_seed=seed, sample_seed=sample_seed))
        idx = [i for i, n in enumerate(r.part_names) if n == "glasses_frame"]
        return r, int(np.isin(r.part_ids, idx).sum())

    seen = {}
    for seed in range(40):
        st = identity_model(seed, {}).glasses_style
        if st["material"] not in seen:
            seen[st["material"]] = seed
        if len(seen) == 2:
            break
    (metal, n_metal), (acetate, n_acetate) = frame_pixels(seen["metal"]), frame_pixels(seen["acetate"])
    assert metal.render_info["glasses"]["material"] == "metal" and acetate.render_info["glasses"]["material"] == "acetate"
    assert 0 < n_metal < 0.6 * n_acetate, (n_metal, n_acetate)
    again, _ = frame_pixels(seen["metal"], sample_seed=3)
    assert again.render_info["glasses"] == metal.render_info["glasses"]
    assert render(example_plan_entry(identity_seed=seen["metal"])).render_info["glasses"] is None


def test_same_bytes_at_any_blas_thread_count(tiny_spec_dict):
    """The head model's matrix products run on one BLAS thread whatever OMP_NUM_THREADS says: a
    multi-threaded BLAS sums in another order and once gave other landmarks and pixels at 2 threads."""
    import json
    import os
    import subprocess
    import sys

    from dmsfactory.plan import make_plan
    from dmsfactory.spec import parse_spec

    entries = json.dumps(make_plan(parse_spec(tiny_spec_dict), limit=3))
    code = ("import hashlib, json, sys; from dmsfactory.generators.procedural import render; "
            "rs = [render(e) for e in json.load(sys.stdin)]; "
            "print(hashlib.sha256(b''.join(r.image.tobytes() + r.landmarks.tobytes() for r in rs)).hexdigest())")
    out = set()
    for threads in ("1", "3"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", code], input=entries, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        out.add(r.stdout.strip().splitlines()[-1])
    assert len(out) == 1, out


def test_mixup_endpoints_equal_pure_identities():
    pa = {"sex": "female", "age": 30, "skin_tone": 2}
    pb = {"sex": "male", "age": 60, "skin_tone": 5}
    mix = {"a": "id1", "b": "id2", "a_seed": 11, "b_seed": 22, "a_params": pa, "b_params": pb}
    for lam, seed, params in ((0.0, 11, pa), (1.0, 22, pb)):
        m = render(example_plan_entry(identity_seed=999, identity_params={**params, "mixup": {**mix, "lam": lam}}))
        p = render(example_plan_entry(identity_seed=seed, identity_params={**params, "mixup": None}))
        assert np.array_equal(m.image, p.image)
        assert m.render_info["identity"]["mixup"]["lam"] == lam
    half = render(example_plan_entry(identity_params={**pa, "mixup": {**mix, "lam": 0.5}}))
    assert not np.array_equal(half.image, render(example_plan_entry(identity_seed=11, identity_params=pa)).image)


@pytest.mark.parametrize(
    "over, field",
    [
        ({"state": {"eye_openness_left": 1.2}}, "state.eye_openness_left"),
        ({"state": {"mouth_open": -0.1}}, "state.mouth_open"),
        ({"head_pose_car": {"yaw": float("nan")}}, "head_pose_car.yaw"),
        ({"accessory": "top_hat"}, "accessory"),
        ({"lighting": "moonlight"}, "lighting"),
        ({"camera": {"mount": "roof"}}, "camera.mount"),
        ({"gaze_in_head": {"distance_m": 0.05}}, "gaze_in_head.distance_m"),
    ],
)
def test_validation_names_the_field(over, field, monkeypatch):
    import importlib

    R = importlib.import_module("dmsfactory.generators.procedural.render")

    called = []
    monkeypatch.setattr(R, "identity_model", lambda *a: called.append(1))
    with pytest.raises(ValueError) as ei:
        render(example_plan_entry(**over))
    assert isinstance(ei.value, PlanEntryError) and ei.value.field == field and field in str(ei.value)
    assert not called  # nothing rendered


def test_generator_contract_and_quarantine():
    g = ProceduralGenerator()
    g.setup()
    good = example_plan_entry(key="k1", index=3, split="val", identity="id000007")
    bad = example_plan_entry(key="k2", index=4, accessory="top_hat")
    s1, s2 = g.generate([good, bad])
    assert s1.key == "k1" and s1.split == "val" and s1.identity == "id000007" and not s1.quarantined
    assert s1.image.shape == (256, 256, 3) and s1.image.dtype == np.uint8
    assert s1.landmarks.shape == (478, 2) and s1.visibility.shape == (478,) and s1.arrays["landmarks_3d"].shape == (478, 3)
    info = s1.params["render"]
    for k in ("head_pose_camera", "intrinsics", "gaze_camera", "eye_aperture_mm", "mouth_opening_mm", "identity", "renderer_version"):
        assert k in info
    import json

    json.dumps(s1.to_json())
    assert s2.quarantined and "accessory" in s2.quarantine_reasons[0]
    # iris 468 is next to the subject's right eye (33/133)
    lm = s1.landmarks
    assert np.linalg.norm(lm[468] - (lm[33] + lm[133]) / 2) < np.linalg.norm(lm[468] - (lm[263] + lm[362]) / 2)
    cm = conditioning_map(render(good))
    assert cm.shape == (256, 256, 3) and cm.any()
    dm = depth_map(render(good))
    assert dm.dtype == np.uint8 and dm.max() > 0 and dm[0, 0] == 0


def test_mediapipe_detects_renders():
    import mediapipe as mp

    hits = 0
    errs = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as fm:
        for i, (light, yaw) in enumerate((("daylight", 0), ("tunnel", 15), ("night_ir", -10), ("night_cabin", 5))):
            r = render(example_plan_entry(identity_seed=500 + i, lighting=light, head_pose_car={"yaw": yaw}, camera={"fov_deg": 40}))
            out = fm.process(r.image)
            if out.multi_face_landmarks:
                hits += 1
                p = np.array([[l.x * 256, l.y * 256] for l in out.multi_face_landmarks[0].landmark])
                errs.append(np.linalg.norm(p[:468] - r.landmarks[:468], axis=1).mean() / np.linalg.norm(r.landmarks[33] - r.landmarks[263]))
    assert hits >= 3
    assert np.median(errs) < 0.15


def test_auto_exposure_meters_the_face_so_dark_skin_and_dim_light_keep_a_readable_face():
    """Face-priority auto-exposure (renderer 0.5.0): whatever the light and the skin tone, the gain brings
    the metered level to the drawn mid-grey target unless the gain range stops it, so a face is never a
    near-black or a blown-out patch; the scene around it pays (a backlit window burns out behind dark skin)."""
    from dmsfactory.generators.procedural.render import AE_RANGE

    faces, rec = [], []
    for tone in (1, 6):
        for light in ("daylight", "backlight", "tunnel", "night_cabin", "night_ir"):
            r = render(example_plan_entry(identity_seed=71, identity_params={"skin_tone": tone}, lighting=light, sample_seed=4))
            img = r.image.astype(float).mean(axis=2)
            faces.append(img[r.part_ids == r.part_names.index("face")].mean())
            a = r.render_info["exposure"]
            assert a["mode"] == "face_priority" and AE_RANGE[0] <= a["gain_ratio"] <= AE_RANGE[1]
            if not a["limited"]:
                assert abs(a["metered"] * a["gain_ratio"] - a["target"]) < 0.01 * a["target"]
            rec.append((tone, light, a["gain_ratio"], img[r.part_ids < 0].mean()))
    assert 85 < min(faces) and max(faces) < 175, faces
    # dark skin needs more gain than light skin in the same light, and then the backlit window burns out
    gains = {(t, li): g for t, li, g, _ in rec}
    assert all(gains[(6, li)] > gains[(1, li)] for li in ("daylight", "backlight", "tunnel", "night_cabin"))
    assert [bg for t, li, _, bg in rec if (t, li) == (6, "backlight")][0] > 200


def test_night_cabin_is_a_dark_colour_scene_lit_from_the_dashboard():
    r = render(example_plan_entry(identity_seed=61, lighting="night_cabin", sample_seed=3, head_pose_car={"yaw": 0.0}))
    assert r.render_info["lighting"]["mode"] == "night_cabin"
    img = r.image.astype(float)
    face = r.part_ids == r.part_names.index("face")
    bg = r.part_ids < 0
    assert img[bg].mean() < 45 < img[face].mean()  # a dark cabin, the face lifted by auto-exposure
    assert np.abs(img[face][:, 0] - img[face][:, 2]).mean() > 3  # a colour camera, not the grey NIR one
    # the screen glow comes from below: surfaces facing down (under the nose, the chin) are lit
    lm = r.landmarks
    under_nose = img[int(lm[2, 1]) + 1, int(lm[2, 0])].mean()
    assert under_nose > 0.5 * img[face].mean()


# ----------------------------------------------------------------------------- round 2
def test_compiled_rasteriser_matches_numpy_reference():
    """The numba rasteriser and the pure-numpy one give the same winners, depths and barycentrics."""
    import sys

    from dmsfactory.generators.procedural import raster as RA

    R = sys.modules["dmsfactory.generators.procedural.render"]
    calls = []
    orig = R.rasterize
    R.rasterize = lambda *a, **k: (calls.append(a), orig(*a, **k))[1]
    try:
        render(example_plan_entry(accessory="glasses", head_pose_car={"yaw": 35.0, "pitch": -8.0}))
    finally:
        R.rasterize = orig
    assert len(calls) == 3  # scene, eyeballs (clipped to the eye openings), lenses
    for a in calls:
        f1, f2 = RA.rasterize(*a), RA.rasterize_numpy(*a)
        assert len(f1.pix) > 100
        np.testing.assert_array_equal(f1.tri_image(), f2.tri_image())
        o1, o2 = np.argsort(f1.pix), np.argsort(f2.pix)
        np.testing.assert_allclose(f1.depth[o1], f2.depth[o2], rtol=1e-6)
        np.testing.assert_allclose(f1.b[o1], f2.b[o2], atol=1e-4)
        assert np.all(f1.b > -1e-4) and np.allclose(f1.b.sum(1), 1, atol=1e-4)


def test_rasteriser_z_buffer_and_coverage():
    from dmsfactory.generators.procedural.raster import rasterize, rasterize_numpy

    # two overlapping squares (2 triangles each); the nearer (z=1) must win where they overlap
    xy = np.array([[2, 2], [12, 2], [12, 12], [2, 12], [6, 6], [16, 6], [16, 16], [6, 16]], float)
    z = np.array([2.0] * 4 + [1.0] * 4)
    tris = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    for fn in (rasterize, rasterize_numpy):
        f = fn(xy, z, tris, 20, 20)
        ti = f.tri_image()
        assert (ti >= 0).sum() == 100 + 100 - 36  # pixel centres covered by the union
        assert ti[8, 8] in (2, 3) and ti[3, 3] in (0, 1) and ti[14, 14] in (2, 3)
        assert np.isinf(f.depth_image()[0, 0]) and abs(f.depth_image()[8, 8] - 1.0) < 1e-6


def test_closed_lids_cover_the_eyeball_and_landmarks_track_the_lid():
    base = dict(identity_seed=77, camera={"fov_deg": 30.0})
    apert = []
    for o in (0.0, 0.25, 0.5, 0.75, 1.0):
        r = render(example_plan_entry(**base, state={"eye_openness_left": o, "eye_openness_right": o}))
        eb = r.part_names.index("eyeball")
        if o == 0.0:
            assert not (r.part_ids == eb).any()  # no sclera/iris pixel through a closed lid
            assert not r.visibility[468:].any()
        apert.append(r.render_info["eye_aperture_mm"]["right"])
        d = np.linalg.norm(r.landmarks[159] - r.landmarks[145])  # image-space lid gap follows the label
        assert abs(d - np.linalg.norm(r.landmarks[386] - r.landmarks[374])) < 1.0
    assert apert[0] < 0.5 and all(b > a + 0.5 for a, b in zip(apert, apert[1:]))


def test_eyeballs_show_only_through_the_eye_openings():
    """A sphere behind the lids must never show through the cheek or a thin lower lid."""
    from dmsfactory.generators.procedural import parts as PP

    seen = 0
    for k, (o, mount, yaw) in enumerate([(1.0, "rearview_mirror", -30.0), (0.0, "rearview_mirror", -30.0), (0.3, "steering_column", 20.0),
                                         (1.0, "a_pillar", 10.0), (0.0, "steering_column", 0.0), (0.6, "center_stack", -15.0)]):
        r = render(example_plan_entry(identity_seed=500 + k, identity_params={"sex": "female", "age": 40, "skin_tone": 1 + k % 6},
                                      camera={"mount": mount, "fov_deg": 38.0, "image_size": 384},
                                      head_pose_car={"yaw": yaw}, state={"eye_openness_left": o, "eye_openness_right": o}))
        eb = r.part_ids == r.part_names.index("eyeball")
        opening = np.zeros(eb.shape, np.uint8)
        for contour in (PP.EYE_R_CONTOUR, PP.EYE_L_CONTOUR):
            cv2.fillPoly(opening, [np.round(r.landmarks[contour] * 16).astype(np.int32)], 1, shift=4)
        opening = cv2.dilate(opening, np.ones((3, 3), np.uint8))  # pixel-centre rounding at the contour
        assert not (eb & (opening == 0)).any()
        seen += int(eb.sum())
        if o == 0.0:
            assert not eb.any()
    assert seen > 200  # open eyes do show their eyeballs


def test_render_is_independent_of_cache_state_and_order():
    """Identity/background/noise caches must not make an image depend on what was rendered before."""
    from dmsfactory.generators.procedural import render as _r  # noqa: F401
    import sys

    R = sys.modules["dmsfactory.generators.procedural.render"]
    es = [example_plan_entry(identity_seed=5, sample_seed=s, lighting=l, head_pose_car={"yaw": y},
                             camera={"distance_m": d}) for s, l, y, d in
          ((1, "backlight", 10.0, 0.61), (17, "backlight", -20.0, 0.62), (2, "night_ir", 0.0, 0.7))]
    a = [render(e).image for e in es]
    R._CACHE.clear()
    R._BG_CACHE.clear()
    b = [render(e).image for e in reversed(es)][::-1]
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def test_numpy_fallback_renders_the_same_image(monkeypatch):
    from dmsfactory.generators.procedural import raster as RA

    e = example_plan_entry(accessory="sunglasses", lighting="night_ir", head_pose_car={"yaw": -15.0})
    a = render(e)
    monkeypatch.setattr(RA, "_nb", None)  # as if numba were not installed
    b = render(e)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.visibility, b.visibility)


def test_eyes_converge_on_a_near_fixation_point():
    import importlib
    import math

    R = importlib.import_module("dmsfactory.generators.procedural.render")
    e = example_plan_entry(gaze_in_head={"yaw": 8.0, "pitch": -5.0, "distance_m": 0.6})
    eyes = identity_model(e["identity_seed"], e["identity_params"]).eyes
    rot = R.eye_rotations(eyes, e["gaze_in_head"])
    g = np.array([math.cos(math.radians(-5)) * math.sin(math.radians(8)), math.sin(math.radians(-5)), math.cos(math.radians(-5)) * math.cos(math.radians(8))])
    target = (eyes["right"][0] + eyes["left"][0]) / 2 + 0.6 * g
    for side in ("right", "left"):  # each eye's optical axis passes through the fixation point
        to_t = target - eyes[side][0]
        assert np.linalg.norm(np.cross(rot[side] @ [0, 0, 1.0], to_t / np.linalg.norm(to_t))) < 1e-9
    near, far = render(e), render(example_plan_entry(gaze_in_head={"yaw": 8.0, "pitch": -5.0}))
    gn, gf = near.render_info["gaze_camera"], far.render_info["gaze_camera"]
    ipd = np.linalg.norm(eyes["right"][0] - eyes["left"][0])
    ang = math.degrees(math.acos(np.clip(np.dot(gn["left"], gn["right"]), -1, 1)))
    assert ang == pytest.approx(math.degrees(2 * math.atan(ipd / 2 / 0.6)), abs=0.3) and ang > 3
    assert np.allclose(gf["left"], gf["right"])  # far: parallel eyes, as before vergence existed
    # the irises move towards the nose (subject's right eye to image right when facing the camera)
    assert near.landmarks[468, 0] > far.landmarks[468, 0] + 0.1 and near.landmarks[473, 0] < far.landmarks[473, 0] - 0.1
    same = render(example_plan_entry(gaze_in_head={"yaw": 8.0, "pitch": -5.0, "distance_m": None}))
    assert np.array_equal(same.image, far.image)


def test_inter_pupillary_distance_is_anthropometric():
    """The eyeballs sit where the face model's lids put them: the IPD spread is the model's population's."""
    import importlib

    I = importlib.import_module("dmsfactory.generators.procedural.identity")
    P = importlib.import_module("dmsfactory.generators.procedural.parts")

    def ipd(code):
        v = I.identity_shape(code)
        return np.linalg.norm(P.eye_geometry(v, "right")[0] - P.eye_geometry(v, "left")[0]) * 1000

    codes = [I.identity_code(500 + s, {"sex": ("female", "male")[s % 2], "age": 40, "skin_tone": 3})[0] for s in range(200)]
    d = np.array([ipd(c) for c in codes])
    # adults: 63.4 mm, sd 3.8 mm, 95 % within ~56-71 mm (Dodgson 2004); measured here 61.7 / 4.0 mm
    p5, p95 = np.percentile(d, [5, 95])
    assert 59 < d.mean() < 66 and 2.8 < d.std() < 5.0 and 52 < p5 and p95 < 73 and d.min() > 45 and d.max() < 80
    assert d[1::2].mean() > d[0::2].mean() + 1  # men's eyes sit wider apart


def test_corneal_glint_widening_keeps_the_reflected_energy():
    """A glint too small for a raster pixel is widened with its peak lowered so the reflected energy
    (the lobe integrated over the hemisphere of half-vector angles) stays that of the sharp lobe."""
    from dmsfactory.generators.procedural.render import GLINT_SHINE, _lobe

    th = np.linspace(0, np.pi / 2, 200001)
    w = 2 * np.pi * np.sin(th) * (th[1] - th[0])
    sharp = float((_lobe(np.cos(th), GLINT_SHINE, np.full_like(th, 1e-6)) * w).sum())
    assert abs(sharp - 2 * np.pi / (GLINT_SHINE + 1)) < 1e-3 * sharp  # not widened: the plain lobe
    for mpp in (1.5e-3, 2e-3, 4e-3):  # mm per pixel at the eye: ~2 in the demo spec (256 px), 0.5 at 1024 px
        lobe = _lobe(np.cos(th), GLINT_SHINE, np.full_like(th, mpp))
        assert lobe.max() < 1.0  # widened, so dimmer
        assert abs(float((lobe * w).sum()) / sharp - 1) < 0.02


@pytest.mark.parametrize("lighting", ["night_ir", "daylight"])
def test_open_eyes_show_a_corneal_glint_on_a_dark_iris(lighting):
    """The cornea mirrors the light sources: a small overexposed catchlight on the iris, the rest of
    the iris darker than the sclera (no broad sheen over it); shut eyes show none."""
    for o in (1.0, 0.0):
        r = render(example_plan_entry(identity_seed=31, sample_seed=3, lighting=lighting, camera={"image_size": 768, "fov_deg": 38.0},
                                      identity_params={"skin_tone": 5}, state={"eye_openness_left": o, "eye_openness_right": o}))
        g = cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY).astype(np.float64)
        eb = r.part_ids == r.part_names.index("eyeball")
        yy, xx = np.mgrid[: g.shape[0], : g.shape[1]]
        for c, e in ((468, 469), (473, 474)):
            rad = np.linalg.norm(r.landmarks[e] - r.landmarks[c])
            d = np.hypot(xx - r.landmarks[c][0], yy - r.landmarks[c][1])
            iris = eb & (d < rad)
            if o == 0.0:
                assert not iris.any()
                continue
            assert iris.sum() > 50
            assert g[iris].max() >= 240  # the glint
            assert (g[iris] >= 240).mean() < 0.15  # small
            assert np.median(g[iris]) < np.median(g[eb & (d > 1.3 * rad)])  # iris below sclera


def test_upper_eyelids_carry_a_highlight_of_the_recorded_gloss_and_nothing_else_moves(monkeypatch):
    """Renderer 0.9.0: a closed eye's upper lid shows a highlight (glossy lid skin over the cornea's
    bulge) whose strength is the render's own draw, recorded as ``lid_gloss``; without it (gloss 0)
    the lid is matte. Elsewhere only the auto-exposure's small shift moves pixels."""
    import sys

    R = sys.modules["dmsfactory.generators.procedural.render"]  # the package re-exports the render() function
    e = example_plan_entry(identity_seed=31, sample_seed=2, lighting="daylight", camera={"image_size": 512, "fov_deg": 38.0},
                           state={"eye_openness_left": 0.0, "eye_openness_right": 0.0})
    glossy = render(e)
    assert glossy.render_info["lid_gloss"] == round(R.lid_gloss(e), 4) > 1.0  # this entry's draw
    monkeypatch.setattr(R, "LID_GLOSS_MAX", 0.0)
    matte = render(e)
    assert matte.render_info["lid_gloss"] == 0.0
    a, b = (cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY).astype(np.float64) for r in (glossy, matte))
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]]
    lids = np.zeros(a.shape, bool)
    below = np.zeros(a.shape, bool)
    for corner_a, corner_b, centre in ((33, 133, 468), (263, 362, 473)):  # each eye's corners and centre
        width = np.linalg.norm(glossy.landmarks[corner_a] - glossy.landmarks[corner_b])
        cx, cy = glossy.landmarks[centre]
        near = np.hypot(xx - cx, yy - cy) < R.LID_RADIUS * width * 1.5
        lids |= near & (yy < cy)
        below |= near & (yy > cy + 0.2 * width)
    face = glossy.part_ids == glossy.part_names.index("face")
    assert a[lids & face].max() - b[lids & face].max() >= 40  # the highlight
    diff = np.abs(a - b)
    assert np.unravel_index(diff.argmax(), diff.shape) in set(zip(*np.nonzero(lids)))  # the largest change is on a lid
    assert np.median(diff[~lids & ~below]) <= 2  # elsewhere: the exposure's shift only
    assert np.percentile(diff[below & face], 99) <= 6  # not on the lower lid or the cheek


def test_atlas_blends_inside_the_mask_support_equal_whole_image_blends_bit_for_bit():
    """The atlas painter blends each feature only inside the bounding box of its mask (texture._blend):
    the result must equal the whole-image ``img * (1 - a) + c * a`` exactly, for a colour and an image
    colour, a blurred mask (exact zeros beyond the kernel) and an empty one; and the head-shell radius,
    which now takes its maximum over the vertices inside some direction's cone only, must equal the
    maximum over all of them."""
    from dmsfactory.generators.procedural import parts as P
    from dmsfactory.generators.procedural import texture as TX

    rng = np.random.default_rng(3)
    img = (rng.random((128, 128, 3)) * 255).astype(np.float32)
    colour_img = (rng.random((128, 128, 3)) * 255).astype(np.float32)
    m = np.zeros((128, 128), np.float32)
    cv2.ellipse(m, (40, 70), (12, 5), 20, 0, 360, 1.0, -1)
    a = (cv2.GaussianBlur(m, (0, 0), 2.0) * 0.8)[..., None]
    assert 0 < np.count_nonzero(a) < a.size  # a mask with a support smaller than the image
    for col in (np.float32([90, 70, 80]), colour_img):
        got = img.copy()
        TX._blend(got, a, col)
        assert np.array_equal(got, img * (1 - a) + col * a)
    got = img.copy()
    TX._blend(got, a, colour_img, a, 0.55)
    assert np.array_equal(got, img * (1 - a) + colour_img * 0.55 * a)
    got = img.copy()
    TX._scale(got, a[..., 0])
    assert np.array_equal(got, img * (1 - a))
    got = img.copy()
    TX._blend(got, np.zeros_like(a), np.float32([1, 2, 3]))
    assert np.array_equal(got, img)

    model = identity_model(11, {"sex": "male", "age": 40, "skin_tone": 3})
    d = P._dir(*np.meshgrid(np.linspace(0, np.pi, 12), np.linspace(-np.pi, np.pi, 16, endpoint=False), indexing="ij"))
    m3 = P.FM.load()
    pts = model.v0[np.concatenate([m3.part_vertices["head"], m3.part_vertices["face"]])] - model.sp["c"]
    rp = np.linalg.norm(pts, axis=1)
    dots = d.reshape(-1, 3) @ (pts / rp[:, None]).T
    near = dots > np.cos(np.radians(7.0))
    ref = np.where(near.any(1), np.where(near, rp[None, :] * dots, 0.0).max(1), P._ell_radius(d.reshape(-1, 3), model.sp))
    assert np.array_equal(P.head_radius(model.v0, model.sp, d).reshape(-1), ref)


def test_atlas_blurs_inside_the_mask_support_equal_whole_image_blurs_bit_for_bit():
    """texture._blur blurs a mask only inside its support grown past the kernel's reach: it must equal
    ``cv2.GaussianBlur`` of the whole image exactly, for the atlas's sigmas, a mask in the middle, one
    touching two image edges, a one-pixel mask, an empty one and the 512 x 512 atlas size."""
    from dmsfactory.generators.procedural import texture as TX

    rng = np.random.default_rng(5)
    for size in (128, 512):
        for sigma in (0.8, 1.0, 1.3, 1.5, 1.6, 2, 3, 4, 7, 14):
            masks = []
            m = np.zeros((size, size), np.float32)
            cv2.ellipse(m, (size // 3, size // 2), (12, 5), 20, 0, 360, 1.0, -1, cv2.LINE_AA)
            masks.append(m * rng.random((size, size), dtype=np.float32))
            m = np.zeros((size, size), np.float32)
            cv2.rectangle(m, (size - 9, 0), (size - 1, 20), 0.7, -1)  # at the top and right edges
            masks.append(m)
            m = np.zeros((size, size), np.float32)
            m[size // 2, 5] = 1.0
            masks.append(m)
            masks.append(np.zeros((size, size), np.float32))
            for m in masks:
                got = TX._blur(m, sigma)
                assert got.dtype == np.float32 and np.array_equal(got, cv2.GaussianBlur(m, (0, 0), sigma)), (size, sigma)


def test_each_identity_has_its_own_teeth_tongue_and_cavity_and_keeps_its_other_draws():
    """id-v4: the mouth interior's colours are drawn per identity (darker, yellower teeth with age) on their
    own stream, so every earlier draw of the code is what id-v3 drew; the atlas paints the swatches the
    mouth parts sample with exactly those colours."""
    import importlib

    I = importlib.import_module("dmsfactory.generators.procedural.identity")
    P = importlib.import_module("dmsfactory.generators.procedural.parts")
    TX = importlib.import_module("dmsfactory.generators.procedural.texture")

    young = [I.sample_code(900 + s, {"sex": "female", "age": 20, "skin_tone": 3}) for s in range(120)]
    old = [I.sample_code(900 + s, {"sex": "female", "age": 75, "skin_tone": 3}) for s in range(120)]
    teeth = np.array([TX.mouth_colours(c)[0] for c in young])
    tongue = np.array([TX.mouth_colours(c)[1] for c in young])
    cavity = np.array([TX.mouth_colours(c)[2] for c in young])
    for col in (teeth, tongue, cavity):  # people differ: no constant colour a model could key on
        assert col.mean(1).std() > 6 and np.all((0 <= col) & (col <= 255))
    assert teeth.mean(1).mean() > np.array([TX.mouth_colours(c)[0] for c in old]).mean(1).mean() + 10
    # the draws before id-v4 are what id-v3 drew (values recorded from the id-v3 code)
    first = young[0]
    new = set(I.mouth_interior_code(900, 0.0)) | set(I.teeth_code(900, 0.0, "female"))
    assert len(first) == 136 + len(new)
    assert (first["ict00"], first["lid_rest"], first["tex_seed"], first["skin_r"]) == pytest.approx((
        0.6477851524282461, 0.9890428331627474, 254176184.0, 173.19745200372293), rel=1e-12)  # float noise across CPUs
    assert TX.mouth_colours({k: v for k, v in first.items() if k not in new}) == (TX.TEETH, TX.TONGUE, TX.CAVITY)
    rgb, _ = TX.build_atlas(first)
    for name, col in zip(("teeth", "tongue", "mouth"), TX.mouth_colours(first)):
        x, y = (int(v) for v in P.swatch_uv(name))
        assert np.abs(rgb[y, x].astype(float) - np.clip(col, 0, 255)).max() <= 1.0


def test_incisor_display_falls_with_age_is_larger_in_women_and_keeps_the_other_draws():
    """id-v5: how far the upper incisors show below the lip at rest, drawn per identity on its own stream
    (every id-v4 draw unchanged, see the test above): about 3.4 mm under 30 falling to about 0 after 60,
    ~1.5 mm more in women (Vig and Brundo 1978); clipped to -1..5 mm."""
    import importlib

    I = importlib.import_module("dmsfactory.generators.procedural.identity")

    def shows(sex, age):
        return np.array([I.sample_code(700 + s, {"sex": sex, "age": age, "skin_tone": 3})["incisor_show_mm"] for s in range(200)])

    young_f, young_m, old_f = shows("female", 24), shows("male", 24), shows("female", 70)
    assert 3.0 < young_f.mean() < 4.5 and young_f.std() > 0.6
    assert young_f.mean() - young_m.mean() == pytest.approx(1.5, abs=0.4)
    assert old_f.mean() < 0.5 and np.all((old_f >= -1.0) & (young_f <= 5.0))
    c = I.sample_code(700, {"sex": "female", "age": 24, "skin_tone": 3})
    assert c["incisor_show_mm"] == I.teeth_code(700, (24 - 16) / 64, "female")["incisor_show_mm"]


def test_the_upper_teeth_band_is_symmetric_notched_between_crowns_and_faces_out():
    import importlib

    P = importlib.import_module("dmsfactory.generators.procedural.parts")
    R = importlib.import_module("dmsfactory.generators.procedural.render")
    p = P.upper_teeth(-0.07, 0.02, 40.0)
    v = p.v
    assert np.allclose(np.sort(v[:, 0]), np.sort(-v[:, 0]))  # mirror-symmetric
    edge = v[v[:, 1] == v[:, 1].min()]
    assert (np.abs(edge[:, 0]) < 0.0083).all() and v[:, 1].min() == pytest.approx(-0.07)  # the central incisors lowest
    row0 = v[: len(np.unique(v[:, 0]))]
    y_at = {round(x * 1000, 1): y for x, y in zip(row0[:, 0], row0[:, 1])}
    assert y_at[8.3] > y_at[7.5] + 0.0004 and y_at[8.3] > y_at[9.0] + 0.0001  # a notch between crowns
    assert y_at[16.5] < y_at[15.0] and y_at[16.5] < y_at[18.0]  # the canine's cusp
    assert v[:, 2].max() == pytest.approx(0.02, abs=5e-5) and v[np.abs(v[:, 0]) > 0.02, 2].max() < 0.02 - 40 * 0.02**2 + 1e-9
    n = np.cross(v[p.t[:, 1]] - v[p.t[:, 0]], v[p.t[:, 2]] - v[p.t[:, 0]])
    front = np.abs(v[p.t].mean(1)[:, 0]) < 0.005
    ok = np.linalg.norm(n[front], axis=1) > 0
    assert (n[front][ok][:, 2] > 0).all()  # the labial face looks out of the mouth
    im = R.identity_model(11, {"sex": "female", "age": 30, "skin_tone": 3, "mixup": None})
    lm0 = P.FM.load().landmarks(im.v0)
    assert im.upper_teeth.v[:, 1].min() == pytest.approx(lm0[13, 1] - im.code["incisor_show_mm"] / 1000, abs=1e-9)


def test_the_renderers_channel_mean_is_numpys_bit_for_bit():
    """render._channel_mean replaces ``img.mean(axis=2)`` (auto-exposure, night-IR backgrounds) with an
    explicit (c0 + c1) + c2 over 3: it must stay NumPy's result exactly, or exposure and pixels move."""
    from dmsfactory.generators.procedural.render import _channel_mean

    rng = np.random.default_rng(8)
    for size in (64, 256, 512):
        for scale in (1e-3, 1.0, 300.0):
            img = rng.random((size, size, 3), dtype=np.float32) * np.float32(scale)
            assert np.array_equal(_channel_mean(img), img.mean(axis=2))
            assert np.array_equal(_channel_mean(img)[..., None], img.mean(2, keepdims=True))
    img64 = rng.random((32, 32, 3))  # float64 too
    assert np.array_equal(_channel_mean(img64), img64.mean(axis=2))
