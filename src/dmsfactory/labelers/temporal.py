"""Temporal ground truth for driver-state clips: reference implementations of the Euro NCAP measures.

Every function here is a pure function of per-frame ground truth (eyelid openness from the plan,
gaze zone from the plan) and the frame rate; nothing looks at pixels. The definitions, each with
its parameter in :class:`TemporalParams` (seconds, so they do not depend on the frame rate):

Eye closure
    A frame is *closed* when openness <= ``closed_openness`` (0.2: the eye is at least 80 % closed,
    the PERCLOS P80 criterion). Openness is 0 (closed) .. 1 (this subject's full aperture); the
    "eyes" signal of a frame is the mean of the two eyes. ``eyes_closed`` (PERCLOS, closure
    durations, unresponsive) is this sampled P80 criterion; the DMD eye state below is the lid's
    movement phase, so a frame can be ``closing`` with the eye already below 0.2.

Per-frame eye state (DMD set ``open, closing, close, opening``)
    From the clip's recorded eyelid closures (``closures``; the clips record every closure with its
    curve, :class:`dmsfactory.clips.kinematics.Closure`): a frame at time t = i / fps is ``closing``
    while a closure's lid is falling (onset .. onset + closing_s), ``close`` while it rests at its
    closed position (closed_s), ``opening`` while it rises back (reopening_s), else ``open``. The
    states are samples of continuous phases, so they do not depend on the frame rate beyond
    sampling; lid drift, narrowing in a yawn and other movements that are not closures never give
    ``closing``/``opening``. Per eye: the closures covering that eye (both-eye closures and one-eye
    closures such as a rubbed eye); the combined state: both-eye closures only.
    Without closure records (openness arrays only) the states are estimated from the samples:
    ``close`` on closed frames; the falling frames before a closed run, from the last local maximum,
    are ``closing`` and the rising frames after it, up to the next local maximum, ``opening`` -- but
    only frames at least ``min_lid_motion`` (0.05) below that maximum, and each step must exceed
    ``monotone_eps``: this minimum amplitude keeps drift out of the phases. A lid movement that never
    reaches the closed level (a partial blink) is ``open``: it is not a closure under P80.

Blinks / closures
    Each closure gets an id (0, 1, ...) and its durations. From closure records: ``closing_s``,
    ``closed_s`` (lid at its closed position), ``opening_s`` (reopening), ``duration_s`` (onset to
    fully reopened), ``half_amplitude_s`` (time past half the excursion; a *long blink* is > 0.15 s,
    Anund et al. 2017), and ``p80_closed_s``: the time the eye is at or below ``closed_openness``,
    from the curve with the recorded open level (``p80_start_s``/``p80_end_s``); ``frames`` counts the
    frames in each phase. From samples only: a run of n frames lasts n / fps seconds and
    ``closed_s = p80_closed_s``. Classified by p80_closed_s = c: ``blink`` if c <
    ``microsleep_min_s``, ``microsleep`` if microsleep_min_s <= c < ``sleep_min_s`` (Euro NCAP:
    closure < 3 s), ``sleep`` if c >= sleep_min_s (Euro NCAP: > 3 s; exactly 3 s counts as sleep).
    ``complete``: the closure starts and ends inside the clip (only complete blinks enter the rate
    and the mean durations).

PERCLOS P80
    Share of frames in the trailing ``perclos_window_s`` (60 s) window that are closed, including
    the current frame. Before a full window exists the share is over the frames so far and
    ``perclos_full_window`` is False.

Eyes off road
    A frame is off road when its gaze zone is not in ``on_road_zones`` (default: front and the three
    mirrors, :data:`dmsfactory.labelers.params.DRIVING_ZONES` -- mirror checks are driving glances) or
    the zone is ``not_valid``. A sweep of the gaze across an on-road zone (a mirror passed on the way
    from the road to the right window) is not a fixation: an on-road run shorter than
    ``min_fixation_s`` (0.3 s) between two off-road frames counts as off road, so it does not split
    the glance. ``off_road_run_s`` is the length of the current off-road glance so far.

Long distraction
    An off-road glance of >= ``long_distraction_s`` (3 s). Causal flag: true from the frame at which
    the glance has lasted 3 s.

Visual time-sharing (VATS)
    Accumulated off-road time in the trailing ``vats_window_s`` (30 s) window, counting only frames
    after the last reset; a reset happens when the driver has been back on the road continuously for
    ``vats_reset_s`` (2 s). VATS is flagged while the accumulator is >= ``vats_threshold_s`` (10 s).

Unresponsive driver
    A continuous run of frames that are off road *or* closed lasting >= ``unresponsive_s`` (6 s).

Overall state per frame (causal: what a DMS should report at that moment), first match wins:
    ``unresponsive``; ``sleep`` (current closure >= 3 s); ``microsleep`` (current closure >=
    microsleep_min_s; "current closure" = closed time up to the end of this frame's 1/fps interval:
    a run of n closed frames, or with closure records min(t + 1/fps, p80_end) - p80_start, on
    closed frames); ``long_distraction``; ``visual_time_sharing``; ``drowsy`` (PERCLOS >=
    ``perclos_drowsy`` over a window of at least ``perclos_min_window_s``); ``alert``.
The Euro NCAP category of each state is in :data:`EURO_NCAP_CATEGORY`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from dmsfactory.clips.kinematics import Closure, closures_from_events, inverse_smoothstep5
from dmsfactory.labelers.params import DRIVING_ZONES

GAZE_ZONES = (
    "left_mirror",
    "left",
    "front",
    "center_mirror",
    "front_right",
    "right_mirror",
    "right",
    "infotainment",
    "steering_wheel",
    "not_valid",
)
# one definition of driving-related zones for single images and clips
ON_ROAD_ZONES: tuple[str, ...] = tuple(DRIVING_ZONES)

EYE_STATES = ("open", "closing", "close", "opening")
LONG_BLINK_HALF_AMPLITUDE_S = 0.15  # "long blink": > 0.15 s at half amplitude (Anund et al. 2017)
STATES = (
    "alert",
    "drowsy",
    "microsleep",
    "sleep",
    "long_distraction",
    "visual_time_sharing",
    "unresponsive",
)
EURO_NCAP_CATEGORY = {
    "alert": "none",
    "drowsy": "fatigue",
    "microsleep": "fatigue",
    "sleep": "fatigue",
    "long_distraction": "distraction",
    "visual_time_sharing": "distraction",
    "unresponsive": "unresponsive_driver",
}


@dataclass(frozen=True)
class TemporalParams:
    closed_openness: float = 0.2
    monotone_eps: float = 1e-3
    min_lid_motion: float = 0.05
    microsleep_min_s: float = 1.0
    sleep_min_s: float = 3.0
    perclos_window_s: float = 60.0
    perclos_min_window_s: float = 10.0
    perclos_drowsy: float = 0.15
    long_distraction_s: float = 3.0
    vats_window_s: float = 30.0
    vats_threshold_s: float = 10.0
    vats_reset_s: float | None = 2.0
    unresponsive_s: float = 6.0
    min_fixation_s: float = 0.3
    on_road_zones: tuple[str, ...] = ON_ROAD_ZONES

    def __post_init__(self) -> None:
        if not 0 < self.closed_openness < 1:
            raise ValueError(f"closed_openness must be in (0, 1) (got {self.closed_openness})")
        for name in ("microsleep_min_s", "sleep_min_s", "perclos_window_s", "long_distraction_s",
                     "vats_window_s", "vats_threshold_s", "unresponsive_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.microsleep_min_s >= self.sleep_min_s:
            raise ValueError("microsleep_min_s must be < sleep_min_s")
        bad = [z for z in self.on_road_zones if z not in GAZE_ZONES]
        if bad:
            raise ValueError(f"on_road_zones: unknown gaze zone(s) {bad}; allowed: {', '.join(GAZE_ZONES)}")


def _frames(seconds: float, fps: float) -> int:
    """Number of frames a duration needs: the smallest n with n / fps >= seconds (tolerant to float error)."""
    return max(1, math.ceil(seconds * fps - 1e-9))


def _check_fps(fps: float) -> float:
    if not (isinstance(fps, (int, float)) and fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number (got {fps!r})")
    return float(fps)


def _as_openness(openness: Sequence[float] | np.ndarray, name: str = "openness") -> np.ndarray:
    o = np.asarray(openness, dtype=np.float64)
    if o.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of per-frame values (got shape {o.shape})")
    if o.size and (not np.all(np.isfinite(o)) or o.min() < 0 or o.max() > 1):
        raise ValueError(f"{name} values must lie in [0, 1] (got min {o.min():.3g}, max {o.max():.3g})")
    return o


def runs(mask: Sequence[bool] | np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, end_exclusive)."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        return []
    d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def current_run_frames(mask: Sequence[bool] | np.ndarray) -> np.ndarray:
    """Per frame: length (frames, this one included) of the True run ending here; 0 on False frames."""
    m = np.asarray(mask, dtype=bool)
    out = np.zeros(m.size, dtype=np.int64)
    c = 0
    for i, v in enumerate(m):
        c = c + 1 if v else 0
        out[i] = c
    return out


def _closure_class(closed_s: float, params: TemporalParams) -> str:
    return ("sleep" if closed_s >= params.sleep_min_s - 1e-9
            else "microsleep" if closed_s >= params.microsleep_min_s - 1e-9
            else "blink")


def _frame_eye_states(o: np.ndarray, fps: float, params: TemporalParams):
    """Eye states from sampled openness alone (no closure records): see the module doc."""
    n = o.size
    closed = o <= params.closed_openness
    states = np.array(["open"] * n, dtype=object)
    blink_id = np.full(n, -1, dtype=np.int64)
    episodes: list[dict[str, Any]] = []
    eps = params.monotone_eps
    amp = params.min_lid_motion
    prev_end = 0
    for s, e in runs(closed):
        a = s  # walk back over the falling frames to the local maximum before the closure
        while a - 1 >= max(prev_end, 1) and not closed[a - 1] and o[a - 2] - o[a - 1] > eps:
            a -= 1
        top = o[a - 1] if a >= 1 else o[s]
        while a < s and o[a] > top - amp:  # frames still within min_lid_motion of the open level are open
            a += 1
        b = e  # walk forward over the rising frames to the next local maximum
        while b < n and o[b] - o[b - 1] > eps and not closed[b]:
            b += 1
        top2 = o[b - 1]  # the local maximum after the closure
        while b > e and o[b - 1] > top2 - amp:
            b -= 1
        states[a:s] = "closing"
        states[s:e] = "close"
        states[e:b] = "opening"
        k = len(episodes)
        blink_id[a:b] = k
        closed_s = (e - s) / fps
        episodes.append({
            "id": k,
            "start": a,
            "close_start": s,
            "close_end": e,  # exclusive
            "end": b,  # exclusive
            "closing_s": (s - a) / fps,
            "closed_s": closed_s,
            "opening_s": (b - e) / fps,
            "duration_s": (b - a) / fps,
            "p80_closed_s": closed_s,
            "half_amplitude_s": None,
            "kind": _closure_class(closed_s, params),
            "complete": s > 0 and e < n,  # the closure starts and ends inside the clip
            "source": "frames",
        })
        prev_end = b
    return [str(x) for x in states], blink_id, episodes


def p80_interval(c: Closure, open_level: Sequence[float] | None, thr: float) -> tuple[float, float] | None:
    """Times at which closure ``c`` takes an eye at ``open_level`` (at onset, at the end) to <= ``thr`` and back.

    Computed from the lid curve (kinematics.Closure) with the open level held at its recorded values
    (closing: the level at onset; reopening: the level at the end)."""
    if c.floor > thr:
        return None
    b0, b1 = (float(open_level[0]), float(open_level[1])) if open_level else (1.0, 1.0)
    if b0 <= thr:
        start = c.onset_s
    else:
        start = c.onset_s + c.closing_s * inverse_smoothstep5((b0 - thr) / (b0 - c.floor))
    if b1 <= thr:
        end = c.end_s
    else:
        a = (b1 - thr) / (b1 - c.floor)
        end = c.closed_end_s + c.reopening_s * inverse_smoothstep5(1.0 - a) ** (1.0 / c.reopen_gamma)
    return start, end


def _curve_eye_states(n: int, fps: float, params: TemporalParams, closures: Sequence[Closure], eye: str):
    """Eye states as the phases of the recorded closures at the frame times (see the module doc)."""
    t = np.arange(n) / fps
    clip_end = n / fps
    states = np.array(["open"] * n, dtype=object)
    blink_id = np.full(n, -1, dtype=np.int64)
    episodes: list[dict[str, Any]] = []
    names = np.array(["open", "closing", "close", "opening"], dtype=object)
    mine = [c for c in closures if (c.eyes == "both" if eye == "both" else c.covers(eye))]
    for c in mine:
        if c.end_s <= 0 or c.onset_s >= clip_end:
            continue
        ph = c.phase(t)
        m = ph > 0
        k = len(episodes)
        states[m] = names[ph[m]]
        blink_id[m] = k
        idx = np.flatnonzero(m)
        iv = p80_interval(c, c.open_level, params.closed_openness)
        p80 = (iv[1] - iv[0]) if iv else 0.0
        first = int(np.searchsorted(t, c.onset_s - 1e-12))
        episodes.append({
            "id": k,
            "start": int(idx[0]) if idx.size else first,
            "close_start": int(np.searchsorted(t, c.closed_start_s - 1e-12)),
            "close_end": int(np.searchsorted(t, c.closed_end_s - 1e-12)),  # exclusive
            "end": int(idx[-1]) + 1 if idx.size else first,  # exclusive
            "onset_s": c.onset_s,
            "end_s": c.end_s,
            "closing_s": c.closing_s,
            "closed_s": c.closed_s,
            "opening_s": c.reopening_s,
            "duration_s": c.duration_s,
            "half_amplitude_s": c.half_amplitude_s,
            "p80_start_s": iv[0] if iv else None,
            "p80_end_s": iv[1] if iv else None,
            "p80_closed_s": p80,
            "frames": {"closing": int((ph == 1).sum()), "close": int((ph == 2).sum()), "opening": int((ph == 3).sum())},
            "kind": _closure_class(p80, params),
            "lid_kind": c.kind,
            "eyes": c.eyes,
            "complete": c.onset_s >= 0 and c.end_s <= clip_end,
            "source": "curves",
        })
    return [str(x) for x in states], blink_id, episodes


def eye_states(openness, fps: float, params: TemporalParams = TemporalParams(),
               closures: Sequence[Closure] | None = None, eye: str = "both"):
    """Per-frame DMD eye state, blink id (-1 outside an episode) and the list of closure episodes.

    With ``closures`` (the clip's recorded lid closures) the states are the closures' phases at the
    frame times; without, they are estimated from the sampled openness (module doc)."""
    fps = _check_fps(fps)
    o = _as_openness(openness)
    if closures is None:
        return _frame_eye_states(o, fps, params)
    return _curve_eye_states(o.size, fps, params, closures, eye)


def perclos(openness, fps: float, params: TemporalParams = TemporalParams()):
    """Trailing-window PERCLOS P80 per frame and whether the window was full."""
    fps = _check_fps(fps)
    o = _as_openness(openness)
    closed = (o <= params.closed_openness).astype(np.int64)
    w = _frames(params.perclos_window_s, fps)
    cs = np.concatenate([[0], np.cumsum(closed)])
    idx = np.arange(o.size)
    lo = np.maximum(idx + 1 - w, 0)
    count = idx + 1 - lo
    p = (cs[idx + 1] - cs[lo]) / np.maximum(count, 1)
    return p, count >= w, count / fps


def off_road_mask(zones: Sequence[str], params: TemporalParams = TemporalParams(), fps: float | None = None) -> np.ndarray:
    """Per-frame off-road flag; with ``fps``, on-road runs shorter than min_fixation_s between off-road frames are bridged."""
    bad = sorted({z for z in zones if z not in GAZE_ZONES})
    if bad:
        raise ValueError(f"gaze_zone: unknown value(s) {bad}; allowed: {', '.join(GAZE_ZONES)}")
    on = set(params.on_road_zones)
    off = np.array([z not in on for z in zones], dtype=bool)
    if fps is not None and params.min_fixation_s > 0:
        for s, e in runs(~off):
            if s > 0 and e < off.size and (e - s) / fps < params.min_fixation_s - 1e-9:
                off[s:e] = True
    return off


def vats_accumulator(off_road, fps: float, params: TemporalParams = TemporalParams()) -> np.ndarray:
    """Off-road seconds in the trailing VATS window since the last reset (>= vats_reset_s on road)."""
    fps = _check_fps(fps)
    off = np.asarray(off_road, dtype=bool)
    w = _frames(params.vats_window_s, fps)
    reset_n = _frames(params.vats_reset_s, fps) if params.vats_reset_s else None
    cs = np.concatenate([[0], np.cumsum(off.astype(np.int64))])
    acc = np.zeros(off.size)
    on_run = 0
    first = 0  # first frame that counts (after the last reset)
    for t in range(off.size):
        on_run = 0 if off[t] else on_run + 1
        if reset_n is not None and on_run >= reset_n:
            first = t + 1
        lo = max(t + 1 - w, first)
        acc[t] = (cs[t + 1] - cs[lo]) / fps if lo <= t else 0.0
    return acc


def _events_from_runs(name: str, mask: np.ndarray, min_frames: int, fps: float, **extra) -> list[dict]:
    ev = []
    for s, e in runs(mask):
        if e - s >= min_frames:
            ev.append({"type": name, "start": s, "end": e, "onset": s + min_frames - 1,
                       "duration_s": (e - s) / fps, **extra})
    return ev


def temporal_labels(
    openness_left,
    openness_right,
    gaze_zones: Sequence[str],
    fps: float,
    params: TemporalParams = TemporalParams(),
    closures: Sequence[Closure] | None = None,
) -> dict[str, Any]:
    """All temporal labels of one clip: ``per_frame`` lists, ``events``, ``blinks`` and ``summary``.

    ``closures``: the clip's recorded eyelid closures (:func:`closures_from_events`); without them the
    eye states and closure episodes are estimated from the sampled openness (module doc)."""
    fps = _check_fps(fps)
    ol = _as_openness(openness_left, "eye_openness_left")
    orr = _as_openness(openness_right, "eye_openness_right")
    zones = list(gaze_zones)
    if not (ol.size == orr.size == len(zones)):
        raise ValueError(
            f"per-frame inputs differ in length: eye_openness_left {ol.size}, eye_openness_right {orr.size}, "
            f"gaze_zone {len(zones)}"
        )
    n = ol.size
    t = np.arange(n) / fps
    eyes = (ol + orr) / 2
    closed = eyes <= params.closed_openness
    if closures is not None:
        closures = sorted(closures, key=lambda c: (c.onset_s, c.eyes))
        for c in closures:
            if not isinstance(c, Closure):
                raise TypeError(f"closures must be kinematics.Closure objects (got {type(c).__name__})")
    st_l, _, _ = eye_states(ol, fps, params, closures, "left")
    st_r, _, _ = eye_states(orr, fps, params, closures, "right")
    st, blink_id, episodes = eye_states(eyes, fps, params, closures, "both")
    pc, pc_full, pc_span = perclos(eyes, fps, params)
    off = off_road_mask(zones, params, fps)
    off_run = current_run_frames(off)
    closed_run = current_run_frames(closed)
    away_run = current_run_frames(off | closed)
    acc = vats_accumulator(off, fps, params)

    ld_n = _frames(params.long_distraction_s, fps)
    sl_n = _frames(params.sleep_min_s, fps)
    ms_n = _frames(params.microsleep_min_s, fps)
    un_n = _frames(params.unresponsive_s, fps)
    # time the eyes have been closed by the end of each frame's interval
    if closures is None:
        closed_for = closed_run / fps
    else:
        closed_for = np.zeros(n)
        for ep in episodes:
            if ep["p80_start_s"] is None:
                continue
            m = (t >= ep["p80_start_s"] - 1e-9) & (t <= ep["p80_end_s"] + 1e-9) & closed  # sampled frames decide
            closed_for[m] = np.minimum(t[m] + 1.0 / fps, ep["p80_end_s"]) - ep["p80_start_s"]
    long_dist = off_run >= ld_n
    vats = acc >= params.vats_threshold_s - 1e-9
    unresp = away_run >= un_n
    drowsy = (pc_span >= params.perclos_min_window_s - 1e-9) & (pc >= params.perclos_drowsy)
    state = []
    for i in range(n):
        if unresp[i]:
            s = "unresponsive"
        elif closed_for[i] >= params.sleep_min_s - 1e-9:
            s = "sleep"
        elif closed_for[i] >= params.microsleep_min_s - 1e-9:
            s = "microsleep"
        elif long_dist[i]:
            s = "long_distraction"
        elif vats[i]:
            s = "visual_time_sharing"
        elif drowsy[i]:
            s = "drowsy"
        else:
            s = "alert"
        state.append(s)

    events: list[dict[str, Any]] = []
    for ep in episodes:
        if ep["kind"] not in ("microsleep", "sleep"):
            continue
        min_s = params.microsleep_min_s if ep["kind"] == "microsleep" else params.sleep_min_s
        if ep["source"] == "frames":
            n_min = ms_n if ep["kind"] == "microsleep" else sl_n
            s0, e0, onset = ep["close_start"], ep["close_end"], ep["close_start"] + n_min - 1
        else:
            inside = np.flatnonzero((t >= ep["p80_start_s"] - 1e-9) & (t <= ep["p80_end_s"] + 1e-9))
            if not inside.size:
                continue
            s0, e0 = int(inside[0]), int(inside[-1]) + 1
            reached = np.flatnonzero(closed_for[s0:e0] >= min_s - 1e-9)
            onset = s0 + int(reached[0]) if reached.size else e0 - 1
        events.append({"type": ep["kind"], "start": s0, "end": e0, "onset": onset, "duration_s": ep["p80_closed_s"],
                       "blink_id": ep["id"], "complete": ep["complete"]})
    events += _events_from_runs("long_distraction", off, ld_n, fps)
    events += _events_from_runs("visual_time_sharing", vats, 1, fps)
    events += _events_from_runs("unresponsive", off | closed, un_n, fps)
    for ev in events:
        if ev["type"] == "visual_time_sharing":  # onset = first frame the accumulator reached the threshold
            ev["onset"] = ev["start"]
    events.sort(key=lambda e: (e["start"], e["type"]))

    blinks = [e for e in episodes if e["kind"] == "blink"]
    complete_blinks = [e for e in blinks if e["complete"]]
    seconds = n / fps if n else 0.0

    def stat(key: str, fn=np.mean) -> float | None:
        v = [e[key] for e in complete_blinks if e.get(key) is not None]
        return float(fn(v)) if v else None

    half = [e["half_amplitude_s"] for e in complete_blinks if e.get("half_amplitude_s") is not None]
    summary = {
        "frames": n,
        "fps": fps,
        "duration_s": seconds,
        "source": "frames" if closures is None else "curves",
        "perclos_p80": float(closed.mean()) if n else 0.0,
        "perclos_p80_max_window": float(pc.max()) if n else 0.0,
        "blink_count": len(blinks),
        "blink_rate_per_min": (len(complete_blinks) * 60.0 / seconds) if seconds else 0.0,
        "mean_blink_duration_s": stat("duration_s"),
        "median_blink_duration_s": stat("duration_s", np.median),
        "mean_blink_closing_s": stat("closing_s"),
        "mean_blink_closed_s": stat("closed_s"),
        "mean_blink_opening_s": stat("opening_s"),
        "mean_blink_p80_closed_s": stat("p80_closed_s"),
        "blinks_0_5_s_or_longer": sum(1 for e in complete_blinks if e["duration_s"] >= 0.5 - 1e-9),
        "long_blink_share": (float(np.mean([h > LONG_BLINK_HALF_AMPLITUDE_S for h in half])) if half else None),
        "eyes_off_road_s": float(off.sum() / fps) if n else 0.0,
        "longest_off_road_s": float(off_run.max() / fps) if n else 0.0,
        "max_vats_accumulator_s": float(acc.max()) if n else 0.0,
        "event_counts": {k: sum(1 for e in events if e["type"] == k)
                         for k in ("microsleep", "sleep", "long_distraction", "visual_time_sharing", "unresponsive")},
        "states": sorted(set(state), key=STATES.index),
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
    }
    per_frame = {
        "eye_state": st,
        "eye_state_left": st_l,
        "eye_state_right": st_r,
        "eye_openness": [round(float(v), 5) for v in eyes],
        "eyes_closed": [bool(v) for v in closed],
        "blink_id": [int(v) for v in blink_id],
        "perclos_p80": [round(float(v), 5) for v in pc],
        "perclos_full_window": [bool(v) for v in pc_full],
        "on_road": [bool(not v) for v in off],
        "off_road_run_s": [round(float(v) / fps, 5) for v in off_run],
        "vats_accumulator_s": [round(float(v), 5) for v in acc],
        "long_distraction": [bool(v) for v in long_dist],
        "visual_time_sharing": [bool(v) for v in vats],
        "unresponsive": [bool(v) for v in unresp],
        "state": state,
        "euro_ncap_category": [EURO_NCAP_CATEGORY[s] for s in state],
    }
    return {"per_frame": per_frame, "events": events, "blinks": episodes, "summary": summary}


def temporal_labels_from_frames(frames: Iterable[dict[str, Any]], fps: float,
                                params: TemporalParams = TemporalParams(),
                                events: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """:func:`temporal_labels` from a clip's per-frame plan entries (``state`` and ``gaze_zone``) and, when
    given, the clip's events (their eyelid closures make the eye labels exact: module doc)."""
    ol, orr, zones = [], [], []
    for i, f in enumerate(frames):
        try:
            ol.append(float(f["state"]["eye_openness_left"]))
            orr.append(float(f["state"]["eye_openness_right"]))
            zones.append(str(f["gaze_zone"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"frame {i}: plan entry lacks {e} (needs state.eye_openness_left/right and gaze_zone)") from None
    closures = closures_from_events(events) if events is not None else None
    return temporal_labels(ol, orr, zones, fps, params, closures)


def window_labels(temporal: dict[str, Any], start: int, length: int) -> dict[str, Any]:
    """The per-frame labels of frames [start, start+length) and the events overlapping that window."""
    pf = temporal["per_frame"]
    end = start + length
    out = {k: v[start:end] for k, v in pf.items()}
    ev = [e for e in temporal["events"] if e["start"] < end and e["end"] > start]
    return {"per_frame": out, "events": ev, "start": start, "length": length}
