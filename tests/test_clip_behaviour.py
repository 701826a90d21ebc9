"""Clip behaviour (issue 24): lid kinematics, fps-independent labels, KSS dependence, yawns, drivers.

Label-level only (no pixels): the behaviour model is sampled and labelled, nothing is rendered.
"""

import json

import numpy as np
import pytest

from dmsfactory.clips import ClipGenerator, ClipsConfig, Script, Segment, make_clip_plan
from dmsfactory.clips.behaviour import scenario_segments, simulate
from dmsfactory.clips.drivers import REFERENCE, DriverTraits, driver_traits, sleepiness
from dmsfactory.clips.kinematics import Closure, closures_from_events, rise_fall_times
from dmsfactory.labelers.temporal import temporal_labels_from_frames
from dmsfactory.sample import FaceSample
from dmsfactory.spec import parse_spec


def _drive(seconds=60.0):
    return [{"kind": "drive", "duration_s": seconds, "start_s": 0.0}]


def _label(model, fps):
    n = int(round(model.duration_s * fps))
    frames = model.frames(n, fps)
    return frames, temporal_labels_from_frames(frames, fps, events=model.events)


@pytest.mark.parametrize("fps", [30.0, 60.0])
def test_scripted_blink_has_the_specified_phase_durations(fps):
    cfg = ClipsConfig(fps=fps, duration_s=3, scenarios={"b": 1}, scripts={"b": Script(kss=3, segments=[
        Segment(kind="drive", duration_s=1.0),
        Segment(kind="blink", duration_s=1.0, closing_s=0.09, closed_s=0.12, reopening_s=0.21)])})
    kss, segs = scenario_segments("b", cfg, np.random.default_rng(0))
    m = simulate(kss, segs, cfg.duration_s, np.random.default_rng(1))
    frames, tl = _label(m, fps)
    (ep,) = [b for b in tl["blinks"] if b["lid_kind"] == "scripted_blink"]
    # the record is exact, the frames show each phase for its duration to within one frame
    assert (ep["closing_s"], ep["closed_s"], ep["opening_s"]) == pytest.approx((0.09, 0.12, 0.21))
    st = np.array(tl["per_frame"]["eye_state"])
    ids = np.array(tl["per_frame"]["blink_id"])
    mine = st[ids == ep["id"]]
    for state, want in (("closing", 0.09), ("close", 0.12), ("opening", 0.21)):
        assert abs((mine == state).sum() / fps - want) <= 1.0 / fps + 1e-9, (state, (mine == state).sum())
    # phases come in order, and the lid is at its floor while "close"
    order = [s for i, s in enumerate(mine) if i == 0 or s != mine[i - 1]]
    assert order == ["closing", "close", "opening"]
    o = np.array(tl["per_frame"]["eye_openness"])
    assert o[(ids == ep["id"]) & (st == "close")].max() <= 0.08
    assert ep["onset_s"] == pytest.approx(1.0)


def test_labels_agree_across_frame_rates():
    cfg = ClipsConfig(duration_s=24, scenarios={"s": 1}, scripts={"s": Script(kss=9, segments=[
        Segment(kind="drive", duration_s=3), Segment(kind="microsleep", duration_s=2.0), Segment(kind="drive", duration_s=3),
        Segment(kind="glance", duration_s=3.6, zone="infotainment", movement="lizard"), Segment(kind="drive", duration_s=2),
        Segment(kind="yawn", duration_s=6.2), Segment(kind="drive", duration_s=4)])})
    kss, segs = scenario_segments("s", cfg, np.random.default_rng(5))
    model = simulate(kss, segs, cfg.duration_s, np.random.default_rng(6), driver_traits("fps-test"))
    out = {fps: _label(model, fps)[1] for fps in (10.0, 30.0, 60.0)}
    ref = out[60.0]
    assert ref["summary"]["event_counts"]["microsleep"] >= 1 and ref["summary"]["event_counts"]["long_distraction"] == 1
    for fps, tl in out.items():
        frame = 1.0 / fps
        assert tl["summary"]["event_counts"] == ref["summary"]["event_counts"], fps
        assert len(tl["blinks"]) == len(ref["blinks"]) and tl["summary"]["blink_count"] == ref["summary"]["blink_count"]
        for a, b in zip(tl["blinks"], ref["blinks"]):
            assert a["kind"] == b["kind"] and a["duration_s"] == b["duration_s"]
            # what the frames show: the episode's frames span its duration to within a frame
            n = sum(a["frames"].values())
            assert abs(n / fps - a["duration_s"]) <= frame + 1e-9
        ev = sorted((e["type"], e["duration_s"]) for e in tl["events"])
        ev_ref = sorted((e["type"], e["duration_s"]) for e in ref["events"])
        assert [t for t, _ in ev] == [t for t, _ in ev_ref]
        for (_, d), (_, d_ref) in zip(ev, ev_ref):
            assert abs(d - d_ref) <= frame + 1e-9


