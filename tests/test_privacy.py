"""Privacy gate: presence, identity leakage against real galleries, memorisation, report, leakcheck.

Real photos (scikit-image astronaut + LFW subset, matplotlib grace_hopper) are the *gallery*; they are
never generator input. dlib / MediaPipe / Haar run for real: nothing here fakes a model's output.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.privacy.duplicates import hamming_pairs, pack_hashes, phash
from dmsfactory.privacy.leakage import ExactIndex
from dmsfactory.sample import FaceSample

torch.set_num_threads(1)
cv2.setNumThreads(1)


# ------------------------------------------------------------------ real photos (gallery only)
def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _grace() -> np.ndarray:
    import matplotlib.cbook as cb
    from PIL import Image

    return np.asarray(Image.open(cb.get_sample_data("grace_hopper.jpg")).convert("RGB"))


def _lfw(i: int) -> np.ndarray:
    from skimage import data

    return (data.lfw_subset()[i] * 255).round().astype(np.uint8)  # 25x25 grey face (0..99 are faces)


LFW_IN_GALLERY = (0, 3, 7, 12)


def _rot(img, deg):
    h, w = img.shape[:2]
    return cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), (w, h), borderMode=cv2.BORDER_REFLECT)


def _jpeg(img, q):
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def _bright(img, f):
    return np.clip(img.astype(np.float32) * f, 0, 255).astype(np.uint8)


def _crop(img):
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[h // 12 : h - h // 5, w // 10 : w - w // 8])


AUGMENTS = {
    "rot15": lambda im: _rot(im, 15),
    "rot-25": lambda im: _rot(im, -25),
    "bright1.4": lambda im: _bright(im, 1.4),
    "dark0.6": lambda im: _bright(im, 0.6),
    "jpeg25": lambda im: _jpeg(im, 25),
    "crop": _crop,
    "half": lambda im: cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
}


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    g = tmp_path_factory.mktemp("gallery")
    cv2.imwrite(str(g / "astronaut.png"), _astronaut()[..., ::-1])
    (g / "people").mkdir()
    cv2.imwrite(str(g / "people" / "grace_hopper.jpg"), _grace()[..., ::-1])
    for i in LFW_IN_GALLERY:
        cv2.imwrite(str(g / "people" / f"lfw_{i:03d}.png"), _lfw(i))
    (g / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    cv2.imwrite(str(g / "noise.png"), np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8))
    return g


@pytest.fixture(scope="module")
def cfg(gallery, tmp_path_factory) -> PrivacyConfig:
    return PrivacyConfig(galleries=[str(gallery)], cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def stage(cfg):
    from dmsfactory.privacy.stage import PrivacyStage

    st = PrivacyStage(cfg)
    st.setup()
    return st


def _sample(key, img, identity=None, index=0, **kw) -> FaceSample:
    return FaceSample(key=key, index=index, params={}, image=img, identity=identity, **kw)


# ------------------------------------------------------------------ config
def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(ValidationError, match=r"galleries\[0\].*does not exist"):
        PrivacyConfig(galleries=[str(tmp_path / "nope")])
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValidationError, match=r"galleries\[0\].*not a directory"):
        PrivacyConfig(galleries=[str(tmp_path / "f.txt")])
    with pytest.raises(ValidationError, match="extra"):
        PrivacyConfig(treshold=0.5)
    with pytest.raises(ValidationError, match="presence_detectors"):
        PrivacyConfig(presence_detectors=["yolo"])
    with pytest.raises(ValidationError, match="at least one detector"):
        PrivacyConfig(descriptor_detectors=[])
    with pytest.raises(ValidationError, match="threshold"):
        PrivacyConfig(threshold=0)
    # disabled gate: paths are not checked (spec validated on another machine)
    assert PrivacyConfig(enabled=False, galleries=[str(tmp_path / "nope")]).threshold == 0.6
    assert PrivacyConfig(duplicate_identity_threshold=0.3).identity_threshold == 0.3


def test_spec_section_round_trip():
    from dmsfactory.spec import DatasetSpec

    assert DatasetSpec.model_fields["privacy"].annotation is PrivacyConfig
    c = PrivacyConfig.model_validate({"threshold": 0.55, "presence_detectors": ["mediapipe"]})
    assert PrivacyConfig.model_validate(c.model_dump()) == c


# ------------------------------------------------------------------ search + hashes
@pytest.mark.parametrize("n,chunk", [(1, 16), (7, 3), (2000, 256), (5000, 16384)])
def test_exact_index_equals_brute_force(n, chunk):
    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 128)).astype(np.float32)
    Q = np.concatenate([X[:3] + 1e-3, rng.normal(size=(40, 128)).astype(np.float32)])
    D, I = ExactIndex(X, chunk).search(Q, 2)
    full = np.linalg.norm(Q[:, None].astype(np.float64) - X[None].astype(np.float64), axis=2)
    order = np.argsort(full, 1)[:, :2]
    k = min(2, n)
    assert (I[:, :k] == order[:, :k]).all()
    assert np.allclose(D[:, :k], np.take_along_axis(full, order, 1)[:, :k], atol=1e-6)
    if n == 1:
        assert np.isinf(D[:, 1]).all() and (I[:, 1] == -1).all()


def test_faiss_backend_matches_exact_index():
    pytest.importorskip("faiss")  # optional backend for > 10^6 gallery faces (pip install faiss-cpu)
    from dmsfactory.privacy.leakage import FaissIndex

    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 128)).astype(np.float32)
    Q = rng.normal(size=(64, 128)).astype(np.float32)
    D1, I1 = FaissIndex(X).search(Q, 2)
    D2, I2 = ExactIndex(X, 512).search(Q, 2)
    assert (I1 == I2).all() and np.allclose(D1, D2, atol=1e-4)


def test_phash_near_duplicates():
    a, g = _astronaut(), _grace()
    ha, hj, hg, hc = phash(a), phash(_jpeg(a, 40)), phash(g), phash(_crop(a))
    assert ha.shape == (64,) and ha.dtype == bool
    assert np.count_nonzero(ha != hj) <= 4  # re-encoded copy: near-duplicate
    assert np.count_nonzero(ha != hg) > 16  # different photo
    pairs = hamming_pairs(pack_hashes(np.stack([ha, hg, hj, hc])), 4)
    assert (0, 2) in [(i, j) for i, j, _ in pairs]
    assert all((i, j) != (0, 1) for i, j, _ in pairs)


def test_identity_collisions_count_every_close_pair_but_keep_only_the_closest(monkeypatch):
    """The count and the closest pairs equal a brute-force all-pairs computation, over several blocks;
    only ``max_pairs`` records are held (a 100,000-sample run had 10.75 million pairs within the threshold)."""
    from dmsfactory.privacy import duplicates as D

    rng = np.random.default_rng(3)
    desc = rng.normal(0, 0.05, (600, 128)).astype(np.float32) + rng.normal(0, 0.03, (1, 128)).astype(np.float32)
    idents = [f"id{i // 3:03d}" for i in range(600)]  # 200 identities x 3 images
    monkeypatch.setattr(D, "BLOCK", 2_000)  # 10 centroid rows per block: 20 blocks
    res = D.identity_collisions(desc, idents, threshold=0.5, max_pairs=7)
    names = sorted(set(idents))
    cents = np.stack([desc[[i for i, x in enumerate(idents) if x == n]].mean(0) for n in names]).astype(np.float64)
    full = np.sqrt(((cents[:, None] - cents[None]) ** 2).sum(-1))
    iu = np.triu_indices(len(names), 1)
    close = full[iu] < 0.5
    assert 0 < close.sum() < len(close)  # the threshold splits the pairs
    assert res["pairs_within"] == int(close.sum()) and res["identities"] == 200
    order = np.argsort(full[iu][close], kind="stable")[:7]
    want = [(names[iu[0][close][o]], names[iu[1][close][o]]) for o in order]
    assert [(p["a"], p["b"]) for p in res["pairs"]] == want
    assert np.allclose(res["nearest_other_identity"], np.where(np.eye(200, dtype=bool), np.inf, full).min(1), atol=1e-4)


# ------------------------------------------------------------------ galleries
def test_gallery_cache_problems_and_content_hash(cfg, gallery, stage):
    from dmsfactory.privacy.analyze import FaceAnalyzer
    from dmsfactory.privacy.leakage import load_gallery

    g = stage.galleries[0]
    probs = {p["file"]: p["problem"] for p in g.problems}
    assert "not a decodable image" in probs["broken.jpg"]
    assert probs["noise.png"] == "no face found"
    assert g.n_files == 8
    # all four 25x25 LFW thumbnails, astronaut and grace hopper have at least one face
    assert {r for r in g.face_refs} >= {"astronaut.png", "people/grace_hopper.jpg"} | {f"people/lfw_{i:03d}.png" for i in LFW_IN_GALLERY}
    an = FaceAnalyzer(cfg)
    again = load_gallery(gallery, an, cfg, cfg.resolved_cache_dir())
    assert again.reused == 8 and again.computed == 0
    assert again.content_hash == g.content_hash
    assert np.array_equal(again.descriptors, g.descriptors)
    # a changed file is recomputed and changes the content hash
    extra = gallery.parent / (gallery.name + "_copy")
    import shutil

    shutil.copytree(gallery, extra)
    cv2.imwrite(str(extra / "people" / "lfw_000.png"), _lfw(20))
    changed = load_gallery(extra, an, cfg, cfg.resolved_cache_dir())
    assert changed.content_hash != g.content_hash and changed.computed == 8  # different root: own cache
    changed2 = load_gallery(extra, an, cfg, cfg.resolved_cache_dir())
    assert changed2.reused == 8
    cv2.imwrite(str(extra / "people" / "lfw_000.png"), _lfw(21))
    changed3 = load_gallery(extra, an, cfg, cfg.resolved_cache_dir())
    assert changed3.computed == 1 and changed3.reused == 7 and changed3.content_hash != changed2.content_hash


# ------------------------------------------------------------------ leakage
def test_real_photos_and_augmented_copies_are_caught(stage, cfg):
    batch = []
    for src_name, img, ref in (("astro", _astronaut(), "astronaut.png"), ("grace", _grace(), "people/grace_hopper.jpg")):
        for aug_name, f in AUGMENTS.items():
            batch.append((_sample(f"{src_name}-{aug_name}", f(img), identity="id1", index=len(batch)), ref))
    for i in LFW_IN_GALLERY[:2]:
        up = cv2.resize(_lfw(i), (150, 150), interpolation=cv2.INTER_CUBIC)
        batch.append((_sample(f"lfw{i}-up-bright", np.stack([_bright(up, 1.2)] * 3, -1), index=len(batch)), f"people/lfw_{i:03d}.png"))
        batch.append((_sample(f"lfw{i}-up-rot10", np.stack([_rot(up, 10)] * 3, -1), index=len(batch)), f"people/lfw_{i:03d}.png"))
    originals = {s.key: s.image.copy() for s, _ in batch}
    out = stage.process([s for s, _ in batch])
    missed = []
    for s, (_, ref) in zip(out, batch):
        leak = [v for v in s.verdicts if v["check"] == "leakage"]
        assert len(leak) == 1
        v = leak[0]
        if v["verdict"] != "quarantine":
            missed.append((s.key, v["scores"].get("distance")))
            continue
        sc = v["scores"]
        assert sc["file"] == ref, (s.key, sc)
        thr = cfg.low_res_threshold if ref.startswith("people/lfw") else cfg.threshold  # 25-px LFW faces: low-res tier
        assert sc["low_res_gallery_face"] is ref.startswith("people/lfw") and sc["match_threshold"] == thr
        assert sc["distance"] < thr and sc["margin"] == pytest.approx(thr - sc["distance"], abs=1e-3)
        assert "identity leak" in v["reason"] and ref in v["reason"]
        # the real face never reaches the output: pixels redacted, biometric template dropped
        assert "face_descriptor" not in s.arrays
        assert not np.array_equal(s.image, originals[s.key])
        assert stage.analyzer.analyze(s.image, presence=False).faces == [] or all(
            np.linalg.norm(f.descriptor - stage.galleries[0].descriptors, axis=1).min() >= cfg.threshold
            for f in stage.analyzer.analyze(s.image, presence=False).faces
        )
    assert missed == [], missed


def test_presence_quarantines_faceless_only_when_a_face_is_expected(stage):
    blank = np.full((256, 256, 3), 90, np.uint8)
    lm = np.tile(np.array([[128.0, 128.0]], np.float32), (478, 1))
    expected = _sample("blank-expected", blank.copy(), landmarks=lm, visibility=np.ones(478, bool))
    hidden = _sample("blank-hidden", blank.copy(), index=1, landmarks=lm, visibility=np.zeros(478, bool))
    labelled = _sample("blank-label", blank.copy(), index=2, labels={"face_visible": False})
    out = stage.process([expected, hidden, labelled])
    assert out[0].quarantined and "no face detected" in out[0].quarantine_reasons[0]
    assert "visible landmark fraction 1.00" in out[0].quarantine_reasons[0]
    assert "haar" in out[0].verdicts[0]["scores"]["run"]  # the fallback decides a quarantine
    for s in out[1:]:
        assert not s.quarantined
        pres = [v for v in s.verdicts if v["check"] == "presence"][0]
        assert pres["verdict"] == "undetectable" and pres["scores"]["expected"] is False
        assert "haar" not in pres["scores"]["run"]  # no face expected: the Haar fallback would decide nothing
        assert [v for v in s.verdicts if v["check"] == "leakage"][0]["verdict"] == "undetectable"


def test_leakcheck_bad_input_exit_2(tmp_path, gallery, cfg):
    from dmsfactory.privacy.leakcheck import leakcheck

    base = cfg.model_dump()
    logs = []
    assert leakcheck(tmp_path / "missing", [gallery], tmp_path / "r.json", config=cfg, log=logs.append) == 2
    assert "does not exist" in logs[-1]
    (tmp_path / "empty").mkdir()
    assert leakcheck(tmp_path / "empty", [gallery], tmp_path / "r.json", config=cfg, log=logs.append) == 2
    assert "no .tar shards and no images" in logs[-1]
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), _grace()[..., ::-1])
    assert leakcheck(inp, [tmp_path / "nogal"], tmp_path / "r.json", config=cfg, log=logs.append) == 2
    assert "galleries[0]" in logs[-1] and "does not exist" in logs[-1]
    bad_gal = tmp_path / "badgal"
    bad_gal.mkdir()
    (bad_gal / "x.jpg").write_bytes(b"nope")
    assert leakcheck(inp, [bad_gal], tmp_path / "r.json", config=cfg, log=logs.append) == 2
    assert "no face descriptors" in logs[-1]
    assert leakcheck(inp, [], tmp_path / "r.json", config=cfg, log=logs.append) == 2
    assert base == cfg.model_dump()  # the caller's config is not mutated


# ------------------------------------------------------------------ synthetic renders (procedural generator)
def _plan(ident, seed, sample_seed, yaw, index, size=160, **kw):
    from dmsfactory.generators.procedural import example_plan_entry

    return example_plan_entry(
        key=f"{ident}-{sample_seed}", index=index, identity=ident, identity_seed=seed, sample_seed=sample_seed,
        head_pose_car={"yaw": yaw, "pitch": 0.0, "roll": 0.0}, camera={"image_size": size}, **kw,
    )


@pytest.fixture(scope="module")
def renders():
    from dmsfactory.generators.procedural import ProceduralConfig, ProceduralGenerator

    gen = ProceduralGenerator(ProceduralConfig())
    gen.setup()
    plan = []
    for k, (seed, sex, tone) in enumerate(((11, "female", 2), (22, "male", 5), (33, "female", 4), (44, "male", 1))):
        for j, yaw in enumerate((-12.0, 10.0)):
            plan.append(_plan(f"id{k:06d}", seed, 100 * k + j, yaw, len(plan), identity_params={"sex": sex, "skin_tone": tone}))
    # identity 0 again under another id: the same face (memorisation), another sample seed, yaw 3 degrees off
    plan.append(_plan("id000099", 11, 999, -9.0, len(plan), identity_params={"sex": "female", "skin_tone": 2}))
    return gen.generate(plan)


def test_renders_pass_and_duplicate_identity_is_flagged(stage, renders, cfg):
    out = stage.process([s.copy() for s in renders])
    for s in out:
        leak = [v for v in s.verdicts if v["check"] == "leakage"][0]
        assert leak["verdict"] == "keep", (s.key, leak)
        assert leak["scores"]["distance"] >= cfg.threshold or leak["scores"]["low_res_gallery_face"]
        assert s.arrays["face_descriptor"].shape == (128,) and s.arrays["phash"].shape == (64,)
    sec = stage.finalize(Path("."), [s.to_json() for s in out], image_lookup={s.key: s.image for s in out}.get)
    d = sec.data
    json.dumps(d)  # JSON-serialisable as is
    assert sec.json_name == "privacy_report.json"
    assert d["verdicts"]["clean"] == len(renders) and d["verdicts"]["leaked"] == 0
    pairs = d["memorisation"]["identity_pairs_same_face"]
    assert pairs, "the duplicated identity was not flagged"
    assert {pairs[0]["identity_a"], pairs[0]["identity_b"]} == {"id000000", "id000099"}, pairs
    assert pairs[0]["min_distance"] < cfg.identity_threshold
    # the report explains the finding: one face made twice, a check on synthetic identities, not a real person
    assert "not a real person's face" in sec.markdown and "| id000000 | id000099 |" in sec.markdown
    assert d["memorisation"]["explanation"] in sec.markdown
    c = d["identity_consistency"]
    assert c["identities_judged"] == 4 and 0.0 <= c["consistent_fraction"] <= 1.0
    assert c["intra"]["n"] == 4 and c["inter"]["n"] > 0
    # the card states the identity-separation figures next to the histogram
    assert 0.0 <= c["intra_below_threshold_fraction"] <= 1.0 and "same-identity pairs within the threshold" in sec.markdown
    assert {"privacy/gallery_distances.png", "privacy/identity_distances.png",
            "privacy/closest_gallery_matches.png", "privacy/closest_cross_identity_pairs.png"} <= set(sec.files)
    assert all(b.startswith(b"\x89PNG") for b in sec.files.values())
    assert "Data handling" in sec.markdown and "gallery_distances.png" in sec.markdown
    assert d["galleries"][0]["content_hash"] == stage.galleries[0].content_hash
    assert d["presence_rates"]["all"]["all"]["rate_any"] == 1.0
    # determinism: the same input gives the same descriptors and verdicts
    again = stage.process([s.copy() for s in renders[:2]])
    for a, b in zip(out[:2], again):
        assert np.array_equal(a.arrays["face_descriptor"], b.arrays["face_descriptor"]) and a.verdicts == b.verdicts


def _write_shard(path: Path, samples: list[FaceSample]) -> None:
    with tarfile.open(path, "w") as tf:
        for s in samples:
            for ext, blob in (("jpg", cv2.imencode(".jpg", s.image[..., ::-1])[1].tobytes()), ("json", json.dumps(s.to_json()).encode())):
                info = tarfile.TarInfo(f"{s.key}.{ext}")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))


def test_leakcheck_on_shards_and_image_dirs(tmp_path, gallery, cfg, renders):
    from dmsfactory.privacy.leakcheck import leakcheck

    clean = tmp_path / "clean"
    clean.mkdir()
    _write_shard(clean / "train-000000.tar", renders[:4])
    logs: list[str] = []
    rep = tmp_path / "r1" / "privacy_report.json"
    assert leakcheck(clean, [gallery], rep, config=cfg, log=logs.append) == 0, logs
    d = json.loads(rep.read_text())
    assert d["verdicts"]["clean"] == 4 and d["input"]["mode"] == "shards"
    assert rep.with_suffix(".md").is_file() and (rep.parent / "privacy" / "gallery_distances.png").is_file()

    dirty = tmp_path / "dirty"
    dirty.mkdir()
    leak = _sample("leak-grace", _jpeg(_rot(_grace(), 12), 60), index=9)
    _write_shard(dirty / "train-000000.tar", renders[:3] + [leak])
    rep2 = tmp_path / "r2" / "privacy_report.json"
    assert leakcheck(dirty, [gallery], rep2, config=cfg, log=logs.append) == 1
    d2 = json.loads(rep2.read_text())
    assert [x["key"] for x in d2["leaked"]] == ["leak-grace"] and d2["leaked"][0]["file"] == "people/grace_hopper.jpg"
    assert "leaked 1 (flagged, dataset unchanged)" in logs[-1]
    md2 = rep2.with_suffix(".md").read_text()  # leakcheck flags; only the gate quarantines
    assert d2["action"] == "flagged" and "Leaked (flagged by this check; it does not change the dataset" in md2
    assert "quarantined, pixels redacted" not in md2
    # gallery pixels are not copied into the report; thumbnails of the sample side only
    assert not any("grace" in p.name for p in (rep2.parent / "privacy").iterdir())

    imgs = tmp_path / "imgs"
    (imgs / "personA").mkdir(parents=True)
    for s in renders[:2]:
        cv2.imwrite(str(imgs / "personA" / f"{s.key}.png"), s.image[..., ::-1])
    cv2.imwrite(str(imgs / "astro_copy.jpg"), _bright(_crop(_astronaut()), 0.8)[..., ::-1])
    (imgs / "corrupt.png").write_bytes(b"garbage")
    rep3 = tmp_path / "r3.json"
    assert leakcheck(imgs, [gallery], rep3, config=cfg, log=logs.append) == 1
    d3 = json.loads(rep3.read_text())
    assert [x["file"] for x in d3["leaked"]] == ["astronaut.png"]
    assert d3["input"]["mode"] == "images" and d3["input"]["problems"][0]["file"] == "corrupt.png"
    assert d3["verdicts"]["clean"] == 2


def test_shard_gallery_and_argparse_front_end(tmp_path, cfg):
    from dmsfactory.privacy.leakcheck import leakcheck, leakcheck_main

    gal = tmp_path / "shard_gallery"
    gal.mkdir()
    _write_shard(gal / "real-000000.tar", [_sample("hopper", _grace()), _sample("noise", np.zeros((64, 64, 3), np.uint8), index=1)])
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "copy.jpg"), _bright(_grace(), 1.3)[..., ::-1])
    rep = tmp_path / "rep.json"
    c = cfg.model_copy(update={"galleries": []})
    assert leakcheck(inp, [gal], rep, config=c, log=lambda m: None) == 1
    d = json.loads(rep.read_text())
    assert d["leaked"][0]["file"] == "real-000000.tar:hopper.jpg"
    assert {p["file"] for p in d["galleries"][0]["problems"]} == {"real-000000.tar:noise.jpg"}
    assert leakcheck_main([str(inp)]) == 2  # --gallery is required
    assert leakcheck_main([str(tmp_path / "nope"), "--gallery", str(gal), "--report", str(rep)]) == 2


def test_reference_gallery_writer_is_idempotent(tmp_path):
    from dmsfactory.privacy.testgallery import write_reference_gallery

    g = write_reference_gallery(tmp_path / "g", lfw_faces=3)
    files = sorted(p.relative_to(g).as_posix() for p in g.rglob("*") if p.is_file())
    assert files == ["astronaut.png", "grace_hopper.jpg", "lfw/lfw_000.png", "lfw/lfw_001.png", "lfw/lfw_002.png"]
    before = {f: (g / f).stat().st_mtime_ns for f in files}
    write_reference_gallery(g, lfw_faces=3)
    assert {f: (g / f).stat().st_mtime_ns for f in files} == before  # unchanged files keep the cache valid


def test_mediapipe_boxes_give_the_hog_box_descriptor_on_renders():
    """Where HOG misses, a MediaPipe box starts dlib's 5-point aligner; placed from MediaPipe's eye
    keypoints it must land on the descriptor HOG's own box gives (a box mapped from MediaPipe's
    rectangle sat a median 0.30 away on renders: another person's distance in the tail)."""
    from dmsfactory.generators.procedural import example_plan_entry, render
    from dmsfactory.privacy.descriptors import FaceDescriber, mediapipe_box_to_hog
    from dmsfactory.privacy.presence import PresenceDetectors

    fd = FaceDescriber(("hog", "mediapipe"))
    fd.setup()
    pres = PresenceDetectors(("mediapipe",))
    rng = np.random.default_rng(12)
    d_eyes, d_rect = [], []
    for i in range(24):
        e = example_plan_entry(identity_seed=int(rng.integers(0, 2**31)), sample_seed=i,
                               lighting=str(rng.choice(["daylight", "tunnel", "backlight"])),
                               head_pose_car={"yaw": float(rng.uniform(-25, 25)), "pitch": float(rng.uniform(-10, 10))},
                               camera={"mount": "steering_column", "fov_deg": 38.0, "distance_m": float(rng.uniform(0.55, 0.7))})
        img = render(e).image
        hog, mp_ = fd.hog_boxes(img), pres.mediapipe(img)
        if not hog or not mp_:
            continue
        ref = fd.describe_box(img, hog[0].box)
        d_eyes.append(np.linalg.norm(fd.describe_box(img, mediapipe_box_to_hog(mp_[0].box, mp_[0].extra["keypoints"])) - ref))
        d_rect.append(np.linalg.norm(fd.describe_box(img, mediapipe_box_to_hog(mp_[0].box)) - ref))
    assert len(d_eyes) >= 8
    assert np.median(d_eyes) < 0.15 and np.percentile(d_eyes, 90) < 0.3
    assert np.median(d_eyes) < np.median(d_rect)


