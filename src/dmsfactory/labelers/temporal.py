"""Temporal ground truth for driver-state clips: reference implementations of the Euro NCAP measures.

Every function here is a pure function of per-frame ground truth (eyelid openness from the plan,
gaze zone from the plan) and the frame rate; nothing looks at pixels. The definitions, each with
its parameter in :class:`TemporalParams` (seconds, so they do not depend on the frame rate):

Eye closure
    A frame is *closed* when openness <= ``closed_openness`` (0.2: the eye is at least 80 % closed,
    the PERCLOS P80 criterion). Openness is 0 (closed) .. 1 (this subject's full aperture); the
    "eyes" signal of a frame is the mean of the two eyes.

Per-frame eye state (DMD set ``open, closing, close, opening``)
    ``close`` on closed frames. Lid motion between frames i-1 and i is attributed to frame i: the
    frames before a closure run whose openness is lower than the previous frame's are ``closing``
    (the last local maximum itself stays ``open``), the frames after it whose openness is higher than
    the previous frame's are ``opening`` (up to and including the frame reaching the next local
    maximum); a change smaller than ``monotone_eps`` ends the phase. Everything else is ``open``.
    A lid movement that never reaches the closed level (a partial blink) is ``open``: it is not a
    closure under P80.

Blinks / closures
    Each closing+close+opening episode gets an id (0, 1, ...) and its durations: a run of n frames
    lasts n / fps seconds. Classified by the closed duration c: ``blink`` if c < ``microsleep_min_s``,
    ``microsleep`` if microsleep_min_s <= c < ``sleep_min_s`` (Euro NCAP: closure < 3 s), ``sleep``
    if c >= sleep_min_s (Euro NCAP: > 3 s; exactly 3 s counts as sleep here).

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
    microsleep_min_s); ``long_distraction``; ``visual_time_sharing``; ``drowsy`` (PERCLOS >=
    ``perclos_drowsy`` over a window of at least ``perclos_min_window_s``); ``alert``.
The Euro NCAP category of each state is in :data:`EURO_NCAP_CATEGORY`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

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


def eye_states(openness, fps: float, params: TemporalParams = TemporalParams()):
    """Per-frame DMD eye state, blink id (-1 outside an episode) and the list of closure episodes."""
    fps = _check_fps(fps)
    o = _as_openness(openness)
    n = o.size
    closed = o <= params.closed_openness
    states = np.array(["open"] * n, dtype=object)
    blink_id = np.full(n, -1, dtype=np.int64)
    episodes: list[dict[str, Any]] = []
    eps = params.monotone_eps
    prev_end = 0
    for s, e in runs(closed):
        a = s
        while a - 1 >= max(prev_end, 1) and not closed[a - 1] and o[a - 2] - o[a - 1] > eps:
            a -= 1
        b = e
        while b < n and o[b] - o[b - 1] > eps and not closed[b]:
            b += 1
        states[a:s] = "closing"
        states[s:e] = "close"
        states[e:b] = "opening"
        k = len(episodes)
        blink_id[a:b] = k
        closed_s = (e - s) / fps
        kind = (
            "sleep" if closed_s >= params.sleep_min_s - 1e-9
            else "microsleep" if closed_s >= params.microsleep_min_s - 1e-9
            else "blink"
        )
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
            "kind": kind,
            "complete": s > 0 and e < n,  # the closure starts and ends inside the clip
        })
        prev_end = b
    return [str(x) for x in states], blink_id, episodes


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
) -> dict[str, Any]:
    """All temporal labels of one clip: ``per_frame`` lists, ``events``, ``blinks`` and ``summary``."""
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
    eyes = (ol + orr) / 2
    closed = eyes <= params.closed_openness
    st_l, _, _ = eye_states(ol, fps, params)
    st_r, _, _ = eye_states(orr, fps, params)
    st, blink_id, episodes = eye_states(eyes, fps, params)
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
    long_dist = off_run >= ld_n
    vats = acc >= params.vats_threshold_s - 1e-9
    unresp = away_run >= un_n
    drowsy = (pc_span >= params.perclos_min_window_s - 1e-9) & (pc >= params.perclos_drowsy)
    state = []
    for t in range(n):
        if unresp[t]:
            s = "unresponsive"
        elif closed_run[t] >= sl_n:
            s = "sleep"
        elif closed_run[t] >= ms_n:
            s = "microsleep"
        elif long_dist[t]:
            s = "long_distraction"
        elif vats[t]:
            s = "visual_time_sharing"
        elif drowsy[t]:
            s = "drowsy"
        else:
            s = "alert"
        state.append(s)

    events: list[dict[str, Any]] = []
    for ep in episodes:
        if ep["kind"] in ("microsleep", "sleep"):
            n_min = ms_n if ep["kind"] == "microsleep" else sl_n
            events.append({"type": ep["kind"], "start": ep["close_start"], "end": ep["close_end"],
                           "onset": ep["close_start"] + n_min - 1, "duration_s": ep["closed_s"],
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
    summary = {
        "frames": n,
        "fps": fps,
        "duration_s": seconds,
        "perclos_p80": float(closed.mean()) if n else 0.0,
        "perclos_p80_max_window": float(pc.max()) if n else 0.0,
        "blink_count": len(blinks),
        "blink_rate_per_min": (len(complete_blinks) * 60.0 / seconds) if seconds else 0.0,
        "mean_blink_duration_s": float(np.mean([e["duration_s"] for e in complete_blinks])) if complete_blinks else None,
        "mean_blink_closed_s": float(np.mean([e["closed_s"] for e in complete_blinks])) if complete_blinks else None,
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
                                params: TemporalParams = TemporalParams()) -> dict[str, Any]:
    """:func:`temporal_labels` from a clip's per-frame plan entries (``state`` and ``gaze_zone``)."""
    ol, orr, zones = [], [], []
    for i, f in enumerate(frames):
        try:
            ol.append(float(f["state"]["eye_openness_left"]))
            orr.append(float(f["state"]["eye_openness_right"]))
            zones.append(str(f["gaze_zone"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"frame {i}: plan entry lacks {e} (needs state.eye_openness_left/right and gaze_zone)") from None
    return temporal_labels(ol, orr, zones, fps, params)


def window_labels(temporal: dict[str, Any], start: int, length: int) -> dict[str, Any]:
    """The per-frame labels of frames [start, start+length) and the events overlapping that window."""
    pf = temporal["per_frame"]
    end = start + length
    out = {k: v[start:end] for k, v in pf.items()}
    ev = [e for e in temporal["events"] if e["start"] < end and e["end"] > start]
    return {"per_frame": out, "events": ev, "start": start, "length": length}
