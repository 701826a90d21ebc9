"""Privacy gate throughput: face descriptors per second and gallery search time.

Descriptors: the gate's per-image path (MediaPipe boxes merged with dlib HOG, 5-point alignment,
ResNet 128-d) against the baseline "plain dlib" path (HOG at upsample 1 + the same 5-point/ResNet),
on the real test photos (astronaut, grace_hopper, 40 LFW faces upscaled) - and MediaPipe-boxes-only.

Search: exact nearest neighbour of 256 query descriptors against 10^3, 10^4, 10^5 random gallery
descriptors (unit-norm-ish like dlib's), our blockwise :class:`ExactIndex` against the baseline of one
``np.linalg.norm(X - q, axis=1)`` scan per query; both must return the same neighbours.

``--calibrate`` adds the distance figures behind the thresholds (docs/privacy.md).

Last line: one JSON object; ``*_ratio`` = baseline time / our time (> 1 = faster than baseline).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402


def _images() -> list[np.ndarray]:
    import matplotlib.cbook as cb
    from PIL import Image
    from skimage import data

    imgs = [data.astronaut(), np.asarray(Image.open(cb.get_sample_data("grace_hopper.jpg")).convert("RGB"))]
    lfw = (data.lfw_subset()[:40] * 255).round().astype(np.uint8)
    import cv2

    imgs += [np.ascontiguousarray(np.stack([cv2.resize(f, (160, 160), interpolation=cv2.INTER_CUBIC)] * 3, -1)) for f in lfw]
    return imgs


def bench_descriptors() -> dict:
    from dmsfactory.privacy.analyze import FaceAnalyzer
    from dmsfactory.privacy.config import PrivacyConfig

    imgs = _images()
    out = {"images": len(imgs)}
    # baseline: plain dlib HOG + 5-point + ResNet
    base = FaceAnalyzer(PrivacyConfig(descriptor_detectors=["hog"], presence_detectors=["mediapipe"], hog_min_score=-1.0))
    ours = FaceAnalyzer(PrivacyConfig())
    mp_only = FaceAnalyzer(PrivacyConfig(descriptor_detectors=["mediapipe"], presence_detectors=["mediapipe"]))
    for a in (base, ours, mp_only):
        a.setup()
        a.analyze(imgs[0], presence=False, hash_=False)  # warm-up
    res = {}
    for name, a, pres in (("baseline_hog", base, False), ("gate_full", ours, True), ("mediapipe_boxes", mp_only, False)):
        t = time.perf_counter()
        faces = 0
        for im in imgs:
            faces += len(a.analyze(im, presence=pres, hash_=pres).faces)
        dt = time.perf_counter() - t
        res[name] = (dt, faces)
        out[f"{name}_images_per_s"] = round(len(imgs) / dt, 2)
        out[f"{name}_faces_per_s"] = round(faces / dt, 2)
        out[f"{name}_faces"] = faces
    out["gate_full_vs_baseline_ratio"] = round(res["baseline_hog"][0] / res["gate_full"][0], 3)
    out["mediapipe_boxes_vs_baseline_ratio"] = round(res["baseline_hog"][0] / res["mediapipe_boxes"][0], 3)
    return out


def bench_search(sizes=(1_000, 10_000, 100_000), n_queries=256, seed=0) -> dict:
    from dmsfactory.privacy.leakage import ExactIndex

    rng = np.random.default_rng(seed)
    out = {}
    for n in sizes:
        X = rng.normal(0, 1, (n, 128)).astype(np.float32)
        X /= np.linalg.norm(X, axis=1, keepdims=True) * 1.0
        Q = (X[rng.integers(0, n, n_queries)] + rng.normal(0, 0.05, (n_queries, 128))).astype(np.float32)
        t = time.perf_counter()
        idx = ExactIndex(X)
        build = time.perf_counter() - t
        t = time.perf_counter()
        D, I = idx.search(Q, 2)
        ours = time.perf_counter() - t
        nb = min(n_queries, 64 if n >= 100_000 else n_queries)  # the naive scan is slow: time a subset
        t = time.perf_counter()
        naive = np.array([int(np.argmin(np.linalg.norm(X - q, axis=1))) for q in Q[:nb]])
        base = (time.perf_counter() - t) * n_queries / nb
        exact = bool(np.all(naive == I[:nb, 0]))
        out[f"n{n}"] = {
            "build_s": round(build, 4),
            "search_ms_per_query": round(1000 * ours / n_queries, 4),
            "baseline_ms_per_query": round(1000 * base / n_queries, 4),
            "ratio": round(base / ours, 2),
            "same_neighbours_as_baseline": exact,
        }
    return out


def _q(v) -> dict:
    a = np.asarray(v, np.float64)
    a = a[np.isfinite(a)]
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "min": round(float(a.min()), 3), "p05": round(float(np.quantile(a, 0.05)), 3),
            "median": round(float(np.median(a)), 3), "max": round(float(a.max()), 3)}


def calibrate(n_identities: int = 30, per_identity: int = 3) -> dict:
    """The distance figures behind the thresholds in docs/privacy.md (slow: ~1 min)."""
    import cv2
    from skimage import data

    from dmsfactory.generators.procedural import ProceduralConfig, ProceduralGenerator, example_plan_entry
    from dmsfactory.privacy.analyze import FaceAnalyzer
    from dmsfactory.privacy.config import PrivacyConfig
    from dmsfactory.privacy.duplicates import identity_consistency

    an = FaceAnalyzer(PrivacyConfig())
    an.setup()

    def descs(img):
        return [f for f in an.analyze(img, presence=False, hash_=False).faces]

    def rot(im, a):
        h, w = im.shape[:2]
        return cv2.warpAffine(im, cv2.getRotationMatrix2D((w / 2, h / 2), a, 1), (w, h), borderMode=cv2.BORDER_REFLECT)

    def jpeg(im, q):
        return cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_UNCHANGED)

    augs = {"rot15": lambda i: rot(i, 15), "rot-25": lambda i: rot(i, -25), "bright1.4": lambda i: np.clip(i * 1.4, 0, 255).astype(np.uint8),
            "dark0.6": lambda i: (i * 0.6).astype(np.uint8), "jpeg20": lambda i: jpeg(i, 20),
            "crop": lambda i: np.ascontiguousarray(i[i.shape[0] // 12 : -i.shape[0] // 5, i.shape[1] // 10 : -i.shape[1] // 8]),
            "half": lambda i: cv2.resize(i, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)}
    photos = _images()[:2]
    gal_sharp = [f.descriptor for im in photos for f in descs(im)[:1]]
    copies, missed = [], 0
    for im, ref in zip(photos, gal_sharp):
        for f in augs.values():
            fs = descs(f(im))
            missed += not fs
            copies += [min(float(np.linalg.norm(x.descriptor - ref)) for x in fs)] if fs else []
    lfw = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    gal_lfw, lfw_copies, lfw_missed, lfw_by = [], [], 0, {}
    for i, im in enumerate(lfw):
        fs = descs(im)
        if not fs:
            continue
        gal_lfw.append(fs[0].descriptor)
        if i % 4 == 0:
            up = cv2.resize(im, (150, 150), interpolation=cv2.INTER_CUBIC)
            for name, f in augs.items():
                gs = descs(f(up))
                lfw_missed += not gs
                if gs:
                    d = min(float(np.linalg.norm(x.descriptor - fs[0].descriptor)) for x in gs)
                    lfw_copies.append(d)
                    lfw_by.setdefault(name, []).append(d)
    G = np.array(gal_lfw)
    pair = np.linalg.norm(G[:, None] - G[None], axis=2)[np.triu_indices(len(G), 1)]
    gen = ProceduralGenerator(ProceduralConfig())
    gen.setup()
    rng = np.random.default_rng(1)
    plan = []
    for k in range(n_identities):
        seed = int(rng.integers(1 << 30))
        ip = {"sex": ["female", "male"][k % 2], "skin_tone": 1 + k % 6, "age": int(rng.integers(16, 80))}
        for j in range(per_identity):
            plan.append(example_plan_entry(key=f"c{k}-{j}", index=len(plan), identity=f"id{k:06d}", identity_seed=seed,
                                           sample_seed=int(rng.integers(1 << 30)), identity_params=ip,
                                           head_pose_car={"yaw": float(rng.uniform(-40, 40)), "pitch": float(rng.uniform(-12, 12))},
                                           camera={"image_size": 256}))
    rd, ids = [], []
    for s in gen.generate(plan):
        a = an.analyze(s.image, presence=False, hash_=False)
        p = a.primary(s.bbox)
        if p is not None:
            rd.append(p.descriptor)
            ids.append(s.identity)
    R = np.array(rd)
    to_sharp = np.linalg.norm(R[:, None] - np.array(gal_sharp)[None], axis=2).min(1)
    to_lfw = np.linalg.norm(R[:, None] - G[None], axis=2).min(1)
    cons = identity_consistency(R, ids, 0.6)
    return {
        "sharp_photo_copies": {**_q(copies), "no_face": missed, "above_0.6": int((np.array(copies) >= 0.6).sum())},
        "lfw_thumbnail_copies": {**_q(lfw_copies), "no_face": lfw_missed,
                                 "above_0.4": int((np.array(lfw_copies) >= 0.4).sum()),
                                 "above_0.6": int((np.array(lfw_copies) >= 0.6).sum()),
                                 "by_augment_max": {k: round(max(v), 3) for k, v in lfw_by.items()}},
        "lfw_faces_detected": len(gal_lfw),
        "lfw_pairwise": {**_q(pair), "frac_below_0.6": round(float((pair < 0.6).mean()), 4)},
        "renders": len(R),
        "renders_to_sharp_photos": {**_q(to_sharp), "below_0.6": int((to_sharp < 0.6).sum())},
        "renders_to_lfw_thumbnails": {**_q(to_lfw), "below_0.6": int((to_lfw < 0.6).sum()), "below_0.4": int((to_lfw < 0.4).sum())},
        "render_intra_identity": cons["intra"], "render_inter_identity": cons["inter"],
        "render_consistent_fraction": cons["consistent_fraction"],
    }


def main() -> None:
    quick = "--quick" in sys.argv
    result = {"benchmark": "privacy_leakage"}
    if "--calibrate" in sys.argv:  # distances, not timings: the evidence for the thresholds
        result["calibration"] = calibrate()
    result["search"] = bench_search((1_000, 10_000) if quick else (1_000, 10_000, 100_000))
    result["descriptors"] = bench_descriptors()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
