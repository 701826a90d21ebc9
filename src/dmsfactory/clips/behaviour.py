"""Driver-state models: a scenario script -> a continuous-time clip -> per-frame renderer parameters.

Three steps, all deterministic given a ``numpy.random.Generator``:

1. :func:`scenario_segments` turns a scenario name (built-in) or a :class:`~.config.Script` into a
   KSS value and a list of timed segments (``drive``, ``glance``, ``blink``, ``microsleep``, ...).
2. :func:`simulate` draws everything random about the clip (the driver's traits unless given, head
   sway, glance targets, eyelid closures, yawns, ...) into a :class:`ClipModel`: a continuous-time
   description of the clip that does not depend on the frame rate (no draw depends on the number of
   frames, so the same clip rendered at 10, 30 or 60 fps shows the same blinks at the same times).
3. :meth:`ClipModel.frames` samples it at the frame times ``t_i = i / fps`` and returns the per-frame
   fields of a plan entry (``state``, ``head_pose_car``, ``gaze_in_head``, ``gaze_zone``, ``action``,
   ``phone``, ``lighting``, ``illuminance_lux``, ``activity``, ``body_lean_deg``);
   :attr:`ClipModel.events` are the events in continuous time (eyelid closures carry their full
   ``lid`` record, from which the temporal labels are computed).

Models (the numbers and their sources: :mod:`dmsfactory.clips.drivers` for the per-driver traits
and KSS effects, :mod:`dmsfactory.clips.kinematics` for the curve shapes):

* Eyelids: open level = the driver's ``base_openness`` (lowered by sleepiness) + a slow drift (two
  sinusoids, 0.03 peak to peak, 0.03-0.2 Hz) + the eye's asymmetry, times the narrowing of a yawn or
  a laugh; it never goes below 0.26, so only closures reach the closed level (P80: <= 0.2). Closures
  (:class:`~dmsfactory.clips.kinematics.Closure`: closing, closed, reopening) are the only lid
  movements to the closed level; the DMD eye states ``closing``/``close``/``opening`` are their phases.
* Spontaneous blinks (everywhere but within 0.3 s of a scripted closure, a microsleep or a rubbed
  eye's closure): onsets from
  a renewal process with gamma(k=2) inter-blink intervals whose mean follows the driver's rate at this
  KSS, times 2.0 while talking and 0.45 while reading a phone (time-rescaled, so the rate changes
  within a clip); at least 0.15 s between one blink's end and the next onset. Blink k's phase
  durations come from its own random stream (``[blink_seed, k]``), so raising the KSS of the same clip
  lengthens every blink (common random numbers: KSS monotonicity holds blink by blink).
* Scripted ``blink``: the given closing/closed/reopening times (else the driver's values at this KSS).
* Microsleep (scripted, < 3 s) and spontaneous microsleeps (KSS >= 8, drivers.py): the eyes are at
  or below the closed level for exactly the closed (P80) duration; closing 0.25-0.4 s, reopening
  0.3-0.6 s; head pitch drops 6-15 deg during the closure. Sleep: closing 0.5 s, reopening 0.6 s, head
  sinks to pitch -20..-30 deg and rolls 0-10 deg over 2 s, recovers 0.5 s after the eyes reopen.
* Glances: the gaze target is the DMD zone's direction (:data:`dmsfactory.taxonomy.GAZE_ZONES`) +/- 3 deg.
  Total gaze reaches it in 0.12 s (saccade), the head in 0.45 s (minimum-jerk); the head's share of
  the final rotation is 0.75-0.9 (owl), 0.1-0.3 (lizard, eyes limited to 30 deg yaw / 22 deg pitch,
  the head takes the rest) or 0.6-0.8 plus a 6-10 deg roll and a recorded torso lean (body_lean).
  The glance lasts ``duration_s`` including both transits. Natural glances in the built-in scenarios
  (mirror checks, phone looks, a glance to the passenger) draw their durations from the per-zone
  distributions in drivers.py; Euro NCAP protocol glances (long distraction 3.4-5.5 s, visual
  time-sharing 1.6-2.7 s with 0.8-1.6 s back) keep the protocol's durations.
* Per-frame gaze zone: the DMD zone whose direction is nearest (yaw/pitch degrees) to the total gaze
  direction (head + eye-in-head), so transits pass through intermediate zones as real ones do.
* Yawn (:class:`~dmsfactory.clips.kinematics.YawnShape`): duration from drivers.py (~6.25 s) in the
  built-in scenarios, else the segment's ``duration_s``; the acme takes 10-18 % of it, the opening
  60-70 % of the rest, the closing the remainder (slow opening, short peak, faster close); mouth
  opening 0.7-1.0 at the acme; eyes narrow by 35-50 % with the mouth, head tilts up 4-8 deg;
  labelled yawning while the mouth opening is >= 0.3.
* Head nod: pitch drops 10-20 deg over 0.4 s and recovers over 0.4 s.
* Phone: a pick-up glance to the lap (steering_wheel zone) of up to 1.2 s; call: phone at the ear of
  ``hand``, head rolls 4-6 deg toward it, eyes on the road; texting: looks at the phone (in-vehicle
  glance durations) with 0.6-1.5 s back on the road.
* Eating / talking / laughing: mouth oscillation (0.75 Hz chewing; 2 Hz syllables; laughing with
  smile 0.7-1 and eyes narrowed to 60 %); talking adds one glance to the passenger (right).
  Rubbing eyes: the eye on the hand's side closes to 0.08 (a one-eye closure, ``eyes: left|right``),
  the other narrows to 45-60 % (mean of the eyes stays above the closed level, so it is not a
  two-eye closure event -- Euro NCAP lists it as a behaviour that must not trigger a false alert).
* Tunnel entry: lighting becomes ``tunnel`` at the segment start; illuminance falls log-linearly
  from the clip's daylight value to 10-300 lux over 1 s (exit: the reverse).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dmsfactory.clips.config import ClipsConfig, Script, Segment
from dmsfactory.clips.drivers import (
    BEHAVIOUR_VERSION,
    BLINK_FLOOR,
    BLINK_SIGMA,
    LONG_BLINK_CLOSED_S,
    MICROSLEEP_P80_S,
    RATE_MULTIPLIER,
    YAWN,
    DriverTraits,
    glance_duration,
    yawn_duration,
)
from dmsfactory.clips.kinematics import (
    Closure,
    YawnShape,
    apply_closures,
    closed_interval,
    closure_for_closed_interval,
    q,
)
from dmsfactory.conditions import LUX
from dmsfactory.taxonomy import (  # DMD gaze zones, shared with the image planner; P80 level for scripted closures
    CLOSED_OPENNESS,
    EYE_IN_HEAD_LIMIT,
    FIXATION_DISTANCE_M,
    GAZE_ZONES,
)

__all__ = ["BEHAVIOUR_VERSION", "ClipModel", "kss_class", "nearest_zone", "scenario_segments", "simulate", "synthesize"]

DISTRACTION_TARGETS = ("left", "right", "front_right", "infotainment", "steering_wheel")
_ZONE_NAMES = tuple(GAZE_ZONES)
_ZONE_DIRS = np.array([GAZE_ZONES[z] for z in _ZONE_NAMES], dtype=np.float64)
MIN_OPEN_LEVEL = 0.26  # the open level (no closure) never goes below this: only closures reach P80
CLOSURE_MARGIN_S = 0.3  # no spontaneous blink within this of a scripted closure or a microsleep
BLINK_GAP_S = 0.15  # minimum time from one blink's end to the next onset


def kss_class(kss: int) -> str:
    """Fatigue class of a KSS value (as the image planner's CLASS_STATES ranges): <=5 alert, 6 mild, 7 moderate, >=8 severe."""
    return "alert" if kss <= 5 else "mild_fatigue" if kss == 6 else "moderate_fatigue" if kss == 7 else "severe_fatigue"


# --------------------------------------------------------------------------- scenario scripts
def _seg(kind: str, d: float, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "duration_s": float(d), **kw}


def scenario_segments(name: str, cfg: ClipsConfig, rng: np.random.Generator,
                      driver: DriverTraits | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(KSS, segments) of one clip of scenario ``name``; segments carry ``start_s`` and may end past the clip.

    ``driver`` scales natural glance durations and sets the yawn duration (drivers.py)."""
    D = cfg.duration_s
    u = rng.uniform
    gscale = driver.glance_scale if driver is not None else 1.0
    segs: list[dict[str, Any]] = []
    if name in cfg.scripts:
        sc: Script = cfg.scripts[name]
        kss = sc.kss
        segs = [s.model_dump(exclude_none=True) for s in sc.segments]
    elif name == "alert":
        kss = int(rng.integers(1, 6))
        t = 0.0
        while t < D:
            d = u(5, 11)
            zone = str(rng.choice(["left_mirror", "center_mirror", "right_mirror"]))
            g = glance_duration(zone, rng, gscale)
            segs.append(_seg("drive", d))
            segs.append(_seg("glance", g, zone=zone, movement=str(rng.choice(["owl", "lizard"])), _natural=True))
            t += d + g
    elif name == "drowsy":
        kss = int(rng.integers(7, 10))
        t = 0.0
        while t < D:
            d = u(2.5, 5.0)
            segs.append(_seg("drive", d))
            ev = str(rng.choice(["yawn", "nod", "drive"]))
            dd = yawn_duration(rng, driver) if ev == "yawn" else 1.0 if ev == "nod" else u(1, 2)
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
        segs = [_seg("drive", u(1.0, 3.0)), _seg("yawn", yawn_duration(rng, driver), with_hand=bool(rng.random() < 0.5)),
                _seg("drive", u(2, 4)), _seg("yawn", yawn_duration(rng, driver), with_hand=bool(rng.random() < 0.5))]
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
        Segment.model_validate({k: v for k, v in s.items() if k != "start_s" and not k.startswith("_")})  # as user scripts
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


def nearest_zone(yaw: np.ndarray, pitch: np.ndarray) -> list[str]:
    d = (yaw[:, None] - _ZONE_DIRS[None, :, 0]) ** 2 + (pitch[:, None] - _ZONE_DIRS[None, :, 1]) ** 2
    return [_ZONE_NAMES[i] for i in np.argmin(d, axis=1)]


@dataclass
class _Sway:
    """Sum of two sinusoids (amplitude amp/2 each), drawn once, evaluated at any time."""

    terms: list[tuple[float, float, float]]

    @classmethod
    def draw(cls, rng: np.random.Generator, amp: float) -> "_Sway":
        return cls([(amp / 2, float(rng.uniform(0.03, 0.2)), float(rng.uniform(0, 2 * math.pi))) for _ in range(2)])

    def __call__(self, t: np.ndarray) -> np.ndarray:
        out = np.zeros_like(t)
        for a, f, p in self.terms:
            out += a * np.sin(2 * math.pi * f * t + p)
        return out


# --------------------------------------------------------------------------- the continuous clip
@dataclass
class ClipModel:
    """A clip as functions of continuous time (see the module doc); built by :func:`simulate`."""

    kss: int
    duration_s: float
    driver: DriverTraits
    effective: dict[str, float]
    lighting: str
    illuminance_lux: float
    segments: list[dict[str, Any]]
    closures: list[Closure] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    _const: dict[str, float] = field(default_factory=dict)
    _sway: dict[str, _Sway] = field(default_factory=dict)
    _draws: list[dict[str, Any]] = field(default_factory=list)  # per segment: what was drawn for it
    _spontaneous: list[dict[str, Any]] = field(default_factory=list)  # spontaneous microsleeps

    # ---- eyes
    def open_level(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-eye open level (no closures): base, drift, asymmetry, yawn/laugh/rub narrowing; >= 0.26."""
        base = np.clip(self._const["base_open"] + self._sway["openness"](t), 0.3, 1.0)
        left = base + self.driver.eye_asymmetry
        right = base - self.driver.eye_asymmetry
        for d in self._draws:
            k = d["kind"]
            if k == "yawn":
                m = d["shape"].curve(t)
                f = 1 - d["narrow"] * m
                left, right = left * f, right * f
            elif k == "laugh":
                m = _bump(t, d["s"], d["e"], 0.3, 0.3)
                left, right = left * (1 - 0.4 * m), right * (1 - 0.4 * m)
            elif k == "rub_eyes":
                m = _bump(t, d["s"], d["e"], 0.3, 0.3)
                f = 1 - d["far_narrow"] * m
                if d["hand"] == "right":
                    left = left * f
                else:
                    right = right * f
        return np.clip(left, MIN_OPEN_LEVEL, 1.0), np.clip(right, MIN_OPEN_LEVEL, 1.0)

    def openness(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-eye openness at times ``t`` (sorted): open level with the closures applied."""
        t = np.asarray(t, dtype=np.float64)
        bl, br = self.open_level(t)
        ol = apply_closures(t, bl, "left", self.closures)
        orr = apply_closures(t, br, "right", self.closures)
        return np.clip(ol, 0.0, 1.0), np.clip(orr, 0.0, 1.0)

    # ---- everything
    def channels(self, t: np.ndarray) -> dict[str, Any]:
        """All per-time fields at times ``t`` (sorted array, seconds)."""
        t = np.asarray(t, dtype=np.float64)
        n = t.size
        c, sw = self._const, self._sway
        head_yaw = c["head_yaw"] + sw["head_yaw"](t)
        head_pitch = c["head_pitch"] + sw["head_pitch"](t)
        head_roll = c["head_roll"] + sw["head_roll"](t)
        eye_yaw = c["eye_yaw"] + sw["eye_yaw"](t)
        eye_pitch = c["eye_pitch"] + sw["eye_pitch"](t)
        mouth = np.full(n, c["mouth"])
        smile = np.full(n, c["smile"])
        brow = np.full(n, c["brow"])
        yawn = np.array(["none"] * n, dtype=object)
        action = np.array(["safe_drive"] * n, dtype=object)
        phone: list[dict | None] = [None] * n
        activity = np.array([None] * n, dtype=object)
        lean = np.zeros(n)
        light = np.array([self.lighting] * n, dtype=object)
        log_lux = np.full(n, math.log(self.illuminance_lux))
        lip_up, lip_st = np.full(n, np.nan), np.full(n, np.nan)  # a yawn's lips (state.yawn_lips) while it lasts
        gaze_offsets = []

        def glance(g: dict[str, Any]) -> None:
            s, e = g["s"], g["s"] + g["d"]
            gb = _bump(t, s, e, 0.12, 0.12)
            hb = _bump(t, s, e, 0.45, 0.45)
            roll = g["roll"] * hb
            if g["movement"] == "body_lean":
                lean[:] += g["lean"] * hb
            gaze_offsets.append((gb * g["ty"], gb * g["tp"], hb * g["hy"], hb * g["hp"], roll))

        for d in self._draws:
            k, s, e = d["kind"], d["s"], d["e"]
            for g in d.get("glances", ()):
                glance(g)
            if k in ("microsleep", "sleep"):
                if k == "microsleep":
                    head_pitch = head_pitch - d["pitch"] * _bump(t, d["p80"][0], d["p80"][1] + 0.2, 0.5, 0.2)
                else:
                    sink = _bump(t, d["p80"][0], d["p80"][1] + 0.5, 2.0, 0.5)
                    head_pitch = head_pitch - d["pitch"] * sink
                    head_roll = head_roll + d["roll"] * sink
            elif k == "yawn":
                m = d["shape"].curve(t)
                mouth = np.maximum(mouth, d["shape"].amplitude * m)
                head_pitch = head_pitch + d["pitch"] * m
                brow = np.maximum(brow, 0.3 * m)
                during = (t >= s) & (t <= d["shape"].end_s)
                yawn[(mouth >= YAWN["labelled_open"]) & during] = d["label"]
                lip_up[during], lip_st[during] = d["lips"]
            elif k == "nod":
                head_pitch = head_pitch - d["pitch"] * _bump(t, s, s + min(e - s, 1.0), 0.4, 0.4)
            elif k == "phone":
                m = (t >= s) & (t < e)
                action[m] = f"phone_call_{d['hand']}" if d["use"] == "call" else f"texting_{d['hand']}"
                for i in np.flatnonzero(m):
                    phone[i] = {"hand": d["hand"], "use": d["use"]}
                if d["use"] == "call":
                    head_roll = head_roll + (1 if d["hand"] == "left" else -1) * d["roll"] * _bump(t, s + 1.2, e, 0.5, 0.5)
            elif k in ("eat", "talk", "laugh"):
                m = _bump(t, s, e, 0.3, 0.3)
                if k == "eat":
                    osc = 0.1 + 0.15 * np.abs(np.sin(2 * math.pi * 0.75 * (t - s)))
                elif k == "talk":
                    osc = 0.08 + 0.22 * np.abs(np.sin(2 * math.pi * 2.0 * (t - s) + np.sin(2 * math.pi * 0.7 * t)))
                else:
                    osc = 0.3 + 0.15 * np.abs(np.sin(2 * math.pi * 2.5 * (t - s)))
                    smile = np.maximum(smile, d["smile"] * m)
                mouth = np.where(m > 0, np.maximum(mouth, osc * m), mouth)
                activity[(t >= s) & (t < e)] = {"eat": "eating", "talk": "talking", "laugh": "laughing"}[k]
            elif k == "rub_eyes":
                m = _bump(t, s, e, 0.3, 0.3)
                head_pitch = head_pitch - 5 * m
                activity[(t >= s) & (t < e)] = "rubbing_eyes"
            elif k in ("tunnel_entry", "tunnel_exit"):
                m = t >= s
                light[m] = d["label"]
                r = np.clip((t - s) / 1.0, 0, 1)
                log_lux = np.where(m, log_lux + (d["target"] - log_lux) * r, log_lux)
        for sm in self._spontaneous:
            head_pitch = head_pitch - sm["pitch"] * _bump(t, sm["p80"][0], sm["p80"][1] + 0.2, 0.5, 0.2)

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
        ol, orr = self.openness(t)
        return {"t": t, "open_l": ol, "open_r": orr, "mouth": np.clip(mouth, 0, 1), "yawn": yawn,
                "brow": np.clip(brow, 0, 1), "smile": np.clip(smile, 0, 1), "head_yaw": head_yaw,
                "head_pitch": head_pitch, "head_roll": head_roll, "eye_yaw": e_y, "eye_pitch": e_p,
                "zone": nearest_zone(head_yaw + e_y, head_pitch + e_p), "action": action, "phone": phone,
                "activity": activity, "lean": lean, "lighting": light, "lux": np.exp(log_lux), "lip_up": lip_up,
                "lip_stretch": lip_st}

    def frames(self, n_frames: int, fps: float) -> list[dict[str, Any]]:
        """Per-frame plan fields at t_i = i / fps."""
        ch = self.channels(np.arange(n_frames) / float(fps))
        out = []
        for i in range(n_frames):
            z = ch["zone"][i]
            out.append({
                "state": {
                    "eye_openness_left": round(float(ch["open_l"][i]), 4),
                    "eye_openness_right": round(float(ch["open_r"][i]), 4),
                    "mouth_open": round(float(ch["mouth"][i]), 4),
                    "yawn": str(ch["yawn"][i]),
                    "yawn_lips": None if ch["yawn"][i] == "none" else {
                        "upper_lip_raise": round(float(ch["lip_up"][i]), 4), "lip_stretch": round(float(ch["lip_stretch"][i]), 4)},
                    "brow_raise": round(float(ch["brow"][i]), 4),
                    "smile": round(float(ch["smile"][i]), 4),
                },
                "head_pose_car": {"yaw": round(float(ch["head_yaw"][i]), 3), "pitch": round(float(ch["head_pitch"][i]), 3),
                                  "roll": round(float(ch["head_roll"][i]), 3)},
                "gaze_in_head": {"yaw": round(float(ch["eye_yaw"][i]), 3), "pitch": round(float(ch["eye_pitch"][i]), 3),
                                 "distance_m": FIXATION_DISTANCE_M[z]},
                "gaze_zone": z,
                "action": str(ch["action"][i]),
                "phone": ch["phone"][i],
                "lighting": str(ch["lighting"][i]),
                "illuminance_lux": round(float(ch["lux"][i]), 3),
                "activity": ch["activity"][i],
                "body_lean_deg": round(float(ch["lean"][i]), 3),
            })
        return out

    def record(self) -> dict[str, Any]:
        """What shaped the clip's behaviour (stored as the clip's ``params.behaviour``)."""
        return {"version": BEHAVIOUR_VERSION, "driver": self.driver.to_dict(), "at_kss": dict(self.effective)}


# --------------------------------------------------------------------------- drawing a clip
def _glance_draw(rng: np.random.Generator, s: float, d: float, zone: str, movement: str, natural: bool = False) -> dict[str, Any]:
    ty, tp = GAZE_ZONES[zone]
    ty += rng.uniform(-3, 3)
    tp += rng.uniform(-3, 3)
    share = rng.uniform(0.75, 0.9) if movement == "owl" else rng.uniform(0.1, 0.3) if movement == "lizard" else rng.uniform(0.6, 0.8)
    hy, hp = ty * share, tp * share
    # eyes cannot rotate beyond their limits: the head takes the rest
    hy = ty - float(np.clip(ty - hy, -EYE_IN_HEAD_LIMIT[0], EYE_IN_HEAD_LIMIT[0]))
    hp = tp - float(np.clip(tp - hp, -EYE_IN_HEAD_LIMIT[1], EYE_IN_HEAD_LIMIT[1]))
    roll = float(np.sign(ty) * rng.uniform(6, 10)) if movement == "body_lean" else 0.0
    lean = float(np.sign(ty) * rng.uniform(8, 15)) if movement == "body_lean" else 0.0
    return {"s": float(s), "d": float(d), "zone": zone, "movement": movement, "ty": float(ty), "tp": float(tp),
            "hy": float(hy), "hp": float(hp), "roll": roll, "lean": lean, "natural": natural}


def _blink(rng_k: np.random.Generator, onset: float, eff: dict[str, float]) -> Closure:
    """Blink k from its own stream: phases lognormal around the driver's values; long blinks by share."""
    z = rng_k.standard_normal(3)
    v_long, x_long = rng_k.random(2)
    floor = float(rng_k.uniform(*BLINK_FLOOR))
    closing = eff["closing_s"] * math.exp(BLINK_SIGMA["closing_s"] * z[0])
    closed = eff["closed_s"] * math.exp(BLINK_SIGMA["closed_s"] * z[1])
    reopening = eff["reopening_s"] * math.exp(BLINK_SIGMA["reopening_s"] * z[2])
    kind = "blink"
    if v_long < eff["long_blink_share"]:
        lo, hi = LONG_BLINK_CLOSED_S
        closed = max(closed, lo + (hi - lo) * x_long)
        kind = "long_blink"
    return Closure(onset_s=q(onset), closing_s=q(max(closing, 0.02)), closed_s=q(min(closed, 0.8)),
                   reopening_s=q(max(reopening, 0.04)), floor=round(floor, 4), kind=kind)


def _rate_profile(segments: list[dict[str, Any]], base_rate: float, grid: np.ndarray) -> np.ndarray:
    """Blink rate (per minute) on a time grid: the driver's rate times the activity multipliers."""
    r = np.full(grid.shape, base_rate)
    for seg in segments:
        s, e = float(seg["start_s"]), float(seg["start_s"]) + float(seg["duration_s"])
        m = (grid >= s) & (grid < e)
        if seg["kind"] == "talk":
            r[m] *= RATE_MULTIPLIER["talking"]
        elif seg["kind"] == "phone" and seg.get("use", "texting") == "texting":
            r[m] *= RATE_MULTIPLIER["texting"]
    return r


def _overlaps(a0: float, a1: float, intervals: list[tuple[float, float]], margin: float) -> bool:
    return any(a0 < b1 + margin and a1 > b0 - margin for b0, b1 in intervals)


def simulate(
    kss: int,
    segments: list[dict[str, Any]],
    duration_s: float,
    rng: np.random.Generator,
    driver: DriverTraits | None = None,
    lighting: str = "daylight",
    illuminance_lux: float = 10_000.0,
) -> ClipModel:
    """Draw one clip's continuous-time behaviour (see the module doc)."""
    if not 1 <= kss <= 9:
        raise ValueError(f"kss must be 1..9 (got {kss})")
    D = float(duration_s)
    # independent streams, so that e.g. a different KSS changes the blinks but not the head sway
    seeds = [int(x) for x in rng.integers(0, 2**62, size=6)]
    r_pose, r_seg, r_times, r_ms = (np.random.default_rng(s) for s in seeds[:4])
    r_lips = np.random.default_rng([seeds[1], 1])  # each yawn's lips, on their own stream (the draws above stay)
    blink_seed = seeds[4]
    if driver is None:
        driver = DriverTraits.draw(np.random.default_rng(seeds[5]))
    eff = driver.at_kss(kss)
    u = r_pose.uniform
    const = {"head_yaw": u(-3, 3), "head_pitch": u(-3, 2) - 2.0 * eff["sleepiness_f"], "head_roll": u(-2, 2),
             "eye_yaw": u(-3, 3), "eye_pitch": u(-2, 2), "mouth": u(0.0, 0.06), "brow": u(0.0, 0.2),
             "base_open": eff["base_openness"]}
    smile = u(0.0, 0.15)
    const["smile"] = smile if kss <= 5 else 0.0
    sway = {k: _Sway.draw(r_pose, a) for k, a in (("head_yaw", 3.0), ("head_pitch", 2.0), ("head_roll", 1.5),
                                                 ("eye_yaw", 2.0), ("eye_pitch", 1.5), ("openness", 0.03))}
    model = ClipModel(kss=int(kss), duration_s=D, driver=driver, effective=eff, lighting=lighting,
                      illuminance_lux=float(illuminance_lux), segments=segments, _const=const, _sway=sway)
    events: list[dict[str, Any]] = []
    closures: list[Closure] = []
    draws: list[dict[str, Any]] = []
    u = r_seg.uniform

    def base_at(tt: float) -> float:
        bl, br = model.open_level(np.array([tt]))
        return float((bl[0] + br[0]) / 2)

    def glance_ev(g: dict[str, Any]) -> None:
        events.append({"type": "glance", "start_s": g["s"], "end_s": g["s"] + g["d"], "zone": g["zone"],
                       "movement": g["movement"], "natural": g["natural"]})

    # pass 1: segments that shape the open level (yawns, laughs, rubbing) and everything drawn per segment
    for seg in segments:
        k = seg["kind"]
        s = float(seg["start_s"])
        d = float(seg["duration_s"])
        e = s + d
        dr: dict[str, Any] = {"kind": k, "s": s, "e": e}
        if k in ("drive", "microsleep", "sleep", "blink"):
            continue  # closures: pass 2 (they need the open level drawn here)
        if k == "glance":
            g = _glance_draw(r_seg, s, d, seg["zone"], seg.get("movement", "owl"), bool(seg.get("_natural")))
            dr["glances"] = [g]
            glance_ev(g)
        elif k == "yawn":
            shape = YawnShape.split(s, d, u(*YAWN["amplitude"]), u(*YAWN["peak_frac"]), u(*YAWN["opening_share"]))
            dr.update(shape=shape, narrow=u(*YAWN["eye_narrow"]), pitch=u(*YAWN["head_tilt_deg"]),
                      label="yawning_with_hand" if seg.get("with_hand") else "yawning_without_hand",
                      lips=(round(float(r_lips.uniform(*YAWN["upper_lip_raise"])), 4),
                            round(float(r_lips.uniform(*YAWN["lip_stretch"])), 4)))
            events.append({"type": "yawn", "start_s": shape.start_s, "end_s": shape.end_s,
                           "with_hand": bool(seg.get("with_hand")), "opening_s": shape.opening_s,
                           "peak_s": shape.peak_s, "closing_s": shape.closing_s,
                           "amplitude": round(shape.amplitude, 4)})
        elif k == "nod":
            dr["pitch"] = u(10, 20)
            events.append({"type": "nod", "start_s": s, "end_s": s + min(d, 1.0)})
        elif k == "phone":
            hand, use = seg.get("hand", "right"), seg.get("use", "texting")
            dr.update(hand=hand, use=use, roll=u(4, 6))
            g0 = _glance_draw(r_seg, s, min(1.2, d), "steering_wheel", "owl")  # pick-up
            dr["glances"] = [g0]
            if use == "texting":
                tt = s + 1.2
                while tt < e - 0.3:
                    back = u(0.6, 1.5)
                    look = min(glance_duration("steering_wheel", r_seg, driver.glance_scale), e - tt - back)
                    if look <= 0.3:
                        break
                    dr["glances"].append(_glance_draw(r_seg, tt + back, look, "steering_wheel",
                                                      "lizard" if r_seg.random() < 0.5 else "owl", natural=True))
                    tt += back + look
            for g in dr["glances"]:
                glance_ev(g)
            events.append({"type": "phone", "start_s": s, "end_s": e, "hand": hand, "use": use})
        elif k in ("eat", "talk", "laugh"):
            dr["smile"] = u(0.7, 1.0)
            if k == "talk" and d > 2.5:
                look = min(glance_duration("right", r_seg, driver.glance_scale), d - 1.3)
                g = _glance_draw(r_seg, s + u(0.5, max(0.5, d - 0.8 - look)), look, "right", "owl", natural=True)
                dr["glances"] = [g]
                glance_ev(g)
            events.append({"type": {"eat": "eating", "talk": "talking", "laugh": "laughing"}[k], "start_s": s, "end_s": e})
        elif k == "rub_eyes":
            hand = seg.get("hand", "right")
            dr.update(hand=hand, far_narrow=u(0.4, 0.55))
        elif k in ("tunnel_entry", "tunnel_exit"):
            if k == "tunnel_entry":
                dr.update(target=u(math.log(LUX["tunnel"][0]), math.log(LUX["tunnel"][1])), label="tunnel")
            else:
                dr.update(target=math.log(u(*LUX["daylight"])), label="daylight")
            events.append({"type": k, "start_s": s, "end_s": min(e, D)})
        draws.append(dr)
    model._draws = draws

    # pass 2: scripted closures (placed on the open level drawn above)
    scripted: list[tuple[float, float]] = []
    for seg in segments:
        k = seg["kind"]
        s = float(seg["start_s"])
        d = float(seg["duration_s"])
        if k in ("microsleep", "sleep"):
            tc = u(0.25, 0.4) if k == "microsleep" else 0.5
            to = u(0.3, 0.6) if k == "microsleep" else 0.6
            floor = u(0.02, 0.06)
            start = max(s, tc)
            cl = closure_for_closed_interval(start, d, base_at(start), tc, to, floor, CLOSED_OPENNESS, kind=k)
            closures.append(cl)
            scripted.append((cl.onset_s, cl.end_s))
            dr = {"kind": k, "s": s, "e": s + d, "closure": cl, "p80": (start, start + d),
                  "pitch": u(6, 15) if k == "microsleep" else u(20, 30), "roll": u(-10, 10) if k == "sleep" else 0.0}
            draws.append(dr)
        elif k == "blink":
            eb = dict(eff)
            for ph in ("closing_s", "closed_s", "reopening_s"):
                if seg.get(ph) is not None:
                    eb[ph] = float(seg[ph])
            cl = Closure(onset_s=q(s), closing_s=q(eb["closing_s"]), closed_s=q(eb["closed_s"]),
                         reopening_s=q(eb["reopening_s"]), floor=round(u(*BLINK_FLOOR), 4), kind="scripted_blink")
            if cl.end_s > s + d + 1e-9:
                raise ValueError(
                    f"segment at {s:g} s (blink): the blink lasts {cl.duration_s:.3f} s (closing/closed/reopening from "
                    f"the driver at KSS {kss} where not given), longer than its duration_s {d:g}; lengthen the segment "
                    "or give closing_s, closed_s and reopening_s")
            closures.append(cl)
            scripted.append((cl.onset_s, cl.end_s))
        elif k == "rub_eyes":
            hand = seg.get("hand", "right")
            # the rubbed eye closes to 0.08 with the hand's 0.3 s approach and release
            cl = Closure(onset_s=q(s), closing_s=0.3, closed_s=q(max(d - 0.6, 0.0)), reopening_s=0.3, floor=0.08,
                         eyes=hand, kind="rub_eyes", reopen_gamma=1.0)
            closures.append(cl)
            scripted.append((cl.onset_s, cl.end_s))  # no blinks while a hand is at the eye
    model._draws = draws

    # spontaneous microsleeps (KSS >= 8): only in free driving time
    busy = [(float(sg["start_s"]), float(sg["start_s"]) + float(sg["duration_s"])) for sg in segments if sg["kind"] != "drive"]
    spont: list[dict[str, Any]] = []
    rate_ms = eff["microsleeps_per_min"] / 60.0
    if rate_ms > 0:
        tt = float(r_ms.exponential(1.0 / rate_ms))
        while tt < D:
            dur = float(np.clip(MICROSLEEP_P80_S["median"] * math.exp(MICROSLEEP_P80_S["sigma"] * r_ms.standard_normal()),
                                MICROSLEEP_P80_S["lo"], MICROSLEEP_P80_S["hi"]))
            tc, to, floor, pitch = r_ms.uniform(0.25, 0.4), r_ms.uniform(0.3, 0.6), r_ms.uniform(0.02, 0.06), r_ms.uniform(6, 15)
            start = max(tt, tc)
            span = (start - tc, start + dur + to)
            if span[1] < D and not _overlaps(*span, busy + scripted, 1.0):
                cl = closure_for_closed_interval(start, dur, base_at(start), tc, to, floor, CLOSED_OPENNESS, kind="microsleep")
                closures.append(cl)
                scripted.append((cl.onset_s, cl.end_s))
                spont.append({"closure": cl, "p80": (start, start + dur), "pitch": pitch})
            tt = span[1] + float(r_ms.exponential(1.0 / rate_ms))
    model._spontaneous = spont

    # spontaneous blinks: renewal process in rescaled time (gamma k=2, mean 1 blink)
    grid = np.arange(0.0, D + 2.0, 0.01)
    rate = _rate_profile(segments, eff["blink_rate_per_min"], grid) / 60.0
    lam = np.concatenate([[0.0], np.cumsum(rate[:-1] * 0.01)])
    x = float(r_times.gamma(2.0, 0.5)) * float(r_times.uniform(0.0, 1.0))
    prev_end = -1.0
    k = 0
    while x < lam[-1]:
        onset = float(np.interp(x, lam, grid))
        if onset >= D:
            break
        onset = max(onset, prev_end + BLINK_GAP_S)
        cl = _blink(np.random.default_rng([blink_seed, k]), onset, eff)
        if not _overlaps(cl.onset_s, cl.end_s, scripted, CLOSURE_MARGIN_S) and cl.onset_s < D:
            closures.append(cl)
            prev_end = cl.end_s
        k += 1
        x += float(r_times.gamma(2.0, 0.5))
    closures.sort(key=lambda c: (c.onset_s, c.eyes))
    model.closures = closures

    # closure events with their P80 interval (from the continuous curve, 0.5 ms grid)
    for c in closures:
        tt = np.arange(c.onset_s - 0.001, c.end_s + 0.001, 0.0005)
        ol, orr = model.openness(tt)
        eye = (ol + orr) / 2 if c.eyes == "both" else (ol if c.eyes == "left" else orr)
        iv = closed_interval(tt, eye, CLOSED_OPENNESS)
        ev_type = {"blink": "blink", "long_blink": "blink", "scripted_blink": "blink", "microsleep": "microsleep",
                   "sleep": "sleep", "rub_eyes": "rubbing_eyes"}[c.kind]
        # open level of the closing eye(s) at onset and at the end: the labeller's P80 crossings use it
        lid = {**c.lid(), "open_level": [round(float(eye[0]), 4), round(float(eye[-1]), 4)]}
        ev: dict[str, Any] = {"type": ev_type, "start_s": c.onset_s, "end_s": c.end_s, "lid_kind": c.kind, "lid": lid,
                              "p80_start_s": iv[0] if iv else None, "p80_end_s": iv[1] if iv else None,
                              "p80_closed_s": (iv[1] - iv[0]) if iv else 0.0,
                              "half_amplitude_s": c.half_amplitude_s}
        if c.kind == "rub_eyes":
            ev["hand"] = c.eyes
        if c.kind == "microsleep":
            ev["spontaneous"] = any(sm["closure"] is c for sm in spont)
        events.append(ev)
    for ev in events:
        for k2, v in list(ev.items()):
            if k2.endswith("_s") and isinstance(v, float):
                ev[k2] = round(v, 4)
    events.sort(key=lambda ev: (ev["start_s"], ev["type"]))
    model.events = events
    return model


def synthesize(
    kss: int,
    segments: list[dict[str, Any]],
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    lighting: str = "daylight",
    illuminance_lux: float = 10_000.0,
    driver: DriverTraits | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-frame fields and events (continuous time) of one clip: :func:`simulate` sampled at i / fps."""
    model = simulate(kss, segments, n_frames / float(fps), rng, driver, lighting, illuminance_lux)
    return model.frames(n_frames, fps), model.events
