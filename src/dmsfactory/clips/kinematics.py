"""Continuous-time eyelid and mouth kinematics: closures and yawns as curves of time, sampled at frame times.

An eyelid closure (a blink, a long blink, a microsleep, sleep onset, or the rubbed eye's closure) is
four phases of the lid, each with its own duration (:class:`Closure`):

* ``closing`` (``onset_s`` .. ``onset_s + closing_s``): the lid falls from the eye's current open
  level to the closure's floor along a minimum-jerk (quintic smoothstep) profile -- a ballistic
  movement with a bell-shaped velocity, as the closing phase of a spontaneous blink is;
* ``closed`` (``closed_s``): the lid rests at the floor (0..0.06 of the open aperture);
* ``reopening`` (``reopening_s``): the lid rises back along ``1 - S(u ** gamma)`` with
  ``gamma = 0.5``: smooth start, velocity peak at 1/9 of the phase, a slow final approach -- the
  reopening phase is slower than the closing one and ends in a long tail (Stern, Walrath & Goldstein
  1984; Sforza et al. 2008);
* afterwards the lid is open again.

Openness of an eye at time t is ``base(t) * (1 - a(t)) + floor * a(t)`` where ``a`` is the largest
activation (0 open .. 1 at the floor) of the closures covering that eye and ``base`` is the eye's
open level (slow drift, KSS droop, narrowing in a yawn or a laugh). Nothing else moves the lid down
to the closed level, so the DMD eye states ``closing``/``close``/``opening`` are exactly the phases of
the closures and drift never produces them.

Closure parameters are quantised to 0.1 ms when drawn, so the values recorded in the clip's events
are exactly the ones the frames were sampled from (the temporal labeller recomputes the phase
boundaries from the record, :func:`closures_from_events`).

A yawn (:class:`YawnShape`) is a slow opening (minimum-jerk), a short plateau at the peak (the acme)
and a faster closing (minimum-jerk), after the phase description of Barbizet (1958) / Provine (1986)
("a long inspiration, a brief acme, a rapid expiration").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

REOPEN_GAMMA = 0.5  # time warp of the reopening profile: peak velocity at 1/9 of the phase, slow tail
LID_KINDS = ("blink", "long_blink", "scripted_blink", "microsleep", "sleep", "rub_eyes")
EYES = ("both", "left", "right")


def q(x: float) -> float:
    """Round a time to the record's quantum (0.1 ms)."""
    return round(float(x), 4)


def smoothstep5(u: np.ndarray | float) -> np.ndarray:
    """Minimum-jerk position profile 0..1 on u in [0, 1] (clipped outside)."""
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    return u * u * u * (10.0 - 15.0 * u + 6.0 * u * u)


