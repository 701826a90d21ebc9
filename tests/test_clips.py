"""Clip plans, behaviour models, clip shards and frame windows.

The shard/window tests draw frames with ``IndexFrames`` -- a test double that paints each frame's
index into its pixels so order and alignment can be checked after a round trip. It stands in for no
model and these tests claim nothing about the renderer; ``test_real_renderer_clip`` renders with
the procedural renderer itself.
"""

import json

import numpy as np
import pytest

from dmsfactory.clips import ClipGenerator, ClipsConfig, Script, Segment, make_clip_plan
from dmsfactory.clips.behaviour import scenario_segments, synthesize
from dmsfactory.clips.plan import clip_shard_jobs
from dmsfactory.clips.shards import frame_windows, open_clip_shards, write_clip_shard
from dmsfactory.labelers.temporal import temporal_labels_from_frames
from dmsfactory.sample import FaceSample
from dmsfactory.spec import parse_spec

FPS = 10.0


def _spec(n=6, seed=7, **kw):
    return parse_spec({"name": "clips-test", "seed": seed, "classes": {"alert": 1},
                       "identities": {"count": n, "images_per_identity": 1}, **kw})


class IndexFrames:
    """Test double: a 32x32 frame whose red channel is the frame index (mod 256)."""

    def generate(self, plan):
        out = []
        for e in plan:
            img = np.zeros((32, 32, 3), np.uint8)
            img[..., 0] = e["frame_index"] % 256
            img[..., 1] = int(round(e["state"]["eye_openness_left"] * 255))
            out.append(FaceSample(key=e["key"], index=e["index"], params=dict(e), image=img, split=e["split"],
                                  identity=e["identity"]))
        return out


def test_plan_is_deterministic_identity_fixed_and_split_disjoint():
    cfg = ClipsConfig(fps=FPS, duration_s=6, clips_per_identity=2)
    spec = _spec(10)
    a, b = make_clip_plan(spec, cfg), make_clip_plan(spec, cfg)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert len(a) == 20 and all(len(c["frames"]) == 60 for c in a)
    split_of = {}
    for c in a:
        fixed = {(f["identity"], f["identity_seed"], f["sample_seed"], f["accessory"], json.dumps(f["camera"]),
                  json.dumps(f["identity_params"], sort_keys=True)) for f in c["frames"]}
        assert len(fixed) == 1
        assert [f["frame_index"] for f in c["frames"]] == list(range(60))
        assert all(f["clip_id"] == c["key"] for f in c["frames"])
        assert split_of.setdefault(c["identity"], c["split"]) == c["split"]
    # identities keep the split of the image planner
    from dmsfactory.plan import make_identities

    assert {i.id: i.split for i in make_identities(spec)} == split_of
    other = make_clip_plan(_spec(10, seed=8), cfg)
    assert json.dumps(other) != json.dumps(a)


def test_plan_entries_follow_the_contract():
    cfg = ClipsConfig(fps=FPS, duration_s=4)
    c = make_clip_plan(_spec(3), cfg)[0]
    f = c["frames"][5]
    for k in ("key", "index", "split", "identity", "identity_seed", "sample_seed", "identity_params", "class", "kss",
              "lighting", "illuminance_lux", "accessory", "camera", "state", "head_pose_car", "gaze_in_head",
              "gaze_zone", "action", "phone", "clip_id", "frame_index"):
        assert k in f, k
    assert set(f["state"]) == {"eye_openness_left", "eye_openness_right", "mouth_open", "yawn", "yawn_lips", "brow_raise", "smile"}
    assert f["camera"]["image_size"] == 128
    assert -75 <= f["head_pose_car"]["yaw"] <= 75