def test_identity_consistency_fractions_count_pairs_on_each_side_of_the_threshold():
    from dmsfactory.privacy.duplicates import identity_consistency

    # identity a: three points on a line 0.0, 0.5, 0.9 (pairs 0.5, 0.9, 0.4); identity b: one pair 0.7 apart
    d = np.zeros((5, 128), np.float32)
    d[1, 0], d[2, 0] = 0.5, 0.9
    d[3, 1], d[4, 1] = 10.0, 10.7
    c = identity_consistency(d, ["a", "a", "a", "b", "b"], threshold=0.6)
    assert c["intra_below_threshold_fraction"] == pytest.approx(2 / 4)  # 0.5 and 0.4 of 0.5, 0.9, 0.4, 0.7
    assert c["inter_below_threshold_fraction"] == 0.0  # a and b are ~10 apart
    assert c["consistent_fraction"] == 0.0


# ------------------------------------------------------------------ identity-level verdicts
def _identity_batch(size=160):
    """Three identities x four renders (pose and lighting vary) + one augmented copy of each render."""
    from dmsfactory.augment import AugmentConfig, AugmentStage
    from dmsfactory.generators.procedural import ProceduralGenerator, example_plan_entry
    from dmsfactory.labelers.params import LabelStage
    from dmsfactory.sample import run_stages

    entries = []
    for k, (seed, sex) in enumerate(((101, "female"), (202, "male"), (303, "female"))):
        for j, (yaw, light) in enumerate(((-5.0, "daylight"), (20.0, "daylight"), (-25.0, "tunnel"), (8.0, "backlight"))):
            i = len(entries)
            entries.append(example_plan_entry(
                key=f"id{k}-{i:03d}", index=i, identity=f"id{k:06d}", identity_seed=seed, sample_seed=1000 + i,
                lighting=light, identity_params={"sex": sex}, head_pose_car={"yaw": yaw}, camera={"image_size": size}))
    samples = ProceduralGenerator().generate(entries)
    samples = run_stages([LabelStage(), AugmentStage(AugmentConfig(enabled=True, policy="geometric", views_per_image=1), seed=3)], samples)
    return entries, samples