def inverse_smoothstep5(y: float) -> float:
    """u in [0, 1] with smoothstep5(u) = y (bisection; y clipped to [0, 1])."""
    y = min(max(float(y), 0.0), 1.0)
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(smoothstep5(mid)) < y:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Closure:
    """One eyelid closure; times in seconds from the clip start (see the module doc)."""

    onset_s: float
    closing_s: float
    closed_s: float
    reopening_s: float
    floor: float = 0.03
    eyes: str = "both"
    kind: str = "blink"
    reopen_gamma: float = REOPEN_GAMMA
    open_level: tuple[float, float] | None = None  # recorded open level at onset and end (for P80 crossings)

    def __post_init__(self) -> None:
        if self.closing_s <= 0 or self.reopening_s <= 0 or self.closed_s < 0:
            raise ValueError(f"closure phases must be positive (closing_s {self.closing_s}, closed_s {self.closed_s}, "
                             f"reopening_s {self.reopening_s})")
        if not 0 <= self.floor < 0.2:
            raise ValueError(f"closure floor must be in [0, 0.2) (got {self.floor})")
        if self.eyes not in EYES:
            raise ValueError(f"closure eyes must be one of {EYES} (got {self.eyes!r})")
        if self.kind not in LID_KINDS:
            raise ValueError(f"closure kind must be one of {LID_KINDS} (got {self.kind!r})")

    # phase boundaries (computed the same way everywhere, so records and samples agree exactly)
    @property
    def closed_start_s(self) -> float:
        return self.onset_s + self.closing_s

    @property
    def closed_end_s(self) -> float:
        return self.onset_s + self.closing_s + self.closed_s

    @property
    def end_s(self) -> float:
        return self.onset_s + self.closing_s + self.closed_s + self.reopening_s

    @property
    def duration_s(self) -> float:
        return self.end_s - self.onset_s

    def covers(self, eye: str) -> bool:
        return self.eyes == "both" or self.eyes == eye

    def activation(self, t: np.ndarray) -> np.ndarray:
        """0 (open) .. 1 (lid at the floor) at times ``t``."""
        t = np.asarray(t, dtype=np.float64)
        a = np.zeros_like(t)
        c0, c1, c2, c3 = self.onset_s, self.closed_start_s, self.closed_end_s, self.end_s
        m = (t >= c0) & (t < c1)
        a[m] = smoothstep5((t[m] - c0) / self.closing_s)
        a[(t >= c1) & (t <= c2)] = 1.0
        m = (t > c2) & (t < c3)
        a[m] = 1.0 - smoothstep5(((t[m] - c2) / self.reopening_s) ** self.reopen_gamma)
        return a

    def phase(self, t: np.ndarray) -> np.ndarray:
        """Per time: 0 outside, 1 closing, 2 closed, 3 reopening (half-open intervals [start, end))."""
        t = np.asarray(t, dtype=np.float64)
        ph = np.zeros(t.shape, dtype=np.int8)
        ph[(t >= self.onset_s) & (t < self.closed_start_s)] = 1
        ph[(t >= self.closed_start_s) & (t < self.closed_end_s)] = 2
        ph[(t >= self.closed_end_s) & (t < self.end_s)] = 3
        return ph

    @property
    def half_amplitude_s(self) -> float:
        """Time the lid spends past half its excursion (the "blink duration at half amplitude")."""
        return 0.5 * self.closing_s + self.closed_s + self.reopening_s * 0.5 ** (1.0 / self.reopen_gamma)

    def lid(self) -> dict[str, Any]:
        """The closure's record (stored under an event's ``lid`` key)."""
        d = asdict(self)
        d.pop("kind")
        if d["open_level"] is None:
            d.pop("open_level")
        else:
            d["open_level"] = [float(v) for v in d["open_level"]]
        return d

    @classmethod
    def from_lid(cls, lid: dict[str, Any], kind: str = "blink") -> "Closure":
        try:
            lv = lid.get("open_level")
            return cls(onset_s=float(lid["onset_s"]), closing_s=float(lid["closing_s"]), closed_s=float(lid["closed_s"]),
                       reopening_s=float(lid["reopening_s"]), floor=float(lid.get("floor", 0.03)),
                       eyes=str(lid.get("eyes", "both")), kind=kind,
                       reopen_gamma=float(lid.get("reopen_gamma", REOPEN_GAMMA)),
                       open_level=(float(lv[0]), float(lv[1])) if lv is not None else None)
        except KeyError as e:
            raise ValueError(f"closure record lacks {e} (needs onset_s, closing_s, closed_s, reopening_s)") from None


def closure_for_closed_interval(start_s: float, closed_p80_s: float, base: float, closing_s: float,
                                reopening_s: float, floor: float, thr: float = 0.2, **kw: Any) -> Closure:
    """A closure whose openness is <= ``thr`` from ``start_s`` for ``closed_p80_s`` (for an eye at the open
    level ``base``): scripted microsleeps and sleep are specified by their closed (P80) duration."""
    c = (base - thr) / max(base - floor, 1e-6)  # activation at which openness crosses thr
    u = inverse_smoothstep5(c)
    v = inverse_smoothstep5(1.0 - c) ** (1.0 / REOPEN_GAMMA)
    onset = q(start_s - u * closing_s)
    closed = q(max(0.0, closed_p80_s - (1.0 - u) * closing_s - v * reopening_s))
    return Closure(onset_s=onset, closing_s=q(closing_s), closed_s=closed, reopening_s=q(reopening_s), floor=floor, **kw)


def apply_closures(t: np.ndarray, base: np.ndarray, floor_eye: str, closures: list[Closure]) -> np.ndarray:
    """Openness of one eye: ``base * (1 - a) + floor * a`` with the covering closure of largest activation."""
    out = np.asarray(base, dtype=np.float64).copy()
    best = np.zeros(np.shape(t))
    for c in closures:
        if not c.covers(floor_eye):
            continue
        a = c.activation(t)
        m = a > best
        if m.any():
            out[m] = base[m] * (1.0 - a[m]) + c.floor * a[m]
            best[m] = a[m]
    return out