def test_scripted_microsleep_and_glance_give_the_scripted_labels():
    cfg = ClipsConfig(fps=FPS, duration_s=14, scenarios={"s": 1}, scripts={"s": Script(kss=8, segments=[
        Segment(kind="drive", duration_s=2), Segment(kind="microsleep", duration_s=2.0), Segment(kind="drive", duration_s=3),
        Segment(kind="glance", duration_s=4.0, zone="infotainment", movement="lizard"), Segment(kind="drive", duration_s=3),
    ])})
    kss, segs = scenario_segments("s", cfg, np.random.default_rng(0))
    frames, events = synthesize(kss, segs, cfg.n_frames, FPS, np.random.default_rng(1))
    tl = temporal_labels_from_frames(frames, FPS)
    ms = [e for e in tl["events"] if e["type"] == "microsleep"]
    assert len(ms) == 1 and ms[0]["duration_s"] == pytest.approx(2.0, abs=1.01 / FPS)
    assert ms[0]["start"] == pytest.approx(20, abs=1)
    ld = [e for e in tl["events"] if e["type"] == "long_distraction"]
    assert len(ld) == 1 and 3.0 <= ld[0]["duration_s"] <= 4.0 + 1e-9
    # lizard: eyes carry most of the glance -> eye-in-head yaw at the limit, head turned less than the target
    mid = frames[int((7 + 2) * FPS)]
    assert mid["gaze_zone"] == "infotainment"
    assert abs(mid["gaze_in_head"]["pitch"]) > abs(mid["head_pose_car"]["pitch"]) * 0.5
    # no blink overlaps the scripted closure
    bl = [e for e in events if e["type"] == "blink"]
    assert all(b["end_s"] <= 1.6 or b["start_s"] >= 4.3 for b in bl)


def test_blinks_slow_down_with_kss():
    def stats(kss):
        cfg = ClipsConfig(fps=30, duration_s=60, scenarios={"d": 1},
                          scripts={"d": Script(kss=kss, segments=[Segment(kind="drive", duration_s=60)])})
        k, segs = scenario_segments("d", cfg, np.random.default_rng(3))
        frames, events = synthesize(k, segs, cfg.n_frames, 30, np.random.default_rng(4))
        return temporal_labels_from_frames(frames, 30, events=events)["summary"]

    alert, sleepy = stats(2), stats(9)
    assert alert["mean_blink_closed_s"] <= 0.3
    assert sleepy["mean_blink_duration_s"] > 1.3 * alert["mean_blink_duration_s"]
    assert sleepy["perclos_p80"] > 2 * alert["perclos_p80"]
    assert 8 <= alert["blink_rate_per_min"] <= 30


def test_builtin_scenarios_produce_their_events():
    cfg = ClipsConfig(fps=FPS, duration_s=24)
    want = {"microsleep": "microsleep", "sleep": "sleep", "unresponsive": "unresponsive",
            "long_distraction": "long_distraction", "visual_time_sharing": "visual_time_sharing"}
    for scen, ev in want.items():
        for seed in range(3):
            kss, segs = scenario_segments(scen, cfg, np.random.default_rng(seed))
            frames, _ = synthesize(kss, segs, cfg.n_frames, FPS, np.random.default_rng(seed + 100))
            tl = temporal_labels_from_frames(frames, FPS)
            assert tl["summary"]["event_counts"][ev] >= 1, (scen, seed, tl["summary"]["event_counts"])
    for scen in ("alert", "non_alert_distractors"):
        for seed in range(3):
            kss, segs = scenario_segments(scen, cfg, np.random.default_rng(seed))
            frames, _ = synthesize(kss, segs, cfg.n_frames, FPS, np.random.default_rng(seed + 100))
            counts = temporal_labels_from_frames(frames, FPS)["summary"]["event_counts"]
            assert sum(counts.values()) == 0, (scen, seed, counts)  # must not trigger false alerts
    kss, segs = scenario_segments("tunnel_entry", cfg, np.random.default_rng(0))
    frames, _ = synthesize(kss, segs, cfg.n_frames, FPS, np.random.default_rng(1), "daylight", 20000)
    assert frames[0]["lighting"] == "daylight" and frames[-1]["lighting"] == "tunnel"
    assert frames[-1]["illuminance_lux"] <= 300 < frames[0]["illuminance_lux"]


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="unknown scenario 'nap'"):
        ClipsConfig(scenarios={"nap": 1})
    with pytest.raises(ValueError, match="longer than clips.duration_s"):
        ClipsConfig(duration_s=5, scenarios={"x": 1}, scripts={"x": Script(segments=[Segment(kind="drive", duration_s=6)])})
    with pytest.raises(ValueError, match="needs 'zone'"):
        Segment(kind="glance", duration_s=2)
    with pytest.raises(ValueError, match="microsleep is a closure < 3 s"):
        Segment(kind="microsleep", duration_s=3.5)
    with pytest.raises(ValueError, match="extra"):
        ClipsConfig(fsp=10)


