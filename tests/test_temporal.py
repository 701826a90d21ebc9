"""Reference temporal measures on hand-made sequences whose answers are known."""

import numpy as np
import pytest

from dmsfactory.labelers.temporal import (
    TemporalParams,
    current_run_frames,
    eye_states,
    perclos,
    runs,
    temporal_labels,
    vats_accumulator,
)

FPS = 10.0


def test_runs_and_current_run():
    m = [0, 1, 1, 0, 1, 1, 1]
    assert runs(m) == [(1, 3), (4, 7)]
    assert current_run_frames(m).tolist() == [0, 1, 2, 0, 1, 2, 3]
    assert runs([]) == []


def test_blink_phases_and_durations():
    # from samples only: open 1.0, closing over 2 frames, closed 3 frames, opening over 2 frames; the
    # frame back at the open level is open (a frame's state is the lid's phase at that instant)
    o = [1, 1, 0.7, 0.4, 0.1, 0.05, 0.1, 0.5, 0.8, 1, 1]
    st, bid, eps = eye_states(o, FPS)
    assert st == ["open", "open", "closing", "closing", "close", "close", "close", "opening", "opening", "open", "open"]
    assert bid.tolist() == [-1, -1, 0, 0, 0, 0, 0, 0, 0, -1, -1]
    (e,) = eps
    assert e["closing_s"] == pytest.approx(0.2)
    assert e["closed_s"] == pytest.approx(0.3) and e["p80_closed_s"] == pytest.approx(0.3)
    assert e["opening_s"] == pytest.approx(0.2)
    assert e["kind"] == "blink" and e["complete"] and e["source"] == "frames"


def test_drift_is_not_closing_or_opening_from_samples():
    # a slow drift (0.006 per frame) before and after a closure: only frames at least min_lid_motion
    # (0.05) below the open level take part in the closure's phases, and drift alone never does
    drift = [0.9 - 0.006 * i for i in range(8)]  # 0.9 .. 0.858
    o = drift + [0.5, 0.1, 0.05, 0.1, 0.5] + [0.85 + 0.006 * i for i in range(8)]
    st, _, eps = eye_states(o, FPS)
    assert st[:8] == ["open"] * 8 and st[-7:] == ["open"] * 7
    assert st[8:13] == ["closing", "close", "close", "close", "opening"] and len(eps) == 1
    st2, _, eps2 = eye_states(drift + drift[::-1], FPS)
    assert set(st2) == {"open"} and eps2 == []


def test_partial_blink_is_not_a_closure():
    o = [1, 0.6, 0.3, 0.6, 1]  # never <= 0.2
    st, bid, eps = eye_states(o, FPS)
    assert set(st) == {"open"} and eps == [] and (bid == -1).all()


def test_closure_classes_at_boundaries():
    def closure(closed_frames):
        return [1.0] * 5 + [0.0] * closed_frames + [1.0] * 5

    assert eye_states(closure(9), FPS)[2][0]["kind"] == "blink"  # 0.9 s
    assert eye_states(closure(10), FPS)[2][0]["kind"] == "microsleep"  # 1.0 s
    assert eye_states(closure(29), FPS)[2][0]["kind"] == "microsleep"  # 2.9 s
    assert eye_states(closure(30), FPS)[2][0]["kind"] == "sleep"  # 3.0 s


def test_perclos_window():
    p = TemporalParams(perclos_window_s=1.0)  # 10 frames
    o = [1.0] * 10 + [0.1] * 5 + [1.0] * 10
    pc, full, span = perclos(o, FPS, p)
    assert pc[9] == 0 and not full[8] and full[9]
    assert pc[14] == pytest.approx(0.5)
    assert pc[19] == pytest.approx(0.5)  # frames 10..19: 5 closed
    assert pc[24] == 0
    # P80: 0.2 is closed, 0.21 is not
    assert perclos([0.2, 0.21], FPS)[0].tolist() == [1.0, 0.5]


def test_long_distraction_at_exactly_three_seconds():
    zones = ["front"] * 10 + ["infotainment"] * 29 + ["front"] * 10 + ["infotainment"] * 30 + ["front"] * 5
    n = len(zones)
    out = temporal_labels([1.0] * n, [1.0] * n, zones, FPS)
    ev = [e for e in out["events"] if e["type"] == "long_distraction"]
    assert len(ev) == 1 and ev[0]["start"] == 49 and ev[0]["duration_s"] == pytest.approx(3.0)
    ld = out["per_frame"]["long_distraction"]
    assert ld.index(True) == 49 + 29 and sum(ld) == 1
    assert out["per_frame"]["state"][78] == "long_distraction"
    # mirrors are driving glances, not distraction
    out2 = temporal_labels([1.0] * 50, [1.0] * 50, ["left_mirror"] * 50, FPS)
    assert not any(out2["per_frame"]["long_distraction"])


