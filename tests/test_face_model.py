"""The data-driven head (ICT-FaceKit face model): data file, identity space, expressions, exact labels."""

from __future__ import annotations

import importlib

import cv2
import numpy as np
import pytest

from dmsfactory.generators.procedural import IBUG68_FROM_MEDIAPIPE, example_plan_entry, render
from dmsfactory.generators.procedural import facemodel as FM
from dmsfactory.generators.procedural import topology as T

I = importlib.import_module("dmsfactory.generators.procedural.identity")
R = importlib.import_module("dmsfactory.generators.procedural.render")
PP = importlib.import_module("dmsfactory.generators.procedural.parts")

FRONTAL = dict(camera={"fov_deg": 30.0, "image_size": 384, "distance_m": 0.6}, head_pose_car={"pitch": -18.0},
               gaze_in_head={"pitch": 18.0})  # the face squarely towards the steering-column camera


def test_face_model_file_loads_with_provenance_and_licence(tmp_path):
    m = FM.load()
    p = m.provenance
    assert p["source"]["repo"] == "github.com/ICT-VGL/ICT-FaceKit"
    assert p["source"]["commit"] == "da5f95a607f5e6b37755b38d3385d7f2853732e5" and p["source"]["licence"] == "MIT"
    assert "MIT License" in m.licence and "USC Institute for Creative Technologies" in m.licence and "WITHOUT WARRANTY" in m.licence
    files = p["source"]["files_sha256"]
    assert "generic_neutral_mesh.obj" in files and sum(f.startswith("identity") for f in files) == 100
    assert all(len(h) == 64 for h in files.values()) and len(p["steps"]) >= 8
    # the arrays are what the script wrote (its --verify compares the same hash after a rebuild)
    assert FM.file_content_hash() == p["content_sha256"]
    assert m.identity_modes.shape == (100, 3 * m.n_vertices) and FM.DATA.stat().st_size < 4_000_000
    assert {"eyeBlink_L", "eyeBlink_R", "jawOpen", "mouthFunnel", "eyeLookDown_L", "mouthSmile_R"} <= set(m.expressions)
    with pytest.raises(FileNotFoundError, match="make_face_model.py"):
        FM.load(str(tmp_path / "missing.npz"))
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="not a face model file"):
        FM.load(str(bad))


def test_identity_code_zero_gives_the_model_mean():
    m = FM.load()
    v = I.identity_shape({k: 0.0 for k in I.SHAPE_KEYS})
    np.testing.assert_allclose(v, m.mean, atol=1e-7)
    v1 = I.identity_shape({**{k: 0.0 for k in I.SHAPE_KEYS}, "ict00": 1.0})
    assert np.abs(v1 - v).max() > 1e-3  # a mode moves the face by millimetres


def test_mixup_interpolates_the_model_coefficients():
    pa = {"sex": "female", "age": 30, "skin_tone": 2}
    pb = {"sex": "male", "age": 60, "skin_tone": 5}
    mix = {"a": "id1", "b": "id2", "a_seed": 11, "b_seed": 22, "a_params": pa, "b_params": pb}
    ca, cb = I.identity_code(11, pa)[0], I.identity_code(22, pb)[0]
    for lam, c in ((0.0, ca), (1.0, cb)):
        cm = I.identity_code(999, {**pa, "mixup": {**mix, "lam": lam}})[0]
        assert cm == c
        assert np.array_equal(I.identity_shape(cm), I.identity_shape(c))
    cm = I.identity_code(999, {**pa, "mixup": {**mix, "lam": 0.3}})[0]
    np.testing.assert_allclose(I.shape_coefficients(cm), 0.7 * I.shape_coefficients(ca) + 0.3 * I.shape_coefficients(cb), atol=1e-12)
    # the model is linear: the mixed face is the mixed shape
    np.testing.assert_allclose(I.identity_shape(cm), 0.7 * I.identity_shape(ca) + 0.3 * I.identity_shape(cb), atol=1e-6)


# per-sex adult standard deviations, mm (issue 18's table) ...
ADULT_SD_MM = {"ex-ex": (3.5, 5.6), "en-en": (1.4, 4.9), "ch-ch": (3.3, 4.0), "n-gn": (3.6, 5.4)}
# ... and, where the issue gives none, the adult sd as a share of the mean that the round-4 closing note
# compared the procedural space against (nose width ~9 %, face width ~5 %)
ADULT_CV = {"al-al": 0.09, "zy-zy": 0.05}