def test_shard_round_trip_and_windows(tmp_path):
    cfg = ClipsConfig(fps=FPS, duration_s=3, format="png")
    plans = make_clip_plan(_spec(4), cfg)
    gen = ClipGenerator(None, cfg, frame_generator=IndexFrames())
    clips = gen.generate(plans)
    assert all(not c.quarantined for c in clips)
    c0 = clips[0]
    assert c0.frames[0].labels["temporal"]["state"] in ("alert", "drowsy")
    assert c0.frames[0].labels["eyes"]["left"]["state"] in ("open", "closing", "close", "opening")
    recs = []
    for name, batch in clip_shard_jobs(plans, 2):
        ids = {p["key"] for p in batch}
        recs.append(write_clip_shard(tmp_path, name, [c for c in clips if c.key in ids], fmt="png",
                                     planned_keys=sorted(ids)))
    assert sum(r["counts"]["accepted"] for r in recs) == 4
    got = {}
    for split in ("train", "val", "test"):
        try:
            for item in open_clip_shards(tmp_path, split):
                got[item["__key__"]] = item
        except FileNotFoundError:
            pass
    assert set(got) == {c.key for c in clips}
    for c in clips:
        item = got[c.key]
        assert item["frames"].shape == (30, 32, 32, 3)
        assert item["frames"][:, 0, 0, 0].tolist() == list(range(30))  # order survives
        assert item["json"]["labels"]["temporal"]["per_frame"]["state"] == c.temporal["per_frame"]["state"]
    split = clips[0].split
    wins = list(frame_windows(tmp_path, 8, 4, split=split))
    n_clips = sum(1 for c in clips if c.split == split)
    assert len(wins) == n_clips * 6  # starts 0,4,...,20
    w = wins[1]
    assert w["start"] == 4 and w["frames"].shape[0] == 8 and w["frames"][0, 0, 0, 0] == 4
    assert len(w["labels"]["per_frame"]["eye_state"]) == 8
    # deterministic bytes
    again = tmp_path / "again"
    name, batch = clip_shard_jobs(plans, 2)[0]
    ids = {p["key"] for p in batch}
    r2 = write_clip_shard(again, name, [c for c in ClipGenerator(None, cfg, frame_generator=IndexFrames()).generate(plans)
                                        if c.key in ids], fmt="png")
    assert r2["shard"]["sha256"] == recs[0]["shard"]["sha256"]


def test_failed_frames_quarantine_the_clip(tmp_path):
    class Broken(IndexFrames):
        def generate(self, plan):
            out = super().generate(plan)
            out[3].quarantine("render", "face left the image")
            return out

    cfg = ClipsConfig(fps=FPS, duration_s=2)
    plans = make_clip_plan(_spec(3), cfg)[:1]
    (c,) = ClipGenerator(None, cfg, frame_generator=Broken()).generate(plans)
    assert c.quarantined and "face left the image" in c.quarantine_reasons[0]
    rec = write_clip_shard(tmp_path, f"{c.split}-000000", [c])
    assert rec["shard"] is None and rec["quarantine"]["count"] == 1
    with pytest.raises(ValueError, match="shard name"):
        write_clip_shard(tmp_path, "bad", [c])