def test_vats_accumulates_and_resets():
    # 2.5 s away / 1.5 s back: accumulates 10 s off road after 4 glances (no reset: back < 2 s)
    seq = (["infotainment"] * 25 + ["front"] * 15) * 5
    off = np.array([z != "front" for z in seq])
    acc = vats_accumulator(off, FPS)
    first = int(np.argmax(acc >= 10.0 - 1e-9))
    assert first == 3 * 40 + 24  # 4th glance ends the 10th second
    # same pattern but 2 s back on road: every return resets, never reaches 10 s
    seq2 = (["infotainment"] * 25 + ["front"] * 20) * 5
    acc2 = vats_accumulator(np.array([z != "front" for z in seq2]), FPS)
    assert acc2.max() == pytest.approx(2.5)
    # without reset it would reach 10 s
    acc3 = vats_accumulator(np.array([z != "front" for z in seq2]), FPS, TemporalParams(vats_reset_s=None))
    assert acc3.max() >= 10.0
    out = temporal_labels([1.0] * len(seq), [1.0] * len(seq), seq, FPS)
    assert out["per_frame"]["state"][first] == "visual_time_sharing"
    assert out["summary"]["event_counts"]["long_distraction"] == 0


def test_vats_trailing_window_forgets_old_glances():
    p = TemporalParams(vats_window_s=5.0, vats_reset_s=None)
    off = np.array([True] * 20 + [False] * 40 + [True] * 10)
    acc = vats_accumulator(off, FPS, p)
    assert acc[19] == pytest.approx(2.0)
    assert acc[60 + 9] == pytest.approx(1.0)  # the first glance left the 5 s window


def test_microsleep_sleep_unresponsive_states():
    o = [1.0] * 10 + [0.0] * 20 + [1.0] * 10 + [0.0] * 70 + [1.0] * 5
    n = len(o)
    out = temporal_labels(o, o, ["front"] * n, FPS)
    types = [(e["type"], e["start"], e["end"]) for e in out["events"]]
    assert ("microsleep", 10, 30) in types and ("sleep", 40, 110) in types and ("unresponsive", 40, 110) in types
    s = out["per_frame"]["state"]
    assert s[15] == "alert" and s[19] == "microsleep"  # causal: 1.0 s into the closure
    assert s[40 + 29] == "sleep" and s[40 + 59] == "unresponsive"
    assert out["per_frame"]["euro_ncap_category"][40 + 59] == "unresponsive_driver"
    assert out["summary"]["perclos_p80"] == pytest.approx(90 / n)


def test_unresponsive_mixes_off_road_and_closed():
    zones = ["right"] * 40 + ["front"] * 30
    o = [1.0] * 40 + [0.0] * 25 + [1.0] * 5
    out = temporal_labels(o, o, zones, FPS)
    ev = [e for e in out["events"] if e["type"] == "unresponsive"]
    assert len(ev) == 1 and ev[0]["start"] == 0 and ev[0]["end"] == 65 and ev[0]["onset"] == 59


def test_drowsy_from_perclos_and_blink_summary():
    # 12 s, a 0.3 s closure each 1 s: PERCLOS 0.3 -> drowsy once the window spans 10 s
    one = [1.0] * 3 + [0.7, 0.1, 0.1, 0.1, 0.6] + [1.0] * 2
    o = one * 12
    out = temporal_labels(o, o, ["front"] * len(o), FPS)
    s = out["per_frame"]["state"]
    assert s[98] == "alert" and s[99] == "drowsy"
    sm = out["summary"]
    assert sm["blink_count"] == 12
    assert sm["mean_blink_closed_s"] == pytest.approx(0.3)
    assert sm["mean_blink_duration_s"] == pytest.approx(0.5)  # closing 0.1 + closed 0.3 + opening 0.1
    assert sm["blink_rate_per_min"] == pytest.approx(60.0)


def test_frame_rate_independent():
    # the same 3.2 s glance at 10 and 30 fps gives the same event duration
    for fps in (10.0, 30.0):
        n_off = int(round(3.2 * fps))
        zones = ["front"] * int(fps) + ["steering_wheel"] * n_off + ["front"] * int(fps)
        n = len(zones)
        ev = [e for e in temporal_labels([1.0] * n, [1.0] * n, zones, fps)["events"] if e["type"] == "long_distraction"]
        assert len(ev) == 1 and ev[0]["duration_s"] == pytest.approx(n_off / fps)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="eye_openness_right"):
        temporal_labels([1.0], [1.5], ["front"], FPS)
    with pytest.raises(ValueError, match="gaze_zone"):
        temporal_labels([1.0], [1.0], ["road"], FPS)
    with pytest.raises(ValueError, match="differ in length"):
        temporal_labels([1.0, 1.0], [1.0], ["front"], FPS)
    with pytest.raises(ValueError, match="fps"):
        temporal_labels([1.0], [1.0], ["front"], 0)
    with pytest.raises(ValueError, match="on_road_zones"):
        TemporalParams(on_road_zones=("road",))


def test_sweep_across_a_mirror_does_not_split_a_glance():
    # front -> passes right_mirror for 1 frame -> right for 30 frames -> back
    zones = ["front"] * 5 + ["front_right", "right_mirror"] + ["right"] * 28 + ["front"] * 5
    n = len(zones)
    out = temporal_labels([1.0] * n, [1.0] * n, zones, FPS)
    ev = [e for e in out["events"] if e["type"] == "long_distraction"]
    assert len(ev) == 1 and ev[0]["start"] == 5 and ev[0]["end"] == 35
    # a real mirror check (>= 0.3 s) does split it
    zones2 = ["front"] * 5 + ["right"] * 20 + ["right_mirror"] * 3 + ["right"] * 20 + ["front"] * 5
    out2 = temporal_labels([1.0] * len(zones2), [1.0] * len(zones2), zones2, FPS)
    assert out2["summary"]["event_counts"]["long_distraction"] == 0