@pytest.mark.slow
def test_identity_shape_variance_is_human_per_sex():
    """600 identities: each distance's sd within 1.3x the adult range, per sex (the procedural space was 2-3.5x)."""
    m = FM.load()
    for sex in ("female", "male"):
        vals = {k: [] for k in (*ADULT_SD_MM, *ADULT_CV)}
        for s in range(300):
            code = I.identity_code(70_000 + s, {"sex": sex, "age": int(18 + s % 60), "skin_tone": 1 + s % 6})[0]
            lm = m.landmarks(I.identity_shape(code))
            for k in vals:
                vals[k].append(I.measure(lm, k))
        for k, (lo, hi) in ADULT_SD_MM.items():
            sd = float(np.std(vals[k]))
            assert lo / 1.3 <= sd <= hi * 1.3, (sex, k, sd)
        for k, cv in ADULT_CV.items():
            rel = float(np.std(vals[k]) / np.mean(vals[k]))
            assert cv / 1.3 <= rel <= cv * 1.3, (sex, k, rel)
    # the sexes differ on average (men larger), as the sex direction was built to
    f = [I.measure(m.landmarks(I.identity_shape(I.identity_code(s, {"sex": "female", "age": 40, "skin_tone": 3})[0])), "zy-zy") for s in range(60)]
    mm = [I.measure(m.landmarks(I.identity_shape(I.identity_code(s, {"sex": "male", "age": 40, "skin_tone": 3})[0])), "zy-zy") for s in range(60)]
    assert np.mean(mm) > np.mean(f) + 4


def test_eye_blink_one_closes_the_eye_hides_the_iris_and_gives_aperture_zero():
    ap = []
    for o in (0.0, 0.2, 0.5, 0.8, 1.0):
        r = render(example_plan_entry(identity_seed=31, state={"eye_openness_left": o, "eye_openness_right": o}, **FRONTAL))
        info = r.render_info
        if o == 0.0:
            assert info["expression"]["eyeBlink_L"] == 1.0 and info["expression"]["eyeBlink_R"] == 1.0
            assert info["eye_aperture_mm"]["left"] < 1e-9 and info["eye_aperture_mm"]["right"] < 1e-9
            assert not r.visibility[468:].any() and not (r.part_ids == r.part_names.index("eyeball")).any()
        ap.append(info["eye_aperture_mm"]["right"])
    assert all(b > a + 0.5 for a, b in zip(ap, ap[1:]))  # the aperture measured on the lids follows openness
    assert 6.0 < ap[-1] < 12.0  # an open adult eye


def test_lids_follow_the_eyeball_when_looking_down():
    base = dict(identity_seed=32, camera={"fov_deg": 20.0, "image_size": 256})
    level = render(example_plan_entry(**base))
    down = render(example_plan_entry(**base, gaze_in_head={"pitch": -20.0}))
    assert down.render_info["expression"]["eyeLookDown_R"] > 0.7
    # same openness label, lower upper lid: the aperture (measured on the surface) drops
    assert down.render_info["eye_aperture_mm"]["right"] < level.render_info["eye_aperture_mm"]["right"] - 1.0


def test_jaw_open_raises_mouth_opening_monotonically_and_a_yawn_is_not_talking():
    m = FM.load()
    st0 = example_plan_entry()["state"]
    im = R.identity_model(1234, example_plan_entry()["identity_params"])
    for yawn in ("yawning_without_hand", "none"):
        mm, jaw = [], []
        for mo in np.linspace(0, 1, 6):
            st = {**st0, "mouth_open": float(mo), "yawn": yawn if mo > 0 else "none"}
            v, w = R.apply_expression(im.v0, st, im)
            lm = m.landmarks(v)
            mm.append(R.mouth_opening_mm(lm))
            jaw.append(w.get("jawOpen", 0.0))
        assert all(b > a + 1.0 for a, b in zip(mm, mm[1:])), (yawn, mm)
        assert all(b > a for a, b in zip(jaw, jaw[1:]))
        if yawn != "none":
            yawn_mm = mm
    assert yawn_mm[-1] > 25 and mm[-1] < yawn_mm[-1] - 8  # a yawn drops the jaw much further than talking
    assert mm[0] == 0.0  # lips together at rest


