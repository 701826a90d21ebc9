"""Anonymisation of "real" footage (docs/anonymize.md).

The "real" frames are our own renders of one identity (identity seed 4242): the stage only sees
pixels, so a render stands in for a photo; no real photo is used. MediaPipe and dlib run for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dmsfactory.anonymize.config import AnonymizeConfig
from dmsfactory.anonymize.keys import (KeyFileError, RecoveryMismatchError, TamperedRecordError, WrongKeyError,
                                       generate_key_file, load_key, open_record, restore, seal)
from dmsfactory.generators.procedural import example_plan_entry, render

FOV = 38.0


def real_frame(o: float = 1.0, yaw: float = 10.0, mouth: float = 0.0, size: int = 256, sample_seed: int = 5) -> np.ndarray:
    e = example_plan_entry(identity_seed=4242, sample_seed=sample_seed,
                           camera={"image_size": size, "fov_deg": FOV, "distance_m": 0.6},
                           state={"eye_openness_left": o, "eye_openness_right": o, "mouth_open": mouth},
                           head_pose_car={"yaw": yaw, "pitch": -5.0, "roll": 0.0})
    return render(e).image


def small_cfg(**kw) -> AnonymizeConfig:
    base = dict(fov_deg=FOV, identity_pool=4, identity_candidates=3, refine=1, max_faces=1)
    base.update(kw)
    return AnonymizeConfig(**base)


@pytest.fixture(scope="module")
def anonymizer():
    from dmsfactory.anonymize.core import Anonymizer

    an = Anonymizer(small_cfg(identity_pool=16, identity_candidates=6))
    an.setup()
    yield an
    an.close()


@pytest.fixture(scope="module")
def frames():
    return {"open": real_frame(1.0, 10.0), "closed": real_frame(0.0, -12.0)}


# ------------------------------------------------------------------ identity changes, labels kept
def _dlib_distance(anonymizer, check, img, out_img, model):
    """dlib distance original <-> anonymised, measured independently of the anonymiser's own bookkeeping
    (a fresh MediaPipe graph places both faces); None when no face is found on the anonymised frame."""
    src = check.measure(img, FOV, model)[0]
    out = check.measure(out_img, FOV, model)
    if not out:
        return None, src, None
    d = float(np.linalg.norm(anonymizer.describe(img, src.landmarks) - anonymizer.describe(out_img, out[0].landmarks)))
    return d, src, out[0]


@pytest.mark.slow
def test_no_anonymised_face_is_recognised_as_its_original(anonymizer, frames):
    """The privacy guarantee of replace mode (default ``recognisable: pixelate``): dlib never matches the
    output to the original; a synthetic face dlib still matched is pixelated, and the label says so."""
    from dmsfactory.anonymize.mesh import FaceMesh

    check = FaceMesh(False, 1)
    model = anonymizer.head.canonical_model()
    for name, img in frames.items():
        res = anonymizer.process(img, name)
        assert not res.no_face and len(res.faces) == 1
        f = res.faces[0]
        d, _, _ = _dlib_distance(anonymizer, check, img, res.image, model)
        assert d is None or d > 0.6, f"{name}: dlib distance {d:.3f} <= 0.6: same person"
        assert f.identity["identity_removed"] in (True, False)
        if f.identity["identity_removed"]:
            # recorded to 4 decimals: a distance just above 0.6 (removed) may read 0.6
            assert f.identity.get("method", "synthetic") != "fallback_pixelate" and f.identity["guidance_final_min_distance"] >= 0.6
        else:
            assert f.identity.get("method") == "fallback_pixelate" and "still recognisable" in f.recheck["fallback"]
        # pixels outside the changed region are untouched
        x0, y0, x1, y1 = f.roi
        mask = np.ones(img.shape[:2], bool)
        mask[y0:y1, x0:x1] = False
        assert (res.image[mask] == img[mask]).all()
        assert not (res.image[y0:y1, x0:x1] == img[y0:y1, x0:x1]).all()
    check.close()


@pytest.mark.slow
def test_synthetic_face_keeps_pose_and_eye_state(frames):
    """``recognisable: keep``: the synthetic face is always written, so its labels can be checked; the
    recorded dlib distance and ``identity_removed`` agree with an independent measurement."""
    from dmsfactory.anonymize.core import Anonymizer
    from dmsfactory.anonymize.mesh import FaceMesh

    an = Anonymizer(small_cfg(identity_pool=16, identity_candidates=6, recognisable="keep"))
    an.setup()
    check = FaceMesh(False, 1)
    model = an.head.canonical_model()
    for name, img in frames.items():
        res = an.process(img, name)
        f = res.faces[0]
        # the synthetic identity is recorded in the label
        assert f.identity["id"].startswith("anon") and f.identity["identity_seed"] != 4242
        assert f.identity.get("method") != "fallback_pixelate"
        d, src, out = _dlib_distance(an, check, img, res.image, model)
        assert out is not None, f"{name}: no face found on the anonymised frame"
        # the recorded distance is the minimum over the original and the faces to avoid: never above ours
        final = f.identity["guidance_final_min_distance"]
        assert final <= d + 1e-3
        # the verdict is on the exact distance, the label records it to 4 decimals (0.60003 reads 0.6)
        assert f.identity["identity_removed"] == (final > 0.6) or abs(final - 0.6) < 5e-5
        # labels: the same MediaPipe measurement on both frames
        err = max(abs(out.head_pose[k] - src.head_pose[k]) for k in ("yaw", "pitch", "roll"))
        assert err <= 5.0, f"{name}: head pose off by {err:.1f} deg"
        for side in ("left", "right"):
            assert (out.ear[side] < 0.18) == (src.ear[side] < 0.18), f"{name}: {side} eye state changed"
        assert f.recheck["eyes"]["left"]["agree"] and f.recheck["head_pose"]["agree"]
    check.close()
    an.close()


def test_head_is_driven_only_through_plan_entries():
    """A generator that sees only plan entries (and checks them against docs/CONTRACT.md) is enough."""
    from dmsfactory.anonymize.head import HeadModel, PoseMismatch, SyntheticIdentity
    from dmsfactory.augment.pose import matrix_from_euler
    from dmsfactory.generators.procedural import ProceduralGenerator, validate

    contract = {"key", "index", "split", "identity", "identity_seed", "sample_seed", "identity_params", "class", "kss",
                "lighting", "illuminance_lux", "accessory", "camera", "state", "head_pose_car", "gaze_in_head",
                "gaze_zone", "action", "phone"}

    class Recording:
        def __init__(self):
            self.inner = ProceduralGenerator()
            self.entries = []

        def generate(self, plan):
            for e in plan:
                assert set(e) <= contract, set(e) - contract
                validate(e)
            self.entries += plan
            return self.inner.generate(plan)

    gen = Recording()
    head = HeadModel(gen)
    ident = SyntheticIdentity.from_seed(77)
    want = matrix_from_euler(20.0, -8.0, 4.0)
    s, entry, clipped = head.render_at(ident, 128, want, {"eye_openness_left": 0.3}, {"yaw": 5.0, "pitch": 0.0}, "daylight", 3)
    assert not clipped and gen.entries
    hp = s.params["render"]["head_pose_camera"]
    assert abs(hp["yaw"] - 20.0) < 0.5 and abs(hp["pitch"] + 8.0) < 0.5 and abs(hp["roll"] - 4.0) < 0.5
    assert entry["state"]["eye_openness_left"] == 0.3 and entry["identity_seed"] == 77

    class Rotated(Recording):  # a generator whose camera convention differs from the documented one
        def generate(self, plan):
            out = super().generate(plan)
            for smp in out:
                R = np.asarray(smp.params["render"]["head_pose_camera"]["rotation_matrix"])
                smp.params["render"]["head_pose_camera"]["rotation_matrix"] = (matrix_from_euler(0, 0, 3.0) @ R).tolist()
            return out

    head2 = HeadModel(Rotated())
    head2._R_cw = {128: head.camera_rotation(128)}
    with pytest.raises(PoseMismatch):
        head2.render_at(ident, 128, want, {}, {"yaw": 0.0, "pitch": 0.0}, "daylight", 3)


# ------------------------------------------------------------------ keys and records
def test_keygen_refuses_to_overwrite_and_bad_keys_are_named(tmp_path):
    p = generate_key_file(tmp_path / "k.key")
    assert len(load_key(p)) == 32
    assert (p.stat().st_mode & 0o777) == 0o600
    with pytest.raises(KeyFileError, match="never overwritten"):
        generate_key_file(p)
    bad = tmp_path / "bad.key"
    bad.write_text("hello\n")
    with pytest.raises(KeyFileError, match="not a dmsfactory key file"):
        load_key(bad)
    with pytest.raises(KeyFileError, match="keygen"):
        load_key(tmp_path / "missing.key")


def test_record_roundtrip_wrong_key_and_tampering():
    rng = np.random.default_rng(0)
    orig = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    anon = orig.copy()
    anon[5:20, 10:30] = 0
    k1, k2 = bytes(range(32)), bytes(range(1, 33))
    blob = seal(k1, "f0", orig, anon, [(10, 5, 30, 20)])
    assert (restore(open_record(k1, blob), anon) == orig).all()
    with pytest.raises(WrongKeyError):
        open_record(k2, blob)
    for pos in (40, len(blob) - 5, len(blob) // 2):  # header, tag, ciphertext
        t = bytearray(blob)
        t[pos] ^= 1
        with pytest.raises(TamperedRecordError):
            open_record(k1, bytes(t))
    edited = anon.copy()
    edited[0, 0] ^= 1  # the anonymised frame changed after anonymisation
    with pytest.raises(RecoveryMismatchError):
        restore(open_record(k1, blob), edited)


# ------------------------------------------------------------------ end to end: images
@pytest.fixture(scope="module")
def image_run(tmp_path_factory, frames):
    from dmsfactory.anonymize.run import anonymize_path

    d = tmp_path_factory.mktemp("anon")
    inp = d / "in"
    inp.mkdir()
    for name, img in frames.items():
        cv2.imwrite(str(inp / f"{name}.png"), img[..., ::-1])
    blank = np.full((120, 160, 3), 90, np.uint8)
    blank[40:80, 60:100] = (200, 180, 40)
    cv2.imwrite(str(inp / "noface.png"), blank[..., ::-1])
    key = generate_key_file(d / "k.key")
    out = d / "out"
    rep = anonymize_path(inp, out, small_cfg(), key_path=key)
    return {"in": inp, "out": out, "key": key, "report": rep, "dir": d, "blank": blank}


@pytest.mark.slow
def test_images_to_shards_with_labels_and_report(image_run):
    from dmsfactory.datasets import open_shards

    rep, out = image_run["report"], image_run["out"]
    assert rep["frames"] == 3 and rep["frames_with_face"] == 2
    assert rep["no_face_frames"]["count"] == 1 and any("noface" in k for k in rep["no_face_frames"]["keys"])
    samples = {s["__key__"]: s for s in open_shards(out, split="anon")}
    assert len(samples) == 3
    nf = next(s for k, s in samples.items() if "noface" in k)
    assert nf["json"]["labels"]["no_face"] is True
    assert (nf["image"] == image_run["blank"]).all()  # passed through unchanged
    face = next(s for k, s in samples.items() if "closed" in k)["json"]
    assert face["labels"]["eyes"]["left"]["state"] == "close"  # the original's measured labels, either way
    ident = face["labels"]["identity"]
    pixelated = sum(f["synthetic_identity"].get("method") == "fallback_pixelate"
                    for s in samples.values() for f in s["json"]["params"]["anonymize"]["faces"])
    assert rep["faces_fallback_pixelated"] == pixelated
    assert rep["faces_still_recognisable"] == sum(s["json"]["labels"].get("identity", {}).get("identity_removed") is False
                                                  for s in samples.values())
    if ident["synthetic"]:  # a synthetic face was written: its landmarks and every re-check
        assert ident["identity_removed"] is True
        assert face["landmarks"]["format"] == "mediapipe_refined_478"
        assert {v["check"] for v in face["verdicts"]} >= {"face", "eyes", "mouth", "head_pose"}
    else:  # dlib still matched it: pixelated, no synthetic geometry written, the reason in the verdict
        assert ident["identity_removed"] is False and face.get("landmarks") is None
        assert any(v["check"] == "face" and "still recognisable" in v["reason"] for v in face["verdicts"])
    q = rep["image_quality"]
    # outside the changed regions the pixels are identical (PSNR); SSIM's 7x7 window straddles the region edges
    assert q["psnr_outside_face_db"]["identical_frames"] == 3 and q["ssim_outside_face_mean"] >= 0.98
    assert (out / "anonymize_report.md").is_file()
    # the shards are deterministic: the same input and settings give the same bytes
    from dmsfactory.anonymize.run import anonymize_path

    again = image_run["dir"] / "again"
    anonymize_path(image_run["in"], again, small_cfg())
    a = sorted(out.glob("anon-*.tar"))
    b = sorted(again.glob("anon-*.tar"))
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


@pytest.mark.slow
def test_recover_is_bit_exact(image_run):
    from dmsfactory.anonymize.recover import recover_path
    from dmsfactory.privacy.descriptors import load_image

    rec = image_run["dir"] / "recovered"
    r = recover_path(image_run["out"], image_run["key"], rec)
    assert r["frames"] == 3
    for f in image_run["in"].iterdir():
        assert (load_image(rec / f.name) == load_image(f)).all(), f.name


@pytest.mark.slow
def test_recover_wrong_key_and_tampered_record_restore_nothing(image_run, tmp_path):
    from dmsfactory.anonymize.recover import recover_path
    from dmsfactory.cli import main

    other = generate_key_file(tmp_path / "other.key")
    with pytest.raises(WrongKeyError):
        recover_path(image_run["out"], other, tmp_path / "r1")
    assert not (tmp_path / "r1").exists()
    assert main(["recover", str(image_run["out"]), "--key", str(other), "--out", str(tmp_path / "r1")]) == 2
    # tamper: flip one byte of the first record's ciphertext in a copy of the output
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(image_run["out"], copy)
    rec = next((copy / "recovery").glob("*.rec"))
    data = bytearray(rec.read_bytes())
    data[200] ^= 0x40
    rec.write_bytes(bytes(data))
    with pytest.raises(TamperedRecordError):
        recover_path(copy, image_run["key"], tmp_path / "r2")
    assert not (tmp_path / "r2").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".r")]
    assert not leftovers


# ------------------------------------------------------------------ video
def _write_video(path: Path, frames: list[np.ndarray], fps: float, fourcc: str) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        w.write(f[..., ::-1])
    w.release()


def _read_video(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f[..., ::-1])
    cap.release()
    return out, fps


@pytest.mark.slow
@pytest.mark.parametrize("lossless", [False, True])
def test_video_in_video_out_keeps_frame_count_and_timing(tmp_path, lossless):
    from dmsfactory.anonymize.recover import recover_path
    from dmsfactory.anonymize.run import anonymize_path

    frames = [real_frame(1.0 if i % 3 else 0.0, 4.0 * i - 8, size=192, sample_seed=5) for i in range(6)]
    frames.insert(3, np.full((192, 192, 3), 60, np.uint8))  # a frame without a face
    src = tmp_path / "in" / "drive.mp4"
    src.parent.mkdir()
    _write_video(src, frames, 12.5, "mp4v")
    decoded, fps_in = _read_video(src)
    key = generate_key_file(tmp_path / "k.key")
    out = tmp_path / "out"
    rep = anonymize_path(src.parent, out, small_cfg(identity_candidates=1), fmt="media", key_path=key, lossless=lossless)
    vid = out / ("drive.mkv" if lossless else "drive.mp4")
    got, fps_out = _read_video(vid)
    assert len(got) == len(decoded) == 7
    assert fps_out == pytest.approx(fps_in) and fps_in == pytest.approx(12.5)
    labels = [json.loads(x) for x in (out / "drive.mp4.labels.jsonl").read_text().splitlines()]
    assert [d["params"]["source"]["frame_index"] for d in labels] == list(range(7))
    times = [d["params"]["source"]["time_s"] for d in labels]
    assert times == pytest.approx([i / 12.5 for i in range(7)], abs=1e-3)
    assert rep["no_face_frames"]["count"] >= 1 and labels[3]["labels"]["no_face"]
    ids = {d["labels"]["identity"]["id"] for d in labels if not d["labels"]["no_face"]}
    assert len(ids) == 1  # one synthetic identity for the track
    rec = tmp_path / "rec"
    recover_path(out, key, rec)
    back, fps_rec = _read_video(rec / "drive.mkv")
    assert len(back) == len(decoded) and fps_rec == pytest.approx(fps_in)
    assert all((a == b).all() for a, b in zip(back, decoded))


def test_bad_inputs_are_named(tmp_path):
    from dmsfactory.cli import main

    assert main(["anonymize", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["anonymize", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert main(["anonymize", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--backend", "diffusion"]) == 2


def test_a_face_that_cannot_be_fitted_is_pixelated_not_passed_through(anonymizer, frames, monkeypatch):
    import dmsfactory.anonymize.mesh as mesh

    monkeypatch.setattr(mesh, "head_pose_mesh", lambda p, K, model: (None, None))
    img = frames["open"]
    res = anonymizer.process(img, "nopose")
    f = res.faces[0]
    assert f.identity["method"] == "fallback_pixelate" and "PnP" in f.recheck["fallback"]
    x0, y0, x1, y1 = f.roi
    assert not (res.image[y0:y1, x0:x1] == img[y0:y1, x0:x1]).all()
    assert len(f.landmarks) == 0  # the original's geometry is not written