def test_clip_plans_at_other_frame_rates_are_the_same_clip():
    spec = parse_spec({"name": "fps", "seed": 3, "classes": {"alert": 1}, "identities": {"count": 4, "images_per_identity": 1}})
    plans = {fps: make_clip_plan(spec, ClipsConfig(fps=fps, duration_s=6)) for fps in (10.0, 30.0, 60.0)}
    for a, b in zip(plans[10.0], plans[60.0]):
        assert json.dumps(a["events"], sort_keys=True) == json.dumps(b["events"], sort_keys=True)
        assert a["behaviour"] == b["behaviour"]
        # frame 3 at 10 fps is frame 18 at 60 fps: the same instant, the same state
        assert a["frames"][3]["state"] == b["frames"][18]["state"]
        assert a["frames"][3]["head_pose_car"] == b["frames"][18]["head_pose_car"]


def test_no_closing_or_opening_without_a_closure():
    cfg = ClipsConfig(duration_s=30)
    seen = set()
    for scen in ("alert", "drowsy", "yawning", "non_alert_distractors", "phone", "microsleep"):
        for seed in range(2):
            drv = driver_traits("no-closing", scen, seed)
            kss, segs = scenario_segments(scen, cfg, np.random.default_rng(seed), drv)
            model = simulate(kss, segs, cfg.duration_s, np.random.default_rng(seed + 50), drv)
            frames, tl = _label(model, 30.0)
            closures = closures_from_events(model.events)
            t = np.arange(len(frames)) / 30.0
            for key, eye in (("eye_state", "both"), ("eye_state_left", "left"), ("eye_state_right", "right")):
                st = np.array(tl["per_frame"][key])
                inside = np.zeros(len(frames), bool)
                for c in closures:
                    if (c.eyes == "both") if eye == "both" else c.covers(eye):
                        inside |= (t >= c.onset_s) & (t < c.end_s)
                moving = np.isin(st, ["closing", "close", "opening"])
                assert not (moving & ~inside).any(), (scen, seed, key)
                assert (st[inside] != "open").all()
                seen |= set(st.tolist())
            # and nothing closes an eye (P80) outside a recorded closure of that eye
            for side in ("left", "right"):
                o = np.array([f["state"][f"eye_openness_{side}"] for f in frames])
                cov = np.zeros(len(frames), bool)
                for c in closures:
                    if c.covers(side):
                        cov |= (t >= c.onset_s) & (t <= c.end_s)
                assert not ((o <= 0.2) & ~cov).any(), (scen, seed, side)
    assert {"closing", "close", "opening", "open"} <= seen


def test_blink_duration_rises_with_kss_for_each_seeded_driver():
    for i in range(5):
        drv = driver_traits("kss-monotone", i)
        means, halves = [], []
        for kss in range(5, 10):
            model = simulate(kss, _drive(60.0), 60.0, np.random.default_rng(100 + i), drv)
            _, tl = _label(model, 30.0)
            means.append(tl["summary"]["mean_blink_duration_s"])
            halves.append(np.mean([b["half_amplitude_s"] for b in tl["blinks"] if b["kind"] == "blink"]))
        assert all(b > a for a, b in zip(means, means[1:])), (i, means)
        assert all(b > a for a, b in zip(halves, halves[1:])), (i, halves)
    # the driver's parameters shift monotonically too
    drv = driver_traits("kss-monotone", 0)
    eff = [drv.at_kss(k) for k in range(5, 10)]
    for key in ("closing_s", "closed_s", "reopening_s", "long_blink_share"):
        assert all(b[key] > a[key] for a, b in zip(eff, eff[1:])), key
    assert [sleepiness(k) for k in (1, 5)] == [0.0, 0.0] and sleepiness(9) == 1.0


