"""Anonymisation of real driver frames: identity removed, labels kept, image usable, recovery, speed.

    python benchmarks/anonymize.py --n 100 --seed 0 [--mode replace|hide] [--video-frames 200]

Data (research licences: read in place, never copied into the repo; HELPERS.md / DESIGN.md):
``--yawdd`` YawDD in-car frames (640x480, ``yawn/`` and ``no-yawn/``), ``--eyes`` the Kaggle eye-state
crops (``Open/``, ``Closed/``). ``--n`` frames per YawDD class are drawn with ``--seed``.

Sections (one JSON object on the last line; figures are also given as ratios against a baseline
measured in the same run on the same frames: a Gaussian blur of the face region, sigma = face
size / 8, the usual "blur the face" anonymisation):

* stills: every drawn frame through ``Anonymizer`` (still mode); MediaPipe re-check on the output
  (face found, eye state at EAR 0.18 per eye, mouth open at MAR 0.10, yawn at MAR 0.5, head pose
  within 5 deg); dlib distance original <-> anonymised and a gallery search of every anonymised
  face among all originals (0.6); KID on dlib descriptors; SSIM whole frame and outside the face,
  PSNR outside the face; recovery (seal, open, restore: bit-exact count); YawDD's own yawn label
  against MAR >= 0.5 on the original and on the anonymised frame.
* eye crops: how many of the crops MediaPipe finds a face in (only those can be anonymised).
* video: ``--video-frames`` no-yawn frames in file order as one 640x480 sequence (YawDD's frames
  come in clips of 3-10 related frames with cuts between; a harder case for tracking than
  continuous video), ``Anonymizer(video=True)``: frames/s against MediaPipe's face mesh alone on
  the same frames (the floor of any mesh-based method).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("GLOG_minloglevel", "2")

YAWDD = "/work/real/Muneeb-Ahmed-Khan+Yawn-Detection/dataset_noisy"
EYES = "/work/real/purnenduvashistha+Eye-State-Detection/originalData"


def _files(d: Path) -> list[Path]:
    return sorted((p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")),
                  key=lambda p: (len(p.stem), p.stem))


def _blur_baseline(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    import cv2

    from dmsfactory.anonymize.mesh import index_sets

    o = lm[index_sets()["oval"]]
    size = float(max(np.ptp(o[:, 0]), np.ptp(o[:, 1])))
    H, W = img.shape[:2]
    x0, y0 = int(max(0, o[:, 0].min())), int(max(0, o[:, 1].min()))
    x1, y1 = int(min(W, o[:, 0].max() + 1)), int(min(H, o[:, 1].max() + 1))
    mask = np.zeros((H, W), np.uint8)
    cv2.fillPoly(mask, [np.round(o).astype(np.int32)], 1)
    out = img.copy()
    bl = cv2.GaussianBlur(img, (0, 0), max(1.0, size / 8))
    out[mask > 0] = bl[mask > 0]
    return out, (x0, y0, x1, y1)


def _summ(xs):
    xs = [x for x in xs if x is not None]
    return None if not xs else round(float(np.mean(xs)), 4)


def stills(args, cfg) -> dict:
    from dmsfactory.anonymize.core import Anonymizer
    from dmsfactory.anonymize.keys import open_record, restore, seal
    from dmsfactory.anonymize.mesh import FaceMesh
    from dmsfactory.anonymize.metrics import IdentityMeter, frame_metrics, kid
    from dmsfactory.privacy.descriptors import load_image

    rng = np.random.default_rng(args.seed)
    picks = []
    for cls in ("yawn", "no-yawn"):
        fs = _files(Path(args.yawdd) / cls)
        idx = sorted(rng.choice(len(fs), size=min(args.n, len(fs)), replace=False))
        picks += [(cls, fs[i]) for i in idx]
    an = Anonymizer(cfg)
    an.setup()
    if args.avoid_all and cfg.identity_candidates > 1:
        # pass 1 (as `dmsfactory anonymize` does for a folder): describe every original, in memory
        from dmsfactory.anonymize.mesh import FaceMesh as _FM

        fm = _FM(False, 1)
        gal = []
        for _, f in picks:
            lm = fm.landmarks(load_image(f))
            if lm:
                gal.append(an.describe(load_image(f), lm[0][0]))
        fm.close()
        an.avoid(gal)
    key = os.urandom(32)
    ours, base = IdentityMeter(), IdentityMeter()
    chk = FaceMesh(False, 1)
    rows = []
    t_all = time.perf_counter()
    for cls, f in picks:
        img = load_image(f)
        t0 = time.perf_counter()
        res = an.process(img, f.name)
        dt = time.perf_counter() - t0
        row = {"file": f"{cls}/{f.name}", "class": cls, "no_face": res.no_face, "seconds": dt}
        if res.no_face:
            rows.append(row)
            continue
        fr = res.faces[0]
        ch = fr.recheck
        row["method"] = fr.identity.get("method", "synthetic")
        row["face"] = bool(ch.get("face"))
        m = frame_metrics(img, res.image, res.regions)
        row.update({k: m[k] for k in ("ssim", "ssim_outside_face", "psnr_outside_face", "ssim_face_region")})
        if "hide" in fr.command:
            row["hide_lambda"] = fr.command["hide"]["lambda"]
        blob = seal(key, f.name, img, res.image, res.regions)
        row["recovery_exact"] = bool((restore(open_record(key, blob), res.image) == img).all())
        src_lm = an.last_source_landmarks.get(fr.track)
        row["yawn_src"] = fr.labels["mouth"]["yawning"]
        if ch.get("face"):
            row.update({"eyes": [ch["eyes"][s]["agree"] for s in ("left", "right")],
                        "eyes_closed_src": [ch["eyes"][s]["source_closed"] for s in ("left", "right")],
                        "mouth": ch["mouth"]["agree"], "yawn": ch["mouth"]["source_yawn"] == ch["mouth"]["output_yawn"],
                        "yawn_out": ch["mouth"]["output_yawn"],
                        "pose_err": ch["head_pose"].get("max_error_deg"), "pose_agree": ch["head_pose"].get("agree"),
                        "iterations": fr.iterations})
            row["dlib"] = ours.add(f.name, img, src_lm, res.image, an.last_output_landmarks[fr.track])
        # baseline: blur the face region
        b_img, b_roi = _blur_baseline(img, src_lm)
        bm = frame_metrics(img, b_img, [b_roi])
        row["blur_ssim"] = bm["ssim"]
        bf = chk.measure(b_img, cfg.fov_deg, an.head.canonical_model())
        row["blur_face"] = bool(bf)
        if bf:
            o, s_ = bf[0], fr.source
            row["blur_eyes"] = [(o.ear[s] < cfg.ear_closed) == (s_["ear"][s] < cfg.ear_closed) for s in ("left", "right")]
            row["blur_yawn"] = (o.mar >= cfg.yawn_mar) == (s_["mar"] >= cfg.yawn_mar)
            row["blur_pose_agree"] = (o.head_pose is not None and
                                      max(abs(o.head_pose[k] - s_["head_pose"][k]) for k in ("yaw", "pitch", "roll")) <= cfg.pose_tolerance_deg)
            row["blur_dlib"] = base.add(f.name, img, src_lm, b_img, o.landmarks)
        rows.append(row)
        if args.verbose:
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}), file=sys.stderr)
    wall = time.perf_counter() - t_all
    faces = [r for r in rows if not r["no_face"]]
    seen = [r for r in faces if r.get("face")]
    bseen = [r for r in faces if r.get("blur_face")]
    o_sum, b_sum = ours.summary(), base.summary()
    eyes = [e for r in seen for e in r["eyes"]]
    gt = [(r["class"] == "yawn") for r in seen]
    out = {
        "frames": len(rows), "no_face_frames": sum(r["no_face"] for r in rows), "faces": len(faces),
        "fallback_pixelated": sum(r.get("method") == "fallback_pixelate" for r in faces),
        "face_detected_on_output": _summ([r["face"] for r in faces]),
        "eye_state_agreement": _summ(eyes),
        "eyes_closed_in_source": int(sum(e for r in seen for e in r["eyes_closed_src"])),
        "mouth_open_agreement": _summ([r["mouth"] for r in seen]),
        "yawn_agreement": _summ([r["yawn"] for r in seen]),
        "head_pose_within_5deg": _summ([r["pose_agree"] for r in seen]),
        "head_pose_max_error_deg_median": None if not seen else round(float(np.median([r["pose_err"] for r in seen if r["pose_err"] is not None])), 3),
        "yawdd_label_accuracy_mar_original": _summ([r["yawn_src"] == g for r, g in zip(seen, gt)]),
        "yawdd_label_accuracy_mar_anonymised": _summ([r["yawn_out"] == g for r, g in zip(seen, gt)]),
        "ssim_frame_mean": _summ([r["ssim"] for r in faces]), "ssim_frame_min": None if not faces else round(min(r["ssim"] for r in faces), 4),
        "ssim_outside_face_mean": _summ([r["ssim_outside_face"] for r in faces]),
        "ssim_face_region_mean": _summ([r["ssim_face_region"] for r in faces]),
        "hide_lambda_median": None if not any("hide_lambda" in r for r in faces) else
        round(float(np.median([r["hide_lambda"] for r in faces if "hide_lambda" in r])), 4),
        "psnr_outside_face_min_db": "inf" if faces and all(np.isinf(r["psnr_outside_face"]) for r in faces) else
        (None if not faces else round(min(r["psnr_outside_face"] for r in faces), 3)),
        "recovery_bit_exact": _summ([r["recovery_exact"] for r in faces]),
        "psnr_recovery_db": "inf" if faces and all(r["recovery_exact"] for r in faces) else None,
        "identity": o_sum,
        "seconds_per_frame_median": round(float(np.median([r["seconds"] for r in rows])), 4) if rows else None,
        "frames_per_second_stills": round(len(rows) / sum(r["seconds"] for r in rows), 3) if rows else None,
        "wall_seconds": round(wall, 1),
        "baseline_blur": {
            "face_detected_on_output": _summ([r["blur_face"] for r in faces]),
            "eye_state_agreement": _summ([e for r in bseen for e in r["blur_eyes"]]),
            "yawn_agreement": _summ([r["blur_yawn"] for r in bseen]),
            "head_pose_within_5deg": _summ([r["blur_pose_agree"] for r in bseen]),
            "ssim_frame_mean": _summ([r["blur_ssim"] for r in faces]),
            "identity": b_sum,
        },
    }

    def ratio(a, b):
        return None if a is None or b in (None, 0) else round(a / b, 4)

    out["ratios_vs_blur"] = {
        "dlib_share_above_0.6": ratio(o_sum.get("share_above_threshold"), b_sum.get("share_above_threshold")),
        "face_detected": ratio(out["face_detected_on_output"], out["baseline_blur"]["face_detected_on_output"]),
        "eye_state_agreement": ratio(out["eye_state_agreement"], out["baseline_blur"]["eye_state_agreement"]),
        "yawn_agreement": ratio(out["yawn_agreement"], out["baseline_blur"]["yawn_agreement"]),
        "head_pose_within_5deg": ratio(out["head_pose_within_5deg"], out["baseline_blur"]["head_pose_within_5deg"]),
        "ssim": ratio(out["ssim_frame_mean"], out["baseline_blur"]["ssim_frame_mean"]),
    }
    if o_sum.get("faces", 0) > 1 and b_sum.get("faces", 0) > 1:
        out["kid_x1000_dlib"] = {"ours": o_sum["kid"]["kid_x1000"], "blur": b_sum["kid"]["kid_x1000"]}
    out["kid_check"] = kid(np.stack(ours.orig), np.stack(ours.orig)) if len(ours.orig) > 1 else None
    an.close()
    return out


def eye_crops(args) -> dict:
    from dmsfactory.anonymize.mesh import FaceMesh
    from dmsfactory.privacy.descriptors import load_image

    fm = FaceMesh(False, 1)
    out = {}
    for cls in ("Open", "Closed"):
        fs = _files(Path(args.eyes) / cls)[: args.n_eyes]
        found = sum(bool(fm.landmarks(load_image(f))) for f in fs)
        out[cls] = {"crops": len(fs), "mediapipe_face_found": found}
    fm.close()
    return out


def video(args, cfg) -> dict:
    from dmsfactory.anonymize.core import Anonymizer
    from dmsfactory.anonymize.mesh import FaceMesh
    from dmsfactory.privacy.descriptors import load_image

    fs = _files(Path(args.yawdd) / "no-yawn")[: args.video_frames]
    frames = [load_image(f) for f in fs]
    fm = FaceMesh(True, cfg.max_faces)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for im in frames:
        fm.landmarks(im)
    mp_s = time.perf_counter() - t0
    mp_cpu = time.process_time() - c0
    fm.close()
    an = Anonymizer(cfg, video=True)
    an.setup()
    # one warm-up frame (model loading, canonical face, tone table) outside the timing
    an.process(frames[0], "warmup", 0.0)
    an.reset(video=True)
    t0 = time.perf_counter()
    c0 = time.process_time()
    agree, seen, nofaces, tracks = [], 0, 0, set()
    for i, im in enumerate(frames):
        r = an.process(im, "video", i / 30.0)
        nofaces += r.no_face
        for f in r.faces:
            tracks.add(f.track)
            if f.recheck.get("face"):
                seen += 1
                agree.append(f.recheck["all_agree"])
    ours_s = time.perf_counter() - t0
    ours_cpu = time.process_time() - c0
    an.close()
    n = len(frames)
    return {"frames": n, "size": list(frames[0].shape[:2][::-1]), "frames_per_second": round(n / ours_s, 3),
            "cpu_seconds_per_frame": round(ours_cpu / n, 4), "mediapipe_only_cpu_seconds_per_frame": round(mp_cpu / n, 4),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "mediapipe_mesh_only_fps": round(n / mp_s, 3), "ratio_vs_mediapipe_only": round(mp_s / ours_s, 4),
            "tracks": len(tracks), "no_face_frames": int(nofaces), "faces_seen_on_output": seen,
            "all_labels_agree": _summ(agree)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--yawdd", default=YAWDD)
    ap.add_argument("--eyes", default=EYES)
    ap.add_argument("--n", type=int, default=50, help="frames per YawDD class")
    ap.add_argument("--n-eyes", type=int, default=100, help="eye crops per class")
    ap.add_argument("--video-frames", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=("replace", "hide"), default="replace")
    ap.add_argument("--refine", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=None, help="identity_candidates (default: the config's; 1: no identity guidance)")
    ap.add_argument("--no-avoid-all", dest="avoid_all", action="store_false",
                    help="do not describe all originals first (guidance then avoids only the faces seen so far)")
    ap.add_argument("--skip", default="", help="comma list of sections to skip: stills,eyes,video")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(args.threads)
    from dmsfactory.anonymize.config import AnonymizeConfig

    kw = {} if args.candidates is None else {"identity_candidates": args.candidates}
    cfg = AnonymizeConfig(mode=args.mode, seed=args.seed, refine=args.refine, **kw)
    skip = set(filter(None, args.skip.split(",")))
    res = {"benchmark": "anonymize", "mode": args.mode, "seed": args.seed, "n_per_class": args.n,
           "identity_candidates": cfg.identity_candidates, "avoid_all_originals": bool(args.avoid_all)}
    if "stills" not in skip:
        res["stills"] = stills(args, cfg)
    if "eyes" not in skip:
        res["eye_crops"] = eye_crops(args)
    if "video" not in skip:
        res["video"] = video(args, cfg)
    print(json.dumps(res, default=lambda o: None if o is None else float(o)))


if __name__ == "__main__":
    main()
