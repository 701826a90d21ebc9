"""Driver-state models: a scenario script -> per-frame renderer parameters (plan-entry fields).

Two steps, both deterministic given a ``numpy.random.Generator``:

1. :func:`scenario_segments` turns a scenario name (built-in) or a :class:`~.config.Script` into a
   KSS value and a list of timed segments (``drive``, ``glance``, ``microsleep``, ``sleep``, ...).
2. :func:`synthesize` samples continuous-time models of eyelids, head, eyes, mouth, hands and
   lighting at the frame times ``t_i = i / fps`` and returns the per-frame fields of a plan entry
   (``state``, ``head_pose_car``, ``gaze_in_head``, ``gaze_zone``, ``action``, ``phone``,
   ``lighting``, ``illuminance_lux``, plus ``activity`` and ``body_lean_deg``) and the scripted
   events in continuous time.

Models (documented numbers; sources: blink kinematics of alert vs sleepy drivers as reported in the
drowsiness literature, e.g. Caffier et al. 2003 -- slower reopening and longer closures as sleepiness
rises; Euro NCAP DSM definitions for the event durations):

* Eyelid closure primitive: openness falls linearly from the baseline to 0.2 over the closing time,
  to a floor (0.02-0.06) within 60 ms, stays there, rises back to 0.2 at the end of the closed time
  and to the baseline over the reopening time. So the frames with openness <= 0.2 are exactly those
  inside the scripted closed interval (the P80 criterion of the temporal labels).
* Blinks (everywhere but scripted closures), with s = clip((KSS - 5) / 4, 0, 1):
  inter-blink interval ~ Gamma(k=2) with mean 3.5 - 1.0 s seconds (about 17 -> 24 per minute);
  closing U(80, 120) ms x (1 + 0.5 s); closed U(50, 200 + 100 s) ms (<= 300 ms when alert);
  reopening U(100, 150) ms x (1 + 1.5 s); with probability 0.25 s a long closure of 0.4-0.9 s
  (still below the 1 s microsleep threshold). Baseline openness 0.92 - 0.07 x max(0, KSS - 5) +/- 0.04.
* Microsleep: closing 0.25-0.4 s, reopening 0.3-0.6 s, head pitch drops 6-15 deg during the closure.
  Sleep: closing 0.5 s, head sinks to pitch -20..-30 deg and rolls 0-10 deg over 2 s, recovers 0.5 s
  after the eyes reopen.
* Glances: the gaze target is the DMD zone's direction (:data:`dmsfactory.plan.GAZE_ZONES`) +/- 3 deg.
  Total gaze reaches it in 0.12 s (saccade), the head in 0.45 s (minimum-jerk); the head's share of
  the final rotation is 0.75-0.9 (owl), 0.1-0.3 (lizard, eyes limited to 30 deg yaw / 22 deg pitch,
  the head takes the rest) or 0.6-0.8 plus a 6-10 deg roll and a recorded torso lean (body_lean).
  The glance lasts ``duration_s`` including both transits.
* Per-frame gaze zone: the DMD zone whose direction is nearest (yaw/pitch degrees) to the total gaze
  direction (head + eye-in-head), so transits pass through intermediate zones as real ones do.
* Yawn: mouth opens over 1.5 s to 0.7-1.0, holds 1.5-2.5 s, closes over 1 s; eyes narrow to 45-60 %
  of baseline, head tilts up 4-8 deg; labelled yawning while mouth opening >= 0.3.
* Head nod: pitch drops 10-20 deg over 0.4 s and recovers over 0.4 s.
* Phone: 1.2 s pick-up glance to the lap (steering_wheel zone); call: phone at the ear of ``hand``,
  head rolls 4-6 deg toward it, eyes on the road; texting: glances to the phone of 1-2.5 s with
  0.6-1.5 s back on the road.
* Eating / talking / laughing: mouth oscillation (1.5 Hz chewing; 4 Hz syllables; laughing with
  smile 0.7-1 and eyes narrowed to 60 %); talking adds short (< 1.2 s) glances to the passenger.
  Rubbing eyes: the eye on the hand's side closes to 0.08, the other narrows to 0.45-0.6 (mean of
  the eyes stays above the closed level, so it is not a closure event -- Euro NCAP lists it as a
  behaviour that must not trigger a false alert).
* Tunnel entry: lighting becomes ``tunnel`` at the segment start; illuminance falls log-linearly
  from the clip's daylight value to 10-300 lux over 1 s (exit: the reverse).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dmsfactory.clips.config import ClipsConfig, Script, Segment
from dmsfactory.conditions import LUX
from dmsfactory.plan import EYE_IN_HEAD_LIMIT, FIXATION_DISTANCE_M, GAZE_ZONES  # DMD gaze zones: the image planner's table

DISTRACTION_TARGETS = ("left", "right", "front_right", "infotainment", "steering_wheel")
_ZONE_NAMES = tuple(GAZE_ZONES)
_ZONE_DIRS = np.array([GAZE_ZONES[z] for z in _ZONE_NAMES], dtype=np.float64)


def kss_class(kss: int) -> str:
    """Fatigue class of a KSS value (as the image planner's CLASS_STATES ranges): <=5 alert, 6 mild, 7 moderate, >=8 severe."""
    return "alert" if kss <= 5 else "mild_fatigue" if kss == 6 else "moderate_fatigue" if kss == 7 else "severe_fatigue"


# --------------------------------------------------------------------------- scenario scripts
def _seg(kind: str, d: float, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "duration_s": float(d), **kw}


def scenario_segments(name: str, cfg: ClipsConfig, rng: np.random.Generator) -> tuple[int, list[dict[str, Any]]]:
    """(KSS, segments) of one clip of scenario ``name``; segments carry ``start_s`` and may end past the clip."""
    D = cfg.duration_s
    u = rng.uniform
    segs: list[dict[str, Any]] = []
    if name in cfg.scripts:
        sc: Script = cfg.scripts[name]
        kss = sc.kss
        segs = [s.model_dump() for s in sc.segments]
    elif name == "alert":
        kss = int(rng.integers(1, 5))
        t = 0.0
        while t < D:
            d = u(5, 11)
            segs.append(_seg("drive", d))
            segs.append(_seg("glance", u(0.6, 1.2), zone=str(rng.choice(["left_mirror", "center_mirror", "right_mirror"])),
                             movement=str(rng.choice(["owl", "lizard"]))))
            t += d + 1.2
    elif name == "drowsy":
        kss = int(rng.integers(7, 10))
        t = 0.0
        while t < D:
            d = u(2.5, 5.0)
            segs.append(_seg("drive", d))
            ev = str(rng.choice(["yawn", "nod", "drive"]))
            dd = u(4.5, 6.0) if ev == "yawn" else 1.0 if ev == "nod" else u(1, 2)
            segs.append(_seg(ev, dd, with_hand=bool(rng.random() < 0.4)) if ev == "yawn" else _seg(ev, dd))
            t += d + dd
    elif name == "microsleep":
        kss = int(rng.integers(8, 10))
        lead = u(1.5, min(4.0, max(1.6, D / 3)))
        segs = [_seg("drive", lead), _seg("microsleep", u(1.2, 2.7)), _seg("drive", u(2, 4))]
        if D > 14:
            segs.append(_seg("microsleep", u(1.2, 2.7)))
    elif name == "sleep":
        kss = 9
        segs = [_seg("drive", u(1.5, 3.0)), _seg("sleep", u(3.5, 5.5))]
    elif name == "unresponsive":
        kss = 9
        segs = [_seg("drive", u(1.0, 2.0)), _seg("sleep", u(6.6, 9.0))]
    elif name == "long_distraction":
        kss = int(rng.integers(2, 6))
        segs = [_seg("drive", u(1.0, 3.0)),
                _seg("glance", u(3.4, 5.5), zone=str(rng.choice(DISTRACTION_TARGETS)),
                     movement=str(rng.choice(["owl", "lizard", "body_lean"]))),
                _seg("drive", u(2, 4))]
    elif name == "visual_time_sharing":
        kss = int(rng.integers(2, 6))
        segs = [_seg("drive", u(1.0, 2.0))]
        zone = str(rng.choice(["infotainment", "steering_wheel"]))
        mv = str(rng.choice(["owl", "lizard"]))
        t = 0.0
        while t < D:
            g = u(1.6, 2.7)
            b = u(0.8, 1.6)
            segs += [_seg("glance", g, zone=zone, movement=mv), _seg("drive", b)]
            t += g + b
    elif name == "phone":
        kss = int(rng.integers(2, 6))
        lead = u(1.0, 2.5)
        segs = [_seg("drive", lead), _seg("phone", max(1.5, D - lead - u(0.5, 1.5)),
                                          hand=str(rng.choice(["left", "right"])), use=str(rng.choice(["call", "texting"])))]
    elif name == "yawning":
        kss = int(rng.integers(5, 8))
        segs = [_seg("drive", u(1.0, 3.0)), _seg("yawn", u(4.5, 6.0), with_hand=bool(rng.random() < 0.5)),
                _seg("drive", u(2, 4)), _seg("yawn", u(4.5, 6.0), with_hand=bool(rng.random() < 0.5))]
    elif name == "non_alert_distractors":
        kss = int(rng.integers(2, 5))
        kinds = list(rng.permutation(["eat", "talk", "rub_eyes", "laugh"]))
        t = 0.0
        for k in kinds:
            d0, d1 = u(1.0, 2.5), u(2.0, 4.0)
            segs += [_seg("drive", d0), _seg(str(k), d1, hand=str(rng.choice(["left", "right"])))]
            t += d0 + d1
            if t > D:
                break
    elif name == "tunnel_entry":
        kss = int(rng.integers(2, 6))
        segs = [_seg("drive", u(1.0, max(1.5, D / 2))), _seg("tunnel_entry", D)]
    else:
        raise ValueError(f"scenario: unknown scenario {name!r}")
    t = 0.0
    out = []
    for s in segs:
        if t >= D:
            break
        Segment.model_validate({k: v for k, v in s.items() if k != "start_s"})  # same checks as user scripts
        out.append({**s, "start_s": round(t, 4)})
        t += s["duration_s"]
    return int(kss), out


# --------------------------------------------------------------------------- signal helpers
def _minjerk(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10 - 15 * u + 6 * u * u)


def _bump(t: np.ndarray, s: float, e: float, rise: float, fall: float) -> np.ndarray:
    """0 before s, min-jerk up to 1 over ``rise``, 1 until e - fall, down to 0 at e."""
    rise = max(min(rise, (e - s) / 2), 1e-6)
    fall = max(min(fall, (e - s) / 2), 1e-6)
    up = _minjerk((t - s) / rise)
    down = 1 - _minjerk((t - (e - fall)) / fall)
    return np.where((t >= s) & (t <= e), np.minimum(up, down), 0.0)


def _closure(t: np.ndarray, base: np.ndarray, s: float, e: float, t_close: float, t_open: float,
             floor: float) -> np.ndarray:
    """Openness of a closure that is <= 0.2 exactly on [s, e] (see module doc)."""
    b = np.asarray(base, dtype=np.float64)
    out = np.ones_like(t) * 2.0  # "no constraint"
    m = (t >= s - t_close) & (t < s)  # closing: baseline -> 0.2
    if m.any():
        u = (t[m] - (s - t_close)) / t_close
        out[m] = b[m] + (0.2 - b[m]) * u
    hold_in = min(0.06, (e - s) / 3)
    m = (t >= s) & (t <= e)
    if m.any():
        tt = t[m]
        v = np.full(tt.shape, floor)
        a = tt < s + hold_in
        v[a] = 0.2 + (floor - 0.2) * (tt[a] - s) / hold_in
        c = tt > e - hold_in
        v[c] = floor + (0.2 - floor) * (tt[c] - (e - hold_in)) / hold_in
        out[m] = np.minimum(v, 0.2)
    m = (t > e) & (t <= e + t_open)  # reopening: 0.2 -> baseline (strictly above 0.2 after e)
    if m.any():
        u = (t[m] - e) / t_open
        out[m] = 0.2 + (b[m] - 0.2) * u + 1e-4
    return out


def nearest_zone(yaw: np.ndarray, pitch: np.ndarray) -> list[str]:
    d = (yaw[:, None] - _ZONE_DIRS[None, :, 0]) ** 2 + (pitch[:, None] - _ZONE_DIRS[None, :, 1]) ** 2
    return [_ZONE_NAMES[i] for i in np.argmin(d, axis=1)]


# --------------------------------------------------------------------------- synthesis
def synthesize(
    kss: int,
    segments: list[dict[str, Any]],
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    lighting: str = "daylight",
    illuminance_lux: float = 10_000.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-frame fields and scripted events (continuous time) of one clip; see the module doc."""
    if not 1 <= kss <= 9:
        raise ValueError(f"kss must be 1..9 (got {kss})")
    t = np.arange(n_frames) / fps
    D = n_frames / fps
    u = rng.uniform
    s_k = float(np.clip((kss - 5) / 4, 0, 1))
    events: list[dict[str, Any]] = []

    # slow head sway and openness drift (sum of two sinusoids per channel)
    def sway(amp: float) -> np.ndarray:
        out = np.zeros_like(t)
        for _ in range(2):
            out += amp / 2 * np.sin(2 * math.pi * u(0.03, 0.2) * t + u(0, 2 * math.pi))
        return out

    head_yaw = u(-3, 3) + sway(3.0)
    head_pitch = u(-3, 2) - 2.0 * s_k + sway(2.0)
    head_roll = u(-2, 2) + sway(1.5)
    eye_yaw = u(-3, 3) + sway(2.0)
    eye_pitch = u(-2, 2) + sway(1.5)
    base_open = float(np.clip(0.92 - 0.07 * max(0, kss - 5) + u(-0.04, 0.04), 0.45, 1.0))
    base = np.clip(base_open + sway(0.04), 0.3, 1.0)
    asym = u(-0.02, 0.02)
    open_l = base.copy()
    open_r = base.copy()
    mouth = np.full(n_frames, u(0.0, 0.06))
    smile = np.full(n_frames, u(0.0, 0.15) if kss <= 5 else 0.0)
    brow = np.full(n_frames, u(0.0, 0.2))
    yawn = np.array(["none"] * n_frames, dtype=object)
    action = np.array(["safe_drive"] * n_frames, dtype=object)
    phone: list[dict | None] = [None] * n_frames
    activity = np.array([None] * n_frames, dtype=object)
    lean = np.zeros(n_frames)
    light = np.array([lighting] * n_frames, dtype=object)
    log_lux = np.full(n_frames, math.log(illuminance_lux))

    closures: list[tuple[float, float]] = []  # scripted closed intervals (no blinks there)
    gaze_offsets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def glance(s: float, d: float, zone: str, movement: str) -> None:
        ty, tp = GAZE_ZONES[zone]
        ty += u(-3, 3)
        tp += u(-3, 3)
        share = u(0.75, 0.9) if movement == "owl" else u(0.1, 0.3) if movement == "lizard" else u(0.6, 0.8)
        hy, hp = ty * share, tp * share
        # eyes cannot rotate beyond their limits: the head takes the rest
        hy = ty - float(np.clip(ty - hy, -EYE_IN_HEAD_LIMIT[0], EYE_IN_HEAD_LIMIT[0]))
        hp = tp - float(np.clip(tp - hp, -EYE_IN_HEAD_LIMIT[1], EYE_IN_HEAD_LIMIT[1]))
        g = _bump(t, s, s + d, 0.12, 0.12)
        h = _bump(t, s, s + d, 0.45, 0.45)
        roll = np.sign(ty) * u(6, 10) * h if movement == "body_lean" else np.zeros_like(t)
        if movement == "body_lean":
            lean[:] += np.sign(ty) * u(8, 15) * h
        gaze_offsets.append((g * ty, g * tp, h * hy, h * hp, roll))
        events.append({"type": "glance", "start_s": s, "end_s": s + d, "zone": zone, "movement": movement})

    for seg in segments:
        k = seg["kind"]
        s = float(seg["start_s"])
        d = float(seg["duration_s"])
        e = s + d
        if k == "drive":
            continue
        if k == "glance":
            glance(s, d, seg["zone"], seg.get("movement", "owl"))
        elif k in ("microsleep", "sleep"):
            tc = u(0.25, 0.4) if k == "microsleep" else 0.5
            to = u(0.3, 0.6) if k == "microsleep" else 0.6
            start = max(s, tc)
            cl = _closure(t, base, start, start + d, tc, to, u(0.02, 0.06))
            open_l = np.minimum(open_l, cl)
            open_r = np.minimum(open_r, cl)
            closures.append((start - tc, start + d + to))
            if k == "microsleep":
                head_pitch -= u(6, 15) * _bump(t, start, start + d + 0.2, 0.5, 0.2)
            else:
                sink = _bump(t, start, start + d + 0.5, 2.0, 0.5)
                head_pitch -= u(20, 30) * sink
                head_roll += u(-10, 10) * sink
            events.append({"type": k, "start_s": start, "end_s": start + d})
        elif k == "yawn":
            amp = u(0.7, 1.0)
            hold = max(0.2, d - 2.5)
            m = _bump(t, s, s + 1.5 + hold + 1.0, 1.5, 1.0)
            mouth = np.maximum(mouth, amp * m)
            narrow = 1 - u(0.4, 0.55) * m
            open_l, open_r = open_l * narrow, open_r * narrow
            head_pitch += u(4, 8) * m
            brow = np.maximum(brow, 0.3 * m)
            lab = "yawning_with_hand" if seg.get("with_hand") else "yawning_without_hand"
            yawn[(mouth >= 0.3) & (t >= s) & (t <= e)] = lab
            events.append({"type": "yawn", "start_s": s, "end_s": e, "with_hand": bool(seg.get("with_hand"))})
        elif k == "nod":
            head_pitch -= u(10, 20) * _bump(t, s, s + min(d, 1.0), 0.4, 0.4)
            events.append({"type": "nod", "start_s": s, "end_s": s + min(d, 1.0)})
        elif k == "phone":
            hand, use = seg.get("hand", "right"), seg.get("use", "texting")
            m = (t >= s) & (t < e)
            action[m] = f"phone_call_{hand}" if use == "call" else f"texting_{hand}"
            for i in np.flatnonzero(m):
                phone[i] = {"hand": hand, "use": use}
            glance(s, min(1.2, d), "steering_wheel", "owl")  # pick-up
            if use == "call":
                head_roll += (1 if hand == "left" else -1) * u(4, 6) * _bump(t, s + 1.2, e, 0.5, 0.5)
            else:
                tt = s + 1.2
                while tt < e - 0.3:
                    back = u(0.6, 1.5)
                    look = min(u(1.0, 2.5), e - tt - back)
                    if look <= 0.3:
                        break
                    glance(tt + back, look, "steering_wheel", "lizard" if rng.random() < 0.5 else "owl")
                    tt += back + look
            events.append({"type": "phone", "start_s": s, "end_s": e, "hand": hand, "use": use})
        elif k in ("eat", "talk", "laugh"):
            m = _bump(t, s, e, 0.3, 0.3)
            if k == "eat":
                osc = 0.1 + 0.15 * np.abs(np.sin(2 * math.pi * 0.75 * (t - s)))
            elif k == "talk":
                osc = 0.08 + 0.22 * np.abs(np.sin(2 * math.pi * 2.0 * (t - s) + np.sin(2 * math.pi * 0.7 * t)))
            else:
                osc = 0.3 + 0.15 * np.abs(np.sin(2 * math.pi * 2.5 * (t - s)))
                smile = np.maximum(smile, u(0.7, 1.0) * m)
                open_l, open_r = open_l * (1 - 0.4 * m), open_r * (1 - 0.4 * m)
            mouth = np.where(m > 0, np.maximum(mouth, osc * m), mouth)
            activity[(t >= s) & (t < e)] = {"eat": "eating", "talk": "talking", "laugh": "laughing"}[k]
            if k == "talk" and d > 2.5:
                glance(s + u(0.5, d - 1.8), u(0.6, 1.2), "right", "owl")
            events.append({"type": {"eat": "eating", "talk": "talking", "laugh": "laughing"}[k], "start_s": s, "end_s": e})
        elif k == "rub_eyes":
            hand = seg.get("hand", "right")
            m = _bump(t, s, e, 0.3, 0.3)
            near = 1 - (1 - 0.08 / np.maximum(base, 0.08)) * m
            far = 1 - u(0.4, 0.55) * m
            # the subject's right hand rubs the subject's right eye
            if hand == "right":
                open_r, open_l = open_r * near, open_l * far
            else:
                open_l, open_r = open_l * near, open_r * far
            head_pitch -= 5 * m
            activity[(t >= s) & (t < e)] = "rubbing_eyes"
            events.append({"type": "rubbing_eyes", "start_s": s, "end_s": e, "hand": hand})
        elif k in ("tunnel_entry", "tunnel_exit"):
            if k == "tunnel_entry":
                target, lab = math.log(math.exp(u(math.log(LUX["tunnel"][0]), math.log(LUX["tunnel"][1])))), "tunnel"
            else:
                target, lab = math.log(u(*LUX["daylight"])), "daylight"
            m = t >= s
            light[m] = lab
            r = np.clip((t - s) / 1.0, 0, 1)
            log_lux = np.where(m, log_lux + (target - log_lux) * r, log_lux)
            events.append({"type": k, "start_s": s, "end_s": min(e, D)})

    # blinks everywhere but scripted closures
    mu = 3.5 - 1.0 * s_k
    tb = float(rng.gamma(2.0, mu / 2.0)) * u(0.2, 1.0)
    blinks = []
    while tb < D + 1.0:
        tc = u(0.08, 0.12) * (1 + 0.5 * s_k)
        closed = u(0.4, 0.9) if rng.random() < 0.25 * s_k else u(0.05, 0.2 + 0.1 * s_k)
        to = u(0.10, 0.15) * (1 + 1.5 * s_k)
        s = tb + tc
        if not any(a - 0.3 < s + closed + to and s - tc < b + 0.3 for a, b in closures):
            cl = _closure(t, base, s, s + closed, tc, to, u(0.02, 0.06))
            open_l, open_r = np.minimum(open_l, cl), np.minimum(open_r, cl)
            blinks.append({"type": "blink", "start_s": s - tc, "close_start_s": s, "close_end_s": s + closed,
                           "end_s": s + closed + to})
        tb += tc + closed + to + float(rng.gamma(2.0, mu / 2.0))
    events += blinks

    # gaze: total = sway + glance targets; head follows slower; eyes carry the rest within limits
    g_y = head_yaw + eye_yaw
    g_p = head_pitch + eye_pitch
    for gy, gp, hy, hp, roll in gaze_offsets:
        g_y = g_y + gy
        g_p = g_p + gp
        head_yaw = head_yaw + hy
        head_pitch = head_pitch + hp
        head_roll = head_roll + roll
    head_yaw = np.clip(head_yaw, -75, 75)
    head_pitch = np.clip(head_pitch, -45, 45)
    head_roll = np.clip(head_roll, -45, 45)
    e_y = np.clip(g_y - head_yaw, -EYE_IN_HEAD_LIMIT[0], EYE_IN_HEAD_LIMIT[0])
    e_p = np.clip(g_p - head_pitch, -EYE_IN_HEAD_LIMIT[1], EYE_IN_HEAD_LIMIT[1])
    zones = nearest_zone(head_yaw + e_y, head_pitch + e_p)

    open_l = np.clip(open_l + asym, 0, 1)
    open_r = np.clip(open_r - asym, 0, 1)
    # keep exact closure membership: a frame is closed on both eyes iff a closure says so
    frames = []
    for i in range(n_frames):
        frames.append({
            "state": {
                "eye_openness_left": round(float(open_l[i]), 4),
                "eye_openness_right": round(float(open_r[i]), 4),
                "mouth_open": round(float(np.clip(mouth[i], 0, 1)), 4),
                "yawn": str(yawn[i]),
                "brow_raise": round(float(np.clip(brow[i], 0, 1)), 4),
                "smile": round(float(np.clip(smile[i], 0, 1)), 4),
            },
            "head_pose_car": {"yaw": round(float(head_yaw[i]), 3), "pitch": round(float(head_pitch[i]), 3),
                              "roll": round(float(head_roll[i]), 3)},
            "gaze_in_head": {"yaw": round(float(e_y[i]), 3), "pitch": round(float(e_p[i]), 3),
                             "distance_m": FIXATION_DISTANCE_M[zones[i]]},
            "gaze_zone": zones[i],
            "action": str(action[i]),
            "phone": phone[i],
            "lighting": str(light[i]),
            "illuminance_lux": round(float(math.exp(log_lux[i])), 3),
            "activity": activity[i],
            "body_lean_deg": round(float(lean[i]), 3),
        })
    for ev in events:
        ev["start_s"] = round(float(ev["start_s"]), 4)
        ev["end_s"] = round(float(ev["end_s"]), 4)
        for k2 in ("close_start_s", "close_end_s"):
            if k2 in ev:
                ev[k2] = round(float(ev[k2]), 4)
    events.sort(key=lambda ev: (ev["start_s"], ev["type"]))
    return frames, events
