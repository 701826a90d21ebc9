"""Clip behaviour against published measurements: blinks, PERCLOS, yawns, glances (+ pixels and speed).

    .venv/bin/python benchmarks/clips_behaviour.py [--drivers 40] [--seconds 60] [--fps 30]
        [--scenario-clips 22] [--pixel-clips 2] [--pixel-seconds 8] [--pixel-size 256]
        [--speed-frames 240] [--seed 0] [--png out/clips_behaviour.png]

Sections:
- drive: for every KSS 1-9, ``--drivers`` seeded drivers (dmsfactory.clips.drivers.driver_traits(seed, i))
  drive ``--seconds`` of plain driving (no scripted event); temporal labels from the recorded closures.
  Per KSS: blink duration (onset to reopened), closing / closed / reopening, half-amplitude duration,
  share of blinks >= 0.5 s, share with closing shorter than reopening, blink rate per clip, PERCLOS
  P80 per clip, spontaneous microsleeps per minute.
- scenarios: ``--scenario-clips`` clips of each built-in scenario (make_clip_plan, ``--seconds`` long):
  the same statistics per scenario plus yawn durations/phases and glance durations per zone group.
- fps: the drive clips of KSS 9 labelled at 10, 30 and 60 fps: blink/microsleep counts and mean
  durations must agree (they come from the same continuous curves).
- pixels (``--pixel-clips`` > 0): alert, drowsy and microsleep clips rendered at ``--fps`` and
  ``--pixel-size`` by the current procedural renderer; MediaPipe face mesh on every frame: face found
  rate (overall, and apart for frames of a yawn with a hand over the mouth) and the AUC with which the eye aspect ratio (mean of both eyes) ranks the labelled closed
  frames (P80) below the open ones (and DMD ``close`` vs ``open`` state frames).
- speed (``--speed-frames`` > 0): render frames of a 30-fps clip at 128 px, frames per CPU-second of
  this process (one core), against the 60 frames/s target; the label-side cost (plan + labels) as a
  ratio of the render time (baseline measured in the same run).
Targets and reference figures: dmsfactory.clips.drivers.REFERENCE (issue 24). The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

from dmsfactory.clips import ClipsConfig, make_clip_plan  # noqa: E402
from dmsfactory.clips.behaviour import simulate  # noqa: E402
from dmsfactory.clips.behaviour_report import behaviour_stats, checks, figure_png, markdown  # noqa: E402
from dmsfactory.clips.config import BUILTIN_SCENARIOS  # noqa: E402
from dmsfactory.clips.drivers import REFERENCE, driver_traits  # noqa: E402
from dmsfactory.labelers.temporal import temporal_labels_from_frames  # noqa: E402
from dmsfactory.spec import parse_spec  # noqa: E402


def drive_docs(kss: int, drivers: int, seconds: float, fps: float, seed: int) -> list[dict]:
    docs = []
    n = int(round(seconds * fps))
    for i in range(drivers):
        drv = driver_traits("bench", seed, i)
        segs = [{"kind": "drive", "duration_s": seconds, "start_s": 0.0}]
        m = simulate(kss, segs, seconds, np.random.default_rng([seed, i, 7]), drv)
        fr = m.frames(n, fps)
        tl = temporal_labels_from_frames(fr, fps, events=m.events)
        docs.append({"params": {"scenario": "drive", "kss": kss, "fps": fps, "events": m.events,
                                "behaviour": m.record(), "_model": m}, "labels": {"temporal": tl}})
    return docs


def scenario_docs(per_scenario: int, seconds: float, fps: float, seed: int) -> list[dict]:
    n_ids = per_scenario * len(BUILTIN_SCENARIOS)
    spec = parse_spec({"name": "bench-behaviour", "seed": seed, "classes": {"alert": 1},
                       "identities": {"count": n_ids, "images_per_identity": 1}})
    cfg = ClipsConfig(fps=fps, duration_s=seconds)
    docs = []
    for p in make_clip_plan(spec, cfg):
        tl = temporal_labels_from_frames(p["frames"], fps, events=p["events"])
        meta = {k: v for k, v in p.items() if k != "frames"}
        docs.append({"params": meta, "labels": {"temporal": tl}})
    return docs


def fps_agreement(models: list, seconds: float) -> dict:
    out = {}
    for fps in (10.0, 30.0, 60.0):
        n = int(round(seconds * fps))
        cnt = {"blinks": 0, "microsleep": 0}
        dur = []
        for m in models:
            tl = temporal_labels_from_frames(m.frames(n, fps), fps, events=m.events)
            bl = [b for b in tl["blinks"] if b["kind"] == "blink"]
            cnt["blinks"] += len(bl)
            cnt["microsleep"] += tl["summary"]["event_counts"]["microsleep"]
            dur += [e["duration_s"] for e in tl["events"] if e["type"] == "microsleep"]
        out[str(int(fps))] = {**cnt, "mean_microsleep_s": round(float(np.mean(dur)), 4) if dur else None,
                              "perclos_mean": None}
    ok = len({(v["blinks"], v["microsleep"]) for v in out.values()}) == 1
    return {"by_fps": out, "counts_agree": ok}


def auc_below(neg_scores: np.ndarray, pos_scores: np.ndarray) -> float | None:
    """P(score of a closed frame < score of an open frame) (ties count 1/2): Mann-Whitney AUC."""
    if not len(neg_scores) or not len(pos_scores):
        return None
    allv = np.concatenate([neg_scores, pos_scores])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[len(neg_scores):].sum()
    n1, n0 = len(pos_scores), len(neg_scores)
    return float((r_pos - n1 * (n1 + 1) / 2) / (n1 * n0))


def pixels(clips_per: int, seconds: float, fps: float, size: int, seed: int) -> dict:
    from dmsfactory.clips import ClipGenerator
    from dmsfactory.labelers.verify import EAR_LEFT, EAR_RIGHT, VerifyStage, ear

    scen = ("alert", "drowsy", "microsleep")
    spec = parse_spec({"name": "bench-pixels", "seed": seed, "classes": {"alert": 1},
                       "identities": {"count": clips_per * len(scen) * 3, "images_per_identity": 1}})
    cfg = ClipsConfig(fps=fps, duration_s=seconds, image_size=size, scenarios={s: 1 for s in scen})
    plans = make_clip_plan(spec, cfg)
    chosen: list[dict] = []
    for s in scen:
        chosen += [p for p in plans if p["scenario"] == s][:clips_per]
    gen = ClipGenerator(None, cfg)
    gen.setup()
    vs = VerifyStage()
    vs.setup()
    ears, closed, state, found = [], [], [], 0
    n = 0
    hand_n = hand_found = 0
    t0 = time.perf_counter()
    for c in gen.generate(chosen):
        pf = c.temporal["per_frame"]
        for i, f in enumerate(c.frames):
            n += 1
            p = vs.detect(f.image)
            hand = f.params["state"]["yawn"] == "yawning_with_hand"  # a hand over the mouth hides the lower face
            hand_n += hand
            hand_found += hand and p is not None
            if p is None:
                continue
            found += 1
            ears.append((ear(p, EAR_LEFT) + ear(p, EAR_RIGHT)) / 2)
            closed.append(pf["eyes_closed"][i])
            state.append(pf["eye_state"][i])
    ears_a, closed_a, state_a = np.array(ears), np.array(closed, bool), np.array(state)
    return {
        "frames": n, "clips": len(chosen), "size": size, "fps": fps, "seconds": round(time.perf_counter() - t0, 1),
        "face_found_rate": round(found / n, 4) if n else None,
        "hand_over_mouth_frames": hand_n, "face_found_rate_hand_over_mouth": round(hand_found / hand_n, 4) if hand_n else None,
        "face_found_rate_without_hand_over_mouth": round((found - hand_found) / (n - hand_n), 4) if n > hand_n else None,
        "closed_frames": int(closed_a.sum()), "open_frames": int((~closed_a).sum()),
        "ear_auc_closed_below_open": _r(auc_below(ears_a[closed_a], ears_a[~closed_a])),
        "ear_auc_state_close_below_open": _r(auc_below(ears_a[state_a == "close"], ears_a[state_a == "open"])),
        "frames_by_state": {s: int((state_a == s).sum()) for s in ("open", "closing", "close", "opening")},
    }


def _r(x):
    return round(x, 4) if isinstance(x, float) else x


def speed(frames: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from dmsfactory.generators.procedural import ProceduralConfig, ProceduralGenerator

    spec = parse_spec({"name": "bench-speed", "seed": seed, "classes": {"alert": 1},
                       "identities": {"count": 4, "images_per_identity": 1}})
    cfg = ClipsConfig(fps=30, duration_s=frames / 30.0, image_size=128, scenarios={"alert": 1, "drowsy": 1})
    c0 = time.process_time()
    plans = make_clip_plan(spec, cfg, limit=1)
    fr = plans[0]["frames"]
    temporal_labels_from_frames(fr, 30, events=plans[0]["events"])
    t_plan = time.process_time() - c0
    gen = ProceduralGenerator(ProceduralConfig())
    gen.setup()
    gen.generate(fr[:2])
    c0, w0 = time.process_time(), time.perf_counter()
    gen.generate(fr)
    t_cpu, t_wall = time.process_time() - c0, time.perf_counter() - w0
    fps_cpu = len(fr) / t_cpu
    return {"frames": len(fr), "size": 128, "render_frames_per_cpu_s": round(fps_cpu, 1),
            "render_frames_per_wall_s": round(len(fr) / t_wall, 1),
            "render_vs_target_60_ratio": round(fps_cpu / 60.0, 3),
            "plan_and_labels_vs_render_time_ratio": round(t_plan / t_cpu, 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--drivers", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--scenario-clips", type=int, default=12)
    ap.add_argument("--pixel-clips", type=int, default=2)
    ap.add_argument("--pixel-seconds", type=float, default=8.0)
    ap.add_argument("--pixel-size", type=int, default=256)
    ap.add_argument("--speed-frames", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", default=None, help="write the figure here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    drive = {k: drive_docs(k, a.drivers, a.seconds, a.fps, a.seed) for k in range(1, 10)}
    st_drive = behaviour_stats([d for v in drive.values() for d in v])
    ck = checks(st_drive)
    print(f"== drive clips: {a.drivers} drivers x KSS 1-9, {a.seconds:g} s at {a.fps:g} fps")
    print(markdown(st_drive))
    for k in (5, 7, 9):
        g = st_drive["by_kss"][k]
        print(f"KSS {k}: half-amplitude median {g.get('half_amplitude_s', {}).get('median')}, long-blink share "
              f"(> 0.15 s at half amplitude) {g.get('share_long_blink_half_amplitude')}, microsleeps/min "
              f"{g.get('microsleeps_per_min')}, PERCLOS > 0.15 in {g.get('share_perclos_60s_over_threshold')} of 60-s clips")
    t_drive = time.perf_counter() - t0
    agree = fps_agreement([d["params"]["_model"] for d in drive[9][:10]], a.seconds)
    print("== fps agreement (10 KSS-9 drivers):", json.dumps(agree))

    st_scen = None
    if a.scenario_clips > 0:
        sdocs = scenario_docs(a.scenario_clips, a.seconds, a.fps, a.seed)
        st_scen = behaviour_stats(sdocs)
        print(f"== built-in scenarios: {a.scenario_clips} clips each, {a.seconds:g} s")
        print("| scenario | KSS | clips | blink duration median | rate median | PERCLOS median | yawn s median | "
              "yawn opening/peak/closing median | glances mirror / in-vehicle / outside median (p85) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for name, g in st_scen["by_scenario"].items():
            def m(key, q="median"):
                return (g.get(key) or {}).get(q)
            kss = sorted({int(d["params"]["kss"]) for d in sdocs if d["params"]["scenario"] == name})
            gl = " / ".join(f"{m(k)} ({m(k, 'p85')})" for k in ("glance_mirror", "glance_in_vehicle", "glance_outside"))
            print(f"| {name} | {kss[0]}-{kss[-1]} | {g['clips']} | {m('duration_s')} | {m('rate_per_min')} | {m('perclos')} | "
                  f"{m('yawn_s')} | {m('yawn_opening_s')}/{m('yawn_peak_s')}/{m('yawn_closing_s')} | {gl} |")
    if a.png:
        Path(a.png).parent.mkdir(parents=True, exist_ok=True)
        merged = dict(st_drive)
        if st_scen is not None:
            merged["all"] = st_scen["all"]
        Path(a.png).write_bytes(figure_png(merged, f"{a.drivers} drivers per KSS, {a.seconds:g} s clips"))
    px = pixels(a.pixel_clips, a.pixel_seconds, a.fps, a.pixel_size, a.seed) if a.pixel_clips > 0 else None
    if px:
        print("== pixels:", json.dumps(px))
    sp = speed(a.speed_frames, a.seed) if a.speed_frames > 0 else None
    if sp:
        print("== speed:", json.dumps(sp))

    al = st_drive["alert_kss_le_5"]
    k9 = st_drive["by_kss"][9]
    res = {
        "drivers_per_kss": a.drivers, "clip_s": a.seconds, "fps": a.fps, "label_level_s": round(t_drive, 1),
        "checks": {k: v["pass"] for k, v in ck.items()},
        "alert_median_blink_duration_s": al["duration_s"]["median"],
        "alert_median_vs_reference_mid_ratio": round(al["duration_s"]["median"] / np.mean(REFERENCE["alert_blink_duration_median_s"]), 3),
        "alert_share_0_5_s_or_longer": al.get("share_0_5_s_or_longer"),
        "alert_share_closing_shorter": al.get("share_closing_shorter"),
        "alert_median_rate_per_min": al["rate_per_min"]["median"],
        "alert_rate_p5_p95": [al["rate_per_min"]["p5"], al["rate_per_min"]["p95"]],
        "alert_median_perclos": al["perclos"]["median"],
        "mean_blink_duration_by_kss": {str(k): st_drive["by_kss"][k]["duration_s"]["mean"] for k in range(5, 10)},
        "kss9_median_perclos": k9["perclos"]["median"],
        "kss9_median_perclos_vs_threshold_ratio": round(k9["perclos"]["median"] / REFERENCE["perclos_drowsy_threshold"], 3),
        "kss9_share_clips_over_threshold": k9.get("share_perclos_60s_over_threshold"),
        "fps_counts_agree": agree["counts_agree"],
    }
    if st_scen is not None:
        alls = st_scen["all"]
        res["yawn_median_s"] = (alls.get("yawn_s") or {}).get("median")
        res["yawn_share_opening_longer"] = alls.get("share_yawn_opening_longer")
        res["in_vehicle_glance_p85_s"] = (alls.get("glance_in_vehicle") or {}).get("p85")
        res["mirror_glance_median_s"] = (alls.get("glance_mirror") or {}).get("median")
    if px:
        res.update({"pixel_face_found_rate": px["face_found_rate"],
                    "pixel_face_found_rate_without_hand_over_mouth": px["face_found_rate_without_hand_over_mouth"],
                    "pixel_ear_auc": px["ear_auc_closed_below_open"],
                    "pixel_frames": px["frames"], "pixel_size": px["size"]})
    if sp:
        res.update({"render_128px_frames_per_cpu_s": sp["render_frames_per_cpu_s"],
                    "render_vs_target_60_ratio": sp["render_vs_target_60_ratio"]})
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