class _Views:
    """A ViewSource over an in-test plan: the gate's order, images from the batch."""

    def __init__(self, entries, samples):
        from dmsfactory.privacy.identity import view_order

        self.order = {}
        for e in entries:
            self.order.setdefault(e["identity"], []).append(e)
        self.order = {k: [e["key"] for e in view_order(v)] for k, v in self.order.items()}
        self.samples = {s.key: s for s in samples}
        self.rendered = []

    def candidates(self, identity):
        return self.order[identity]

    def render(self, key):
        self.rendered.append(key)
        return self.samples[key]


def test_identity_whose_one_view_matches_a_gallery_face_quarantines_all_its_images_and_copies(tmp_path):
    from dmsfactory.datasets.shards import encode_image
    from dmsfactory.privacy.stage import PrivacyStage

    entries, samples = _identity_batch()
    views = _Views(entries, samples)
    deciding = views.order["id000001"][1]  # the second view of identity 1 is a "real" gallery face
    gal = tmp_path / "gallery"
    gal.mkdir()
    cv2.imwrite(str(gal / "astronaut.png"), _astronaut()[..., ::-1])
    src = next(s for s in samples if s.key == deciding)
    (gal / "person.jpg").write_bytes(encode_image(src.image, "jpg", 95))  # the very bytes the shard holds
    cfg = PrivacyConfig(galleries=[str(gal)], cache_dir=str(tmp_path / "cache"), identity_views=3)
    st = PrivacyStage(cfg, encoding=("jpg", 95), views=views)
    assert st.mode == "identity"
    originals = {s.key: s.image.copy() for s in samples}
    out = st.process([s for s in samples])  # sources and augmented copies together
    assert not views.rendered  # every view was in the batch: nothing made again
    by_id: dict = {}
    for s in out:
        by_id.setdefault(s.identity, []).append(s)
        leak = [v for v in s.verdicts if v["check"] == "leakage"]
        assert len(leak) == 1 and leak[0]["scores"]["mode"] == "identity"
        sc = leak[0]["scores"]
        assert sc["identity"] == s.identity and [v["key"] for v in sc["views"]] == views.order[s.identity][:3]
        assert all(len(v["sha256"]) == 64 for v in sc["views"])
    leaked = by_id["id000001"]
    assert len(leaked) == 8 and {s.source_key for s in leaked if s.source_key} == {s.key for s in leaked if not s.source_key}
    for s in leaked:  # all its images and their augmented copies, quarantined and redacted
        v = [v for v in s.verdicts if v["check"] == "leakage"][0]
        assert v["verdict"] == "quarantine" and v["scores"]["deciding_view"] == deciding
        assert v["scores"]["file"] == "person.jpg" and v["scores"]["distance"] < 0.05
        assert "every image of the identity quarantined" in v["reason"]
        assert not np.array_equal(s.image, originals[s.key]) and "face_descriptor" not in s.arrays
    for ident in ("id000000", "id000002"):
        for s in by_id[ident]:
            v = [v for v in s.verdicts if v["check"] == "leakage"][0]
            # kept: its best match lies outside that gallery face's tier threshold (0.6 sharp, 0.4 low-res)
            assert v["verdict"] == "keep" and v["scores"]["distance"] >= v["scores"]["match_threshold"], v
            assert v["scores"]["match_threshold"] in (cfg.threshold, cfg.low_res_threshold), v
            assert np.array_equal(s.image, originals[s.key])
        views_kept = [s for s in by_id[ident] if "face_descriptor" in s.arrays]
        assert {s.key for s in views_kept} == set(views.order[ident][:3])  # descriptors on the views only
    # the verdict is a property of the identity: another batch holding one image of it, and none of its
    # views, reaches the same verdict from views made again
    st2 = PrivacyStage(cfg, encoding=("jpg", 95), views=_Views(entries, [s for s in _identity_batch()[1]]))
    lone = [s for s in _identity_batch()[1] if s.identity == "id000001" and s.key not in views.order["id000001"][:3]][:1]
    again = st2.process(lone)
    v = [v for v in again[0].verdicts if v["check"] == "leakage"][0]
    assert v["verdict"] == "quarantine" and v["scores"]["deciding_view"] == deciding
    assert len(st2.views.rendered) == 3