def test_lips_meet_at_rest_and_part_as_a_non_yawning_mouth_opens():
    """Renderer 0.8.0: the face model's neutral lips are parted 0.2-1.8 mm; a mouth at rest is sealed
    (pressed together, held closed over a slightly dropped jaw) and parts gradually up to
    ``LIP_SEAL_OPEN``, from where talking mouths are rendered as before."""
    m = FM.load()
    st0 = example_plan_entry()["state"]
    neutral_gaps = []
    for seed in (3, 11, 27, 40, 55, 1234):
        im = R.identity_model(seed, example_plan_entry(identity_seed=seed)["identity_params"])
        neutral_gaps.append(R.mouth_opening_mm(m.landmarks(im.v0)))
        gaps, weights = [], []
        for mo in (0.0, 0.03, 0.06, 0.12, 0.3):
            v, w = R.apply_expression(im.v0, {**st0, "mouth_open": mo, "yawn": "none", "smile": 0.0}, im)
            gaps.append(R.mouth_opening_mm(m.landmarks(v)))
            weights.append(w)
        assert gaps[0] < 0.5 and gaps[1] < 1.0, (seed, gaps)  # sealed at rest (a lip line, no gap)
        assert gaps[3] > 1.5 and gaps[4] > gaps[3] + 2.0, (seed, gaps)  # parted from LIP_SEAL_OPEN on
        assert all(b >= a - 0.3 for a, b in zip(gaps, gaps[1:])), (seed, gaps)
        assert weights[0]["mouthPress_L"] == weights[0]["mouthPress_R"] == R.LIP_SEAL
        for w in weights[3:]:  # at and above LIP_SEAL_OPEN: the talking recipe alone
            assert "mouthPress_L" not in w and "mouthClose" not in w
    assert max(neutral_gaps) > 1.0  # what the seal is for: the model's neutral lips part


def _lip_mask(r, contour) -> np.ndarray:
    """Pixels inside a lip contour (landmark indices) of render ``r``, at sub-pixel precision."""
    poly = np.zeros(r.part_ids.shape, np.uint8)
    cv2.fillPoly(poly, [np.round(r.landmarks[list(contour), :2] * 16).astype(np.int32)], 1, shift=4)
    return poly > 0


def test_a_yawn_shows_a_dark_mouth_with_teeth_and_tongue():
    ratios = []
    for ident in (11, 22, 33, 44, 55, 66, 77, 88):
        r = render(example_plan_entry(identity_seed=ident, state={"mouth_open": 0.9, "yawn": "yawning_without_hand"}, **FRONTAL))
        poly = _lip_mask(r, T.LIPS_INNER)
        inside = r.part_ids[poly]
        names = {r.part_names[i] for i in np.unique(inside) if i >= 0}
        assert {"teeth", "tongue"} <= names
        assert r.render_info["mouth_opening_mm"] > 25
        lum = r.image.astype(float).mean(2)
        face = r.part_ids == r.part_names.index("face")
        ratios.append(lum[poly].mean() / lum[face].mean())
    # darker than the face, not black: ambient occlusion dims only the ambient light (renderer 0.4.2; was
    # < 0.6 x the face with occlusion on every light: a black hole where a real yawn shows its tongue).
    # Since id-v4 teeth, tongue and cavity colours differ per identity (0.62-0.95 of the face here; 0.69-0.79
    # with the former constants): the typical identity is well below the face, none above it
    assert 0.3 < np.median(ratios) < 0.85 and max(ratios) < 1.0 and min(ratios) > 0.3, ratios


def _upper_teeth_rows(r) -> np.ndarray:
    """Per image column across the middle half of the mouth: rows of upper-teeth pixels (teeth above the
    middle of the lips' opening) inside the inner-lip contour of render ``r``."""
    poly = _lip_mask(r, T.LIPS_INNER)
    teeth = (r.part_ids == r.part_names.index("teeth")) & poly if "teeth" in r.part_names else np.zeros_like(poly)
    lm = r.landmarks
    mid_y = 0.5 * (lm[13, 1] + lm[14, 1])
    x0, x1 = lm[78, 0], lm[308, 0]  # inner mouth corners
    cols = np.arange(int(np.ceil(x0 + 0.25 * (x1 - x0))), int(x0 + 0.75 * (x1 - x0)) + 1)
    rows = np.arange(teeth.shape[0])[:, None] < mid_y
    return (teeth & rows)[:, cols].sum(0)