def closed_interval(t: np.ndarray, openness: np.ndarray, thr: float) -> tuple[float, float] | None:
    """First and last time a finely sampled openness curve is <= thr (linear interpolation at both ends)."""
    m = openness <= thr
    if not m.any():
        return None
    i, j = int(np.argmax(m)), int(len(m) - 1 - np.argmax(m[::-1]))

    def cross(a: int, b: int) -> float:  # thr crossing between samples a and b
        oa, ob = openness[a], openness[b]
        if oa == ob:
            return float(t[b])
        return float(t[a] + (t[b] - t[a]) * (oa - thr) / (oa - ob))

    start = cross(i - 1, i) if i > 0 else float(t[i])
    end = cross(j + 1, j) if j + 1 < len(m) else float(t[j])
    return start, end


def closures_from_events(events: Iterable[dict[str, Any]]) -> list[Closure]:
    """The eyelid closures recorded in a clip's events (every event with a ``lid`` record), in onset order."""
    out = []
    for i, ev in enumerate(events):
        lid = ev.get("lid") if isinstance(ev, dict) else None
        if lid is None:
            continue
        kind = ev.get("lid_kind", ev.get("type", "blink"))
        try:
            out.append(Closure.from_lid(lid, kind))
        except ValueError as e:
            raise ValueError(f"events[{i}] ({ev.get('type')}): {e}") from None
    return sorted(out, key=lambda c: (c.onset_s, c.eyes))


# --------------------------------------------------------------------------- yawns
@dataclass(frozen=True)
class YawnShape:
    """Mouth opening of one yawn: slow opening, short acme, faster closing (seconds; amplitude 0..1)."""

    start_s: float
    opening_s: float
    peak_s: float
    closing_s: float
    amplitude: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.opening_s + self.peak_s + self.closing_s

    @property
    def duration_s(self) -> float:
        return self.opening_s + self.peak_s + self.closing_s

    def curve(self, t: np.ndarray) -> np.ndarray:
        """0..1 (times the amplitude gives the mouth opening)."""
        t = np.asarray(t, dtype=np.float64)
        s1 = self.start_s + self.opening_s
        s2 = s1 + self.peak_s
        y = np.zeros_like(t)
        m = (t >= self.start_s) & (t < s1)
        y[m] = smoothstep5((t[m] - self.start_s) / self.opening_s)
        y[(t >= s1) & (t <= s2)] = 1.0
        m = (t > s2) & (t < self.end_s)
        y[m] = 1.0 - smoothstep5((t[m] - s2) / self.closing_s)
        return y

    @classmethod
    def split(cls, start_s: float, duration_s: float, amplitude: float, peak_frac: float, opening_share: float) -> "YawnShape":
        """A yawn of ``duration_s``: the acme takes ``peak_frac`` of it, the opening ``opening_share`` of the rest."""
        peak = duration_s * peak_frac
        rest = duration_s - peak
        return cls(start_s=q(start_s), opening_s=q(rest * opening_share), peak_s=q(peak),
                   closing_s=q(rest * (1 - opening_share)), amplitude=float(amplitude))


def rise_fall_times(t: np.ndarray, y: np.ndarray, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float] | None:
    """10-90 % rise time and 90-10 % fall time of a single bump ``y(t)`` (relative to its peak), or None."""
    y = np.asarray(y, dtype=np.float64)
    if y.size < 3 or y.max() <= 0:
        return None
    peak = y.max()
    k = int(np.argmax(y))
    up = np.flatnonzero(y[: k + 1] < lo * peak)
    up_hi = np.flatnonzero(y[: k + 1] >= hi * peak)
    dn_hi = np.flatnonzero(y[k:] >= hi * peak)
    dn = np.flatnonzero(y[k:] < lo * peak)
    if not (up.size and up_hi.size and dn.size and dn_hi.size):
        return None
    rise = float(t[up_hi[0]] - t[up[-1]])
    fall = float(t[k + dn[0]] - t[k + dn_hi[-1]])
    return rise, fall