def test_an_identitys_descriptors_do_not_depend_on_the_identities_judged_with_it(tmp_path):
    """The descriptor network's output moves in the last float bits with its batch: an identity's views
    are described in a call of their own, so the same identity gets bit-identical descriptors whether a
    process judges it alone or together with others (with one worker or two, a batch meets different
    identities not yet judged)."""
    from dmsfactory.privacy.stage import PrivacyStage

    entries, samples = _identity_batch()
    gal = tmp_path / "gallery"
    gal.mkdir()
    cv2.imwrite(str(gal / "astronaut.png"), _astronaut()[..., ::-1])
    cfg = PrivacyConfig(galleries=[str(gal)], cache_dir=str(tmp_path / "cache"), identity_views=3)

    def descriptors(idents):
        st = PrivacyStage(cfg, encoding=("jpg", 95), views=_Views(entries, samples))
        verdicts = st.identity_verdicts(idents)
        return {i: [v.descriptor for v in verdicts[i].views] for i in idents}

    together = descriptors(["id000000", "id000001", "id000002"])
    for ident, descs in together.items():
        alone = descriptors([ident])[ident]
        assert len(alone) == len(descs) == 3
        assert all(np.array_equal(a, b) for a, b in zip(alone, descs)), ident


def test_identity_views_scan_with_hog_only_where_mediapipe_missed_the_labelled_face(tmp_path, monkeypatch):
    """``identity_view_hog: fallback`` (default): a view whose labelled face MediaPipe found is aligned
    from MediaPipe's eye box, with no HOG scan; ``always`` scans every view and keeps HOG's box where
    both found the face. A face MediaPipe missed is still found by the scan."""
    from dmsfactory.privacy.descriptors import FaceDescriber, mediapipe_box_to_hog
    from dmsfactory.privacy.presence import PresenceDetectors
    from dmsfactory.privacy.stage import PrivacyStage

    entries, samples = _identity_batch()
    gal = tmp_path / "gallery"
    gal.mkdir()
    cv2.imwrite(str(gal / "astronaut.png"), _astronaut()[..., ::-1])
    scans = []
    real_scan = FaceDescriber.hog_boxes
    monkeypatch.setattr(FaceDescriber, "hog_boxes", lambda self, img: scans.append(img.shape) or real_scan(self, img))

    def views(mode):
        cfg = PrivacyConfig(galleries=[str(gal)], cache_dir=str(tmp_path / "cache"), identity_views=3, identity_view_hog=mode)
        st = PrivacyStage(cfg, encoding=("jpg", 95), views=_Views(entries, samples))
        st.setup()
        scans.clear()
        v = st.identity_verdicts(["id000000", "id000001", "id000002"])
        return {i: v[i].views for i in v}, len(scans)

    fallback, fallback_scans = views("fallback")
    always, always_scans = views("always")
    assert always_scans >= 9 and fallback_scans < always_scans
    by_key = {s.key: s for s in samples}
    mp, fd = PresenceDetectors(("mediapipe",)), FaceDescriber(("mediapipe", "hog"))
    judge = PrivacyStage(PrivacyConfig(), encoding=("jpg", 95))  # the pixels the gate judged
    hog_boxed = 0
    for ident in fallback:
        assert [v.key for v in fallback[ident]] == [v.key for v in always[ident]]
        for vf, va in zip(fallback[ident], always[ident]):
            img, _ = judge.judged(by_key[vf.key])
            found = mp.mediapipe(img)
            if not found:
                continue
            eye_box = mediapipe_box_to_hog(found[0].box, found[0].extra["keypoints"])
            assert np.allclose(vf.descriptor, fd.describe_box(img, eye_box), atol=1e-5)  # MediaPipe's box, no scan
            hog = [f for f in fd.hog_boxes(img) if f.score >= 0]
            if hog:
                hog_boxed += 1
                assert np.allclose(va.descriptor, fd.describe_box(img, hog[0].box), atol=1e-5)  # HOG's box
    assert hog_boxed >= 1
    # MediaPipe missed it (no detections handed in): the scan finds the labelled face
    s = samples[0]
    faces = fd.describe(s.image, [], roi=tuple(float(v) for v in s.written_bbox), hog="fallback")
    assert len(faces) == 1 and faces[0].source == "hog"
    with pytest.raises(ValueError, match="identity_view_hog"):  # a typo at a direct call is not a silent scan
        fd.describe(s.image, [], roi=tuple(float(v) for v in s.written_bbox), hog="fallbak")