def test_alert_blinks_and_kss9_perclos_meet_the_reference():
    durations, closing_shorter, rates = [], [], []
    for i in range(15):
        model = simulate(3, _drive(60.0), 60.0, np.random.default_rng(i), driver_traits("alert-ref", i))
        _, tl = _label(model, 30.0)
        bl = [b for b in tl["blinks"] if b["kind"] == "blink" and b["complete"]]
        durations += [b["duration_s"] for b in bl]
        closing_shorter += [b["closing_s"] < b["opening_s"] for b in bl]
        rates.append(tl["summary"]["blink_rate_per_min"])
    lo, hi = REFERENCE["alert_blink_duration_median_s"]
    assert lo <= np.median(durations) <= hi
    assert np.mean(np.array(durations) >= 0.5) < REFERENCE["alert_long_blink_share_max"]
    assert np.mean(closing_shorter) >= REFERENCE["closing_shorter_share_min"]
    assert 8 <= np.median(rates) <= 21
    perclos = []
    for i in range(15):
        model = simulate(9, _drive(60.0), 60.0, np.random.default_rng(i), driver_traits("kss9-ref", i))
        perclos.append(_label(model, 30.0)[1]["summary"]["perclos_p80"])
    assert np.median(perclos) > ClipsConfig().temporal.perclos_drowsy


def test_yawn_opens_slower_than_it_closes():
    cfg = ClipsConfig(duration_s=12, scenarios={"y": 1}, scripts={"y": Script(kss=6, segments=[
        Segment(kind="drive", duration_s=2), Segment(kind="yawn", duration_s=6.3), Segment(kind="drive", duration_s=3)])})
    kss, segs = scenario_segments("y", cfg, np.random.default_rng(0))
    model = simulate(kss, segs, cfg.duration_s, np.random.default_rng(2))
    frames, _ = _label(model, 30.0)
    (ev,) = [e for e in model.events if e["type"] == "yawn"]
    assert ev["end_s"] - ev["start_s"] == pytest.approx(6.3, abs=1e-3)
    assert ev["opening_s"] > ev["closing_s"] and ev["peak_s"] < ev["closing_s"]
    t = np.arange(len(frames)) / 30.0
    mouth = np.array([f["state"]["mouth_open"] for f in frames])
    rise, fall = rise_fall_times(t, mouth - mouth[0])
    assert rise > 1.3 * fall, (rise, fall)
    lab = [f["state"]["yawn"] for f in frames]
    assert lab.count("yawning_without_hand") > 60 and lab[0] == "none" and lab[-1] == "none"
    # built-in yawns last about 6-6.5 s
    cfgb = ClipsConfig(duration_s=20)
    ds = []
    for seed in range(30):
        _, sg = scenario_segments("yawning", cfgb, np.random.default_rng(seed), driver_traits("yawn", seed))
        ds += [s["duration_s"] for s in sg if s["kind"] == "yawn"]
    assert 6.0 <= np.median(ds) <= 6.5


def test_each_yawn_draws_its_lips_on_its_own_stream(monkeypatch):
    """Behaviour 2.1.0 / renderer 0.10.0: every yawn of a clip draws how far its upper lip rises and its
    lips stretch (``state.yawn_lips`` on its yawning frames, the renderer's weights times the opening),
    on a stream of their own: with other ranges, every other field of every frame is unchanged."""
    from dmsfactory.clips.drivers import YAWN

    cfg = ClipsConfig(duration_s=16, scenarios={"y": 1}, scripts={"y": Script(kss=6, segments=[
        Segment(kind="drive", duration_s=2), Segment(kind="yawn", duration_s=6.0), Segment(kind="drive", duration_s=1),
        Segment(kind="yawn", duration_s=6.0), Segment(kind="drive", duration_s=1)])})
    kss, segs = scenario_segments("y", cfg, np.random.default_rng(0))
    frames = simulate(kss, segs, cfg.duration_s, np.random.default_rng(2)).frames(16 * 10, 10.0)
    lips = {tuple(f["state"]["yawn_lips"].values()) for f in frames if f["state"]["yawn"] != "none"}
    assert len(lips) == 2  # one draw per yawn, constant over it
    for up, st in lips:
        assert 0.35 <= up <= 1.0 and 0.55 <= st <= 0.9
    assert all(f["state"]["yawn_lips"] is None for f in frames if f["state"]["yawn"] == "none")
    monkeypatch.setitem(YAWN, "upper_lip_raise", (0.2, 0.2))
    monkeypatch.setitem(YAWN, "lip_stretch", (0.3, 0.3))
    other = simulate(kss, segs, cfg.duration_s, np.random.default_rng(2)).frames(16 * 10, 10.0)
    for a, b in zip(frames, other):
        if a["state"]["yawn"] != "none":
            assert b["state"]["yawn_lips"] == {"upper_lip_raise": 0.2, "lip_stretch": 0.3}
            a, b = {**a, "state": {**a["state"], "yawn_lips": None}}, {**b, "state": {**b["state"], "yawn_lips": None}}
        assert a == b