def test_an_open_mouth_shows_a_band_of_upper_incisors_under_the_upper_lip():
    """Renderer 0.10.0: the upper front teeth are one band whose edge lies ``incisor_show_mm`` below the
    upper lip (id-v5: more in the young and in women). The head model's own upper row ended 3 mm above
    the lip line at the central incisors and showed as separate spikes: across the middle of a parted
    mouth most columns showed no upper tooth. Now a young woman's parted lips show the band across the
    whole middle of the mouth, and more of it than an old man's."""
    young, old = [], []
    for ident in (11, 22, 33, 44):
        for params, out in (({"sex": "female", "age": 20}, young), ({"sex": "male", "age": 78}, old)):
            e = example_plan_entry(identity_seed=ident, state={"mouth_open": 0.35, "yawn": "none", "smile": 0.0}, **FRONTAL)
            e["identity_params"].update(params)
            r = render(e)
            code = r.render_info["identity"]["code"]
            rows = _upper_teeth_rows(r)
            out.append((code["incisor_show_mm"], float((rows > 0).mean()), float(rows.mean())))
    for show, covered, _ in young:
        assert show > 2.0 and covered >= 0.95, young  # a band: a tooth under the lip in (nearly) every column
    assert np.mean([h for *_, h in young]) > np.mean([h for *_, h in old]) + 1.0, (young, old)
    assert all(show < 0.5 for show, *_ in old), old


@pytest.mark.parametrize("lighting", ["daylight", "night_ir"])
def test_a_wide_yawn_shows_a_lit_mouth_interior_not_a_black_hole(lighting):
    """Ambient occlusion dims the ambient light only: a light reaches what it shines on (the renderer
    casts no shadows), so the tongue of a wide-open mouth is lit by the sun or by the IR illuminator
    at the camera. With the occlusion on every light the interior was 0.17-0.42 of the lips'
    brightness in daylight (a black hole, unlike a real yawn's tongue and teeth); now 0.48-0.83."""
    ratios = []
    for ident in (11, 22, 33, 44):
        r = render(example_plan_entry(identity_seed=ident, lighting=lighting, sample_seed=ident,
                                      state={"mouth_open": 1.0, "yawn": "yawning_without_hand"}))
        img = cv2.cvtColor(r.image, cv2.COLOR_RGB2GRAY).astype(float)
        inner, outer = _lip_mask(r, T.LIPS_INNER), _lip_mask(r, T.LIPS_OUTER)
        ratios.append(img[inner].mean() / img[outer & ~inner].mean())
    assert np.median(ratios) > 0.38, ratios


def test_a_hand_over_a_yawn_is_a_hand():
    r = render(example_plan_entry(identity_seed=34, state={"mouth_open": 0.9, "yawn": "yawning_with_hand"}, **FRONTAL))
    assert not r.visibility[[13, 14]].any()  # the hand covers the mouth
    hand = r.part_ids == r.part_names.index("hand")
    assert hand.sum() > 2000
    # palm, four three-phalanx fingers with tips, a two-segment thumb with its tip: 20 pieces; the thumb is on
    # the radial side (+x for a right hand, -x for a left one, palm facing +z)
    for side, sgn in (("right", 1), ("left", -1)):
        h = PP.hand_pieces(np.zeros(3), np.eye(3), side=side)
        assert len(h) == 20 and len(PP.hand(np.zeros(3), np.eye(3), side=side)) == 1
        thumb_tip = h[-1].v.mean(0)
        little_tip = h[16].v.mean(0)
        assert sgn * thumb_tip[0] > 0.03 and sgn * little_tip[0] < -0.015


def test_ibug68_points_are_on_the_surface_with_the_mediapipe_inner_points():
    r = render(example_plan_entry(identity_seed=35, **FRONTAL))
    ib = r.ibug68
    assert ib.shape == (68, 2) and r.ibug68_visibility.shape == (68,) and r.ibug68_3d.shape == (68, 3)
    np.testing.assert_allclose(ib[17:], r.landmarks[list(IBUG68_FROM_MEDIAPIPE[17:])], atol=1e-3)
    jaw = ib[:17]
    assert np.argmax(jaw[:, 1]) in (7, 8, 9)  # the chin is the lowest jaw point (image y down)
    assert jaw[0, 0] < ib[36, 0] and jaw[16, 0] > ib[45, 0]  # the outline is outside the eye corners
    assert jaw[8, 1] > r.landmarks[14, 1] + 10
    # visibility on the surface: turned to its left, the face hides its left jaw line (iBUG 9-16), not its right
    t = [render(example_plan_entry(identity_seed=35, head_pose_car={"yaw": y}, camera={"fov_deg": 30.0})) for y in (0.0, 55.0)]
    assert t[0].ibug68_visibility[:17].all()
    assert t[1].ibug68_visibility[3:9].all() and not t[1].ibug68_visibility[11:17].any()