def test_real_renderer_clip():
    proc = pytest.importorskip("dmsfactory.generators.procedural")
    if not hasattr(proc, "ProceduralGenerator"):
        pytest.skip("procedural renderer not available yet")
    cfg = ClipsConfig(fps=5, duration_s=2, image_size=64, scenarios={"s": 1}, scripts={"s": Script(kss=8, segments=[
        Segment(kind="drive", duration_s=0.6), Segment(kind="microsleep", duration_s=1.0)])})
    plans = make_clip_plan(_spec(3), cfg, limit=1)
    (c,) = ClipGenerator(None, cfg).generate(plans)
    assert not c.quarantined, c.quarantine_reasons
    imgs = np.stack([f.image for f in c.frames]).astype(np.float32)
    assert imgs.shape == (10, 64, 64, 3)
    # the identity is fixed: frames differ far less from each other than from a black image
    assert np.abs(imgs - imgs[0]).mean() < 0.5 * imgs[0].mean()
    # closed-eye frames differ from open-eye frames (the eyelids move)
    st = c.temporal["per_frame"]["eye_state"]
    closed = [i for i, s in enumerate(st) if s == "close"]
    assert closed and any(s == "open" for s in st)
    i_open = st.index("open")
    assert np.abs(imgs[closed[len(closed) // 2]] - imgs[i_open]).max() > 20


def test_cli_run_renders_a_clip_spec_through_the_prefect_flow(tmp_path):
    """A clip spec renders through the Prefect flow into clip shards, with temporal labels and the card."""
    import subprocess
    import sys

    import yaml

    from dmsfactory.clips.shards import open_clip_shards
    from dmsfactory.datasets import load_manifest

    spec = yaml.safe_load(open("specs/clips-demo.yaml"))
    spec["identities"] = {"count": 6, "images_per_identity": 1}
    spec["clips"].update({"fps": 10, "duration_s": 3.0, "clips_per_identity": 1, "image_size": 64, "clips_per_shard": 2})
    spec["clips"]["scenarios"] = {"microsleep": 1, "long_distraction": 1}
    spec["clips"].pop("scripts", None)
    spec["privacy"] = {"enabled": False}
    p = tmp_path / "clips.yaml"
    p.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = load_manifest(out)
    assert m["clips"]["counts"]["clips"] + m["clips"]["counts"]["quarantined"] == 6
    clips = [c for split in ("train", "val", "test") for c in open_clip_shards(out, split)]
    assert clips and all(c["frames"].shape[0] == 30 for c in clips)
    assert {c["json"]["split"] for c in clips} <= {"train", "val", "test"}
    assert "Driver-state clips" in (out / "README.md").read_text()
    assert "Euro NCAP coverage" in (out / "README.md").read_text()


@pytest.mark.parametrize("n", [3, 6, 12])
def test_a_clip_preview_has_every_split_and_each_scenario_where_n_allows(n):
    """`--limit N` on the clips demo: every split has clips (a train-less preview broke open_shards)."""
    import yaml
    from collections import Counter

    spec = parse_spec(yaml.safe_load(open("specs/clips-demo.yaml")))
    full = {c["key"]: json.dumps(c, sort_keys=True) for c in make_clip_plan(spec)}
    plan = make_clip_plan(spec, limit=n)
    assert len(plan) == n and all(full[c["key"]] == json.dumps(c, sort_keys=True) for c in plan)
    assert set(Counter(c["split"] for c in plan)) == {"train", "val", "test"}
    assert len({c["scenario"] for c in plan}) == n  # 12 scenarios: every clip a different one
    assert len(make_clip_plan(spec, limit=2)) == 2 and "train" in {c["split"] for c in make_clip_plan(spec, limit=2)}
