"""Per-driver behaviour traits, how sleepiness (KSS) shifts them, and the reference figures behind them.

A *driver* is an identity: its traits are drawn once from the distributions below with a seed derived
from the identity (:func:`driver_traits`), so every clip of that person blinks and glances the same
way; the clip's KSS then shifts them (:meth:`DriverTraits.at_kss`). Traits and their KSS-shifted values
are recorded in each clip (``params.behaviour`` and ``labels.behaviour``).

Trait distributions (per driver) and the figures they are calibrated to:

================================  =====================================  =========================================
trait                             distribution                           reference figure
================================  =====================================  =========================================
``blink_rate_per_min``            lognormal, median 12.5, sigma 0.25,    looking ahead 10.3 +/- 3.1 /min, 95 % range
                                  clipped 6-30 (95 %: 7.7-20.4)          8-21 (Doughty 2001/2002; Bentivoglio 1997)
``closing_s``                     lognormal, median 0.085 s, sigma       closing ~70-100 ms (Stern, Walrath &
                                  0.12, clipped 0.06-0.12                Goldstein 1984; Sforza et al. 2008)
``close_open_ratio``              normal 0.565 +/- 0.035, clipped        closing 40-47 % faster than reopening
                                  0.45-0.68 (reopening = closing/ratio)  (Sforza et al. 2008): ratio 0.53-0.60
``closed_s``                      lognormal, median 0.03 s, sigma 0.3,   lid closed <= 300 ms in a spontaneous blink
                                  clipped 0.01-0.1
``sleepiness_sensitivity``        lognormal, median 1, sigma 0.3,        large individual differences in the KSS
                                  clipped 0.5-2                          effect (Ingre et al. 2006; Schleicher 2008)
``base_openness``                 uniform 0.86-0.98                      (fraction of this subject's full aperture)
``eye_asymmetry``                 uniform -0.02..0.02                    (left minus right openness / 2)
``glance_scale``                  lognormal, median 1, sigma 0.15        (driver's factor on glance durations)
``yawn_duration_s``               normal 6.25 +/- 0.4 s, clipped 5-7.5   yawns ~6-6.5 s (Gallup et al. 2016)
================================  =====================================  =========================================

Per blink, each phase varies around the driver's value: closing and reopening lognormal (sigma 0.15
and 0.18), closed lognormal (sigma 0.45); the lid's floor is uniform 0-0.06. 0.2 % of an alert
driver's blinks are *long blinks* (lid closed 0.3-0.75 s, total >= 0.5 s: Ousler et al. 2014 found
blinks of 0.5 s or more to be 0.2 % of blinks).

Sleepiness. With ``f = ((KSS - 5) / 4) ** 1.5`` for KSS > 5 (0 when alert; 0.125, 0.35, 0.65, 1 at
KSS 6-9: a convex curve, steepest at KSS 8-9, as the quadratic trend of blink duration over KSS in
Ingre et al. 2006) and ``g`` the driver's ``sleepiness_sensitivity``, the driver's values become:

* closing time x (1 + 0.35 f g), closed time x (1 + 5 f g), reopening time x (1 + 1.2 f g):
  blink duration and the reopening delay rise with sleepiness (Caffier et al. 2003; Schleicher et
  al. 2008);
* long-blink share 0.002 + 0.50 f g (at most 0.6): the share of long-closure blinks rises (Caffier
  2003); long blink here: lid closed 0.3-0.75 s, so still < 1 s at P80 (not a microsleep);
* blink rate x (1 + 0.25 f g) (Caffier 2003 report more frequent blinks when drowsy; other studies
  find the opposite, so the shift is kept small);
* open level x (1 - 0.22 f g): lids droop;
* spontaneous microsleeps (eyes closed 1.05-2.9 s at P80, lognormal median 2.0 s, sigma 0.3) at
  ``3.5 * max(0, f - 0.5) / 0.5 * g`` per minute of free driving (next one no earlier than the end of
  the last): none up to KSS 7, about 1/min at KSS 8 and 2.5/min at KSS 9 as realised in 60-s clips.
  Microsleeps in simulators last 1-15 s, median 3.4 s; the spontaneous ones here stay below Euro
  NCAP's 3 s so that longer closures are the scripted ``sleep`` segments.

The sizes of these shifts are not read off one study: the literature gives their direction and
shape (monotone, convex, large between-driver differences) more firmly than their size. They are
calibrated so that 60-s drive clips reproduce the published PERCLOS levels: a few % when alert,
about 11 % at KSS 8 (published: 10-12 % around the first microsleep) and above the 15 % drowsy
threshold at KSS 9 for most drivers (published alert level: about 6 %). Measured figures:
benchmarks/clips_behaviour.py and docs/clips.md.

Glances (duration includes both transits), per target zone, times the driver's ``glance_scale``:
mirrors lognormal median 0.9 s, sigma 0.3 (0.4-2.0 s; mirror-glance means of about 1 s are the usual
published order of magnitude); in-vehicle targets (infotainment, steering_wheel/instrument cluster,
phone) lognormal median 0.85 s, sigma 0.4, so the 85th percentile is 1.3 s (NHTSA 2013 visual-manual
guidelines: 85th-percentile in-vehicle glance 1.3 s; 2 s single / 12 s total as the limits), clipped
0.3-2.5 s; outside the windscreen (left, right, front_right) median 1.0 s, sigma 0.45, 0.3-2.8 s.
Euro NCAP's protocol scenarios (long distraction >= 3 s, visual time-sharing) keep their protocol
durations (dmsfactory.clips.behaviour).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dmsfactory.seeds import rng as seeded_rng

BEHAVIOUR_VERSION = "2.1.0"  # bump when the behaviour models change what a seed produces
# 2.1.0: each yawn draws its lips (YAWN["upper_lip_raise"], YAWN["lip_stretch"]; frames' state.yawn_lips)

# per-blink variability (lognormal sigmas) and per-blink floor
BLINK_SIGMA = {"closing_s": 0.15, "closed_s": 0.45, "reopening_s": 0.18}
BLINK_FLOOR = (0.0, 0.06)
LONG_BLINK_CLOSED_S = (0.3, 0.75)
LONG_BLINK_ALERT_SHARE = 0.002
# KSS effects at f = 1, g = 1 (see the module doc)
KSS_EFFECT = {"closing_s": 0.35, "closed_s": 5.0, "reopening_s": 1.2, "long_blink_share": 0.50,
              "blink_rate": 0.25, "openness_droop": 0.22, "microsleeps_per_min": 3.5}
MICROSLEEP_P80_S = {"median": 2.0, "sigma": 0.3, "lo": 1.05, "hi": 2.9}
# glance duration per zone group: (median s, lognormal sigma, lo, hi)
GLANCE_DURATION = {
    "mirror": (0.9, 0.3, 0.4, 2.0),
    "in_vehicle": (0.85, 0.4, 0.3, 2.5),
    "outside": (1.0, 0.45, 0.3, 2.8),
}
ZONE_GROUP = {"left_mirror": "mirror", "center_mirror": "mirror", "right_mirror": "mirror",
              "infotainment": "in_vehicle", "steering_wheel": "in_vehicle",
              "left": "outside", "right": "outside", "front_right": "outside"}
# activity multipliers of the blink rate: talking 26 /min, reading 4.5 /min vs 10.3 looking ahead
# (Doughty 2001): talking x 2.0, reading a phone (texting) x 0.45
RATE_MULTIPLIER = {"talking": 2.0, "texting": 0.45}
YAWN = {"duration_mean_s": 6.25, "driver_sd_s": 0.4, "yawn_sd_s": 0.5, "lo_s": 4.8, "hi_s": 8.0,
        "peak_frac": (0.1, 0.18), "opening_share": (0.6, 0.7),
        "amplitude": (0.7, 1.0),  # the widest opening (mouth_open)
        "labelled_open": 0.3,  # a moment of a yawn is labelled yawning while the mouth opens >= this (clips and stills)
        "head_tilt_deg": (4.0, 8.0),  # the head tilts up with the mouth, times the yawn's level (clips and stills)
        "eye_narrow": (0.35, 0.5),  # the eyes narrow by this share at the acme, times the yawn's level (clips and stills)
        # the lips of one yawn (clips and stills; renderer blendshape weights times the opening): how far the
        # upper lip rises (mouthUpperUp) and how far the lips stretch (mouthStretch); until renderer 0.10.0
        # every yawn had 0.35 and 0.55 (render.YAWN_LIPS_DEFAULT, still used where a plan entry has none)
        "upper_lip_raise": (0.35, 1.0), "lip_stretch": (0.55, 0.9)}

# reference figures (issue 24) used by the benchmark and the dataset card
REFERENCE = {
    "alert_blink_duration_median_s": (0.15, 0.35),
    "alert_long_blink_share_max": 0.01,  # blinks >= 0.5 s: 0.2 % (Ousler et al. 2014); target < 1 %
    "closing_s": (0.07, 0.10),
    "closed_s_max": 0.30,
    "reopening_s": (0.10, 0.20),
    "closing_shorter_share_min": 0.90,
    "blink_rate_per_min": (8.0, 21.0),
    "blink_rate_mean_sd": (10.3, 3.1),
    "perclos_alert": 0.06,
    "perclos_first_microsleep": (0.10, 0.12),
    "perclos_drowsy_threshold": 0.15,
    "yawn_duration_s": (6.0, 6.5),
    "in_vehicle_glance_p85_s": 1.3,
    "single_glance_max_s": 2.0,
    "long_distraction_s": 3.0,
    "microsleep_s": (1.0, 15.0),
    "microsleep_median_s": 3.4,
    "long_blink_half_amplitude_s": 0.15,
}


def sleepiness(kss: int) -> float:
    """f(KSS): 0 for KSS <= 5, ((KSS - 5) / 4) ** 1.5 above (0.125, 0.354, 0.650, 1.0 at KSS 6-9)."""
    if not 1 <= kss <= 9:
        raise ValueError(f"kss must be 1..9 (got {kss})")
    return 0.0 if kss <= 5 else ((kss - 5) / 4.0) ** 1.5


def _lognormal(rng: np.random.Generator, median: float, sigma: float, lo: float, hi: float) -> float:
    return float(np.clip(median * math.exp(sigma * rng.standard_normal()), lo, hi))


@dataclass(frozen=True)
class DriverTraits:
    blink_rate_per_min: float
    closing_s: float
    close_open_ratio: float
    closed_s: float
    sleepiness_sensitivity: float
    base_openness: float
    eye_asymmetry: float
    glance_scale: float
    yawn_duration_s: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "DriverTraits":
        """One driver from the documented distributions (fixed draw order)."""
        return cls(
            blink_rate_per_min=round(_lognormal(rng, 12.5, 0.25, 6.0, 30.0), 4),
            closing_s=round(_lognormal(rng, 0.085, 0.12, 0.06, 0.12), 4),
            close_open_ratio=round(float(np.clip(rng.normal(0.565, 0.035), 0.45, 0.68)), 4),
            closed_s=round(_lognormal(rng, 0.03, 0.3, 0.01, 0.1), 4),
            sleepiness_sensitivity=round(_lognormal(rng, 1.0, 0.3, 0.5, 2.0), 4),
            base_openness=round(float(rng.uniform(0.86, 0.98)), 4),
            eye_asymmetry=round(float(rng.uniform(-0.02, 0.02)), 4),
            glance_scale=round(_lognormal(rng, 1.0, 0.15, 0.7, 1.4), 4),
            yawn_duration_s=round(float(np.clip(rng.normal(YAWN["duration_mean_s"], YAWN["driver_sd_s"]), 5.0, 7.5)), 4),
        )

    @property
    def reopening_s(self) -> float:
        return self.closing_s / self.close_open_ratio

    def at_kss(self, kss: int) -> dict[str, float]:
        """The driver's blink parameters at this KSS (medians of the per-blink distributions)."""
        f = sleepiness(kss)
        fg = f * self.sleepiness_sensitivity
        e = KSS_EFFECT
        return {
            "kss": int(kss),
            "sleepiness_f": round(f, 4),
            "blink_rate_per_min": round(self.blink_rate_per_min * (1 + e["blink_rate"] * fg), 4),
            "closing_s": round(self.closing_s * (1 + e["closing_s"] * fg), 4),
            "closed_s": round(self.closed_s * (1 + e["closed_s"] * fg), 4),
            "reopening_s": round(self.reopening_s * (1 + e["reopening_s"] * fg), 4),
            "long_blink_share": round(min(0.6, LONG_BLINK_ALERT_SHARE + e["long_blink_share"] * fg), 4),
            "base_openness": round(self.base_openness * (1 - e["openness_droop"] * fg), 4),
            "microsleeps_per_min": round(e["microsleeps_per_min"] * max(0.0, f - 0.5) / 0.5 * self.sleepiness_sensitivity, 4),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def driver_traits(*seed_parts: Any) -> DriverTraits:
    """The traits of the driver identified by ``seed_parts`` (e.g. the identity's seed)."""
    return DriverTraits.draw(seeded_rng("driver-traits", *seed_parts))


def glance_duration(zone: str, rng: np.random.Generator, scale: float = 1.0) -> float:
    """A natural glance duration (s, transits included) to ``zone`` from the per-zone distribution."""
    if zone not in ZONE_GROUP:
        raise ValueError(f"glance zone {zone!r} has no duration distribution (zones: {', '.join(ZONE_GROUP)})")
    med, sig, lo, hi = GLANCE_DURATION[ZONE_GROUP[zone]]
    return float(np.clip(med * scale * math.exp(sig * rng.standard_normal()), lo, hi))


def yawn_duration(rng: np.random.Generator, driver: DriverTraits | None = None) -> float:
    mean = driver.yawn_duration_s if driver is not None else YAWN["duration_mean_s"]
    return float(np.clip(rng.normal(mean, YAWN["yawn_sd_s"]), YAWN["lo_s"], YAWN["hi_s"]))