def test_drivers_are_per_identity_and_recorded():
    spec = parse_spec({"name": "drivers", "seed": 11, "classes": {"alert": 1},
                       "identities": {"count": 3, "images_per_identity": 1}})
    cfg = ClipsConfig(fps=10, duration_s=3, clips_per_identity=2)
    plans = make_clip_plan(spec, cfg)
    by_id: dict = {}
    for p in plans:
        b = p["behaviour"]
        assert b["version"] and set(b["driver"]) == set(DriverTraits.__dataclass_fields__)
        assert b["at_kss"]["kss"] == p["kss"]
        by_id.setdefault(p["identity"], []).append(json.dumps(b["driver"], sort_keys=True))
    assert all(len(set(v)) == 1 for v in by_id.values()) and len({v[0] for v in by_id.values()}) == 3
    assert plans[0]["behaviour"]["driver"] == driver_traits(plans[0]["identity_seed"]).to_dict()

    class Blank:
        def generate(self, plan):
            return [FaceSample(key=e["key"], index=e["index"], params=dict(e), image=np.zeros((8, 8, 3), np.uint8),
                               split=e["split"], identity=e["identity"]) for e in plan]

    (c,) = ClipGenerator(None, cfg, frame_generator=Blank()).generate(plans[:1])
    doc = c.to_json()
    assert doc["schema_version"] == "2.0.0" and doc["labels"]["behaviour"] == plans[0]["behaviour"]
    assert doc["labels"]["temporal"]["summary"]["source"] == "curves"


def test_closure_records_round_trip_and_bad_records_are_named():
    c = Closure(onset_s=1.0, closing_s=0.08, closed_s=0.05, reopening_s=0.15, floor=0.02, open_level=(0.9, 0.9))
    (back,) = closures_from_events([{"type": "blink", "lid": c.lid()}])
    assert back == c and back.end_s == pytest.approx(1.28)
    t = np.linspace(0.9, 1.4, 501)
    a = c.activation(t)
    assert a[0] == 0 and a[-1] == 0 and a.max() == 1.0 and np.all(np.diff(a[t < 1.08]) >= 0)
    with pytest.raises(ValueError, match=r"events\[0\].*closing_s"):
        closures_from_events([{"type": "blink", "lid": {"onset_s": 1.0}}])
    with pytest.raises(ValueError, match="floor"):
        Closure(onset_s=0, closing_s=0.1, closed_s=0, reopening_s=0.1, floor=0.3)
    with pytest.raises(ValueError, match="must fit"):
        Segment(kind="blink", duration_s=0.2, closing_s=0.1, closed_s=0.1, reopening_s=0.1)
    with pytest.raises(ValueError, match="only apply to kind 'blink'"):
        Segment(kind="drive", duration_s=2, closing_s=0.1)
    short = [{"kind": "blink", "duration_s": 0.1, "start_s": 0.5}]
    with pytest.raises(ValueError, match=r"blink.*longer than its duration_s 0.1"):
        simulate(9, short, 2.0, np.random.default_rng(0), driver_traits("short-blink"))


def test_behaviour_report_card_parts():
    from dmsfactory.clips.behaviour_report import behaviour_stats, card_parts, checks

    docs = []
    for kss in (3, 9):
        for i in range(3):
            model = simulate(kss, _drive(60.0), 60.0, np.random.default_rng(i), driver_traits("report", i))
            _, tl = _label(model, 30.0)
            docs.append({"params": {"scenario": "drive", "kss": kss, "events": model.events}, "labels": {"temporal": tl}})
    st = behaviour_stats(docs)
    assert st["by_kss"][3]["blinks"] > 20 and st["by_kss"][9]["perclos_60s"]["n"] == 3
    ck = checks(st)
    assert ck["alert_median_blink_duration_s"]["value"] == st["alert_kss_le_5"]["duration_s"]["median"]
    assert ck["mean_blink_duration_rises_kss_5_to_9"]["pass"] is None  # KSS 5-8 missing: not measurable
    md, files, data = card_parts(docs)
    assert "Behaviour against published measurements" in md and "| 9 | 3 |" in md
    (png,) = files.values()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and data["checks"] == ck
    assert card_parts([]) == ("", {}, {})