def test_view_order_covers_pose_and_lighting_and_puts_occluded_views_last():
    from dmsfactory.privacy.identity import view_order

    def e(i, yaw, light="daylight", acc="none", mount="steering_column"):
        return {"key": f"k{i}", "index": i, "lighting": light, "accessory": acc, "camera": {"mount": mount},
                "head_pose_car": {"yaw": yaw, "pitch": 0.0}}

    es = [e(0, 30.0), e(1, 2.0, "night_ir"), e(2, -3.0), e(3, -31.0), e(4, 29.0), e(5, 0.0, acc="sunglasses"), e(6, 1.0, "night_ir")]
    order = [x["key"] for x in view_order(es)]
    assert order[0] == "k2"  # the most frontal daylight view without an occluding accessory
    assert set(order[1:3]) <= {"k0", "k3", "k1", "k4", "k6"} and len({es[int(k[1:])]["lighting"] for k in order[:3]}) == 2
    assert order[-1] == "k5"  # sunglasses: last resort
    assert view_order(list(reversed(es))) == view_order(es)  # deterministic, whatever the input order


def test_pairs_figure_keeps_its_title_text_and_right_column():
    """closest_gallery_matches.png: a placeholder column when gallery pixels stay out, text in its own column."""
    import cv2

    from dmsfactory.privacy.report import _pairs_png

    img = np.full((64, 64, 3), 90, np.uint8)
    rows = [(img, None, "c3216db5ad-0000301_a0\nLEAK d=0.597\nlfw/lfw_089.png")] * 3
    png = _pairs_png(rows, "closest real-gallery faces to the samples (dlib distance d; same person below the threshold)",
                     heads=("synthetic sample", "real gallery image"), missing="not embedded")
    fig = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = fig.shape[:2]
    assert h >= 3 * 96
    ink = (fig < 128).any(axis=2)
    assert ink[:20].any() and np.nonzero(ink.any(axis=0))[0].max() < w - 4  # title drawn; no text cut at the right edge
    mid = fig[h // 3 : 2 * h // 3, int(w * 0.25) : int(w * 0.45)]
    assert (np.abs(mid.astype(int) - 225) <= 2).all(axis=2).mean() > 0.3  # the grey placeholder column is drawn
    right = fig[:, int(w * 0.55) :]
    assert (right < 128).any(axis=2).mean() > 0.002  # the text column carries the key, distance and file


def test_a_labelled_face_box_limits_description_and_haar_to_that_face(renders):
    """Identity views describe only the labelled face (a second face in the image is not the identity),
    and the Haar presence fallback asks whether the labelled face is detectable, not whether any face is."""
    from dmsfactory.privacy.descriptors import FaceDescriber
    from dmsfactory.privacy.presence import PresenceDetectors

    a, b = renders[0], renders[2]  # two identities
    w = a.image.shape[1]
    both = np.ascontiguousarray(np.concatenate([a.image, b.image], axis=1))
    box_a = tuple(float(v) for v in a.bbox)
    box_b = tuple(float(v) + (w if i % 2 == 0 else 0) for i, v in enumerate(b.bbox))  # b's box, on the right half
    fd = FaceDescriber(("hog", "mediapipe"))
    fd.setup()
    every = fd.describe(both)  # without a box: every face
    assert len(every) == 2
    left = next(f for f in every if f.box[2] <= w)
    right = next(f for f in every if f.box[0] >= w)
    for roi, want in ((box_a, left), (box_b, right)):
        only = fd.describe(both, roi=roi)  # the labelled face alone, as the whole-image pass found it
        assert len(only) == 1 and only[0].box == want.box
        assert np.array_equal(only[0].descriptor, want.descriptor)
    blank = np.zeros_like(both)
    assert fd.describe(blank, roi=box_a) == []

    haar = PresenceDetectors(("haar",), haar_max_side=640)
    everywhere = haar.haar(both)
    assert any(f.box[2] <= w for f in everywhere) and any(f.box[0] >= w for f in everywhere)
    near_a = haar.haar(both, roi=box_a)
    assert near_a and all(f.box[2] <= w + 0.5 * (box_a[2] - box_a[0]) for f in near_a)
    # the labelled place is empty (the faces are elsewhere): no face there, whatever the rest shows
    empty = np.concatenate([np.full_like(a.image, 90), b.image], axis=1)
    assert haar.haar(np.ascontiguousarray(empty), roi=box_a) == []
    assert haar.haar(np.ascontiguousarray(empty))  # the whole-image scan finds b


def test_privacy_report_keeps_descriptors_end_to_end_and_names_a_sample_of_another_length():
    """The report holds the descriptors as one float32 buffer (no object per descriptor): the same
    matrix as stacking them; a descriptor of another length names its sample."""
    from dmsfactory.privacy.report import PrivacyReport

    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(5, 128)).astype(np.float32)
    rep = PrivacyReport(PrivacyConfig(), [])
    for i, v in enumerate(vecs):
        rep.add({"key": f"s{i}", "identity": f"id{i % 2}", "verdicts": [], "arrays": {"face_descriptor": v.tolist()}})
    got = np.frombuffer(rep.desc, np.float32).reshape(-1, rep.desc_dim)
    assert got.shape == (5, 128) and np.array_equal(got, vecs)
    with pytest.raises(ValueError, match="'bad'.*64 values"):
        rep.add({"key": "bad", "identity": "id9", "verdicts": [], "arrays": {"face_descriptor": [0.0] * 64}})
