"""Render clip plans frame by frame and attach per-frame and temporal labels.

A clip's frames share identity_seed, sample_seed, accessory and camera, so the renderer draws the same
person with the same fine detail in every frame; only the per-frame fields (expression, pose, gaze,
hands/phone, lighting) change. Any generator with ``generate(plan_entries) -> list[FaceSample]``
can draw the frames (``frame_generator=``): the procedural renderer by default; a ControlNet
diffusion generator conditioned on the renderer's geometry could be passed the same way (not wired
here, see docs/clips.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dmsfactory.clips.config import ClipsConfig
from dmsfactory.labelers.temporal import TemporalParams, temporal_labels_from_frames
from dmsfactory.sample import FaceSample, Verdicts

# 2.0.0 (behaviour 2.0.0): eye states and blinks from the recorded lid curves; blink records gain onset_s/end_s,
# half_amplitude_s, p80_*; closed_s is the lid's closed phase (was the P80 time); labels.behaviour added
CLIP_SCHEMA_VERSION = "2.0.0"
# per-frame temporal fields copied into each frame's labels["temporal"]
FRAME_TEMPORAL_FIELDS = (
    "eye_state", "eye_state_left", "eye_state_right", "eye_openness", "eyes_closed", "blink_id", "perclos_p80",
    "perclos_full_window", "on_road", "off_road_run_s", "vats_accumulator_s", "long_distraction",
    "visual_time_sharing", "unresponsive", "state", "euro_ncap_category",
)


def temporal_params(cfg: ClipsConfig) -> TemporalParams:
    t = cfg.temporal
    return TemporalParams(
        closed_openness=t.closed_openness,
        microsleep_min_s=t.microsleep_min_s,
        sleep_min_s=t.sleep_min_s,
        perclos_window_s=t.perclos_window_s,
        perclos_min_window_s=t.perclos_min_window_s,
        perclos_drowsy=t.perclos_drowsy,
        long_distraction_s=t.long_distraction_s,
        vats_window_s=t.vats_window_s,
        vats_threshold_s=t.vats_threshold_s,
        vats_reset_s=t.vats_reset_s,
        unresponsive_s=t.unresponsive_s,
        min_fixation_s=t.min_fixation_s,
        on_road_zones=tuple(t.on_road_zones),
    )


@dataclass
class ClipSample(Verdicts):
    key: str
    index: int  # clip index in the plan
    params: dict[str, Any]  # the clip plan without its frames (scenario, kss, fps, segments, scripted events, ...)
    frames: list[FaceSample]
    temporal: dict[str, Any] = field(default_factory=dict)  # per_frame, events, blinks, summary
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    split: str | None = None
    identity: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The clip document: clip params, temporal labels, and each frame's FaceSample JSON (no pixels)."""
        return {
            "key": self.key,
            "index": self.index,
            "kind": "clip",
            "schema_version": CLIP_SCHEMA_VERSION,
            "split": self.split,
            "identity": self.identity,
            "params": self.params,
            "labels": {"temporal": self.temporal, "behaviour": self.params.get("behaviour")},
            "verdicts": self.verdicts,
            "frames": [f.to_json() for f in self.frames],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], images: list | None = None) -> "ClipSample":
        frames = [FaceSample.from_json(fd, images[i] if images is not None else None) for i, fd in enumerate(doc["frames"])]
        return cls(key=doc["key"], index=doc["index"], params=doc["params"], frames=frames,
                   temporal=doc["labels"]["temporal"], verdicts=doc.get("verdicts", []), split=doc.get("split"),
                   identity=doc.get("identity"))


def clip_labels(sample: ClipSample, cfg: ClipsConfig) -> None:
    """Fill the clip's temporal labels and each frame's labels (single-frame labels + its temporal slice)."""
    from dmsfactory.labelers.params import make_labels

    params = [f.params for f in sample.frames]
    # clips planned by behaviour >= 2 record every eyelid closure (events with a ``lid``): exact eye labels
    events = sample.params.get("events") if sample.params.get("behaviour") else None
    tl = temporal_labels_from_frames(params, sample.params["fps"], temporal_params(cfg), events=events)
    sample.temporal = tl
    pf = tl["per_frame"]
    for i, f in enumerate(sample.frames):
        lab = make_labels(f.params)
        lab["temporal"] = {k: pf[k][i] for k in FRAME_TEMPORAL_FIELDS}
        for side in ("left", "right"):  # a clip knows closing/opening, a single frame only open/close
            lab["eyes"][side]["state"] = pf[f"eye_state_{side}"][i]
        lab["activity"] = f.params.get("activity")
        f.labels = lab


class ClipGenerator:
    """``generate(clip_plans) -> list[ClipSample]`` (one per clip, quarantined rather than dropped)."""

    name = "clips"

    def __init__(self, procedural_config: Any = None, clips_config: ClipsConfig | None = None, frame_generator: Any = None):
        self.clips_config = clips_config or ClipsConfig()
        self.procedural_config = procedural_config
        self._gen = frame_generator

    def setup(self) -> None:
        if self._gen is None:
            from dmsfactory.generators.procedural import ProceduralGenerator
            from dmsfactory.generators.procedural.config import ProceduralConfig

            self._gen = ProceduralGenerator(self.procedural_config or ProceduralConfig())
        if hasattr(self._gen, "setup"):
            self._gen.setup()

    def generate(self, clip_plans: list[dict[str, Any]]) -> list[ClipSample]:
        if self._gen is None:
            self.setup()
        out = []
        for cp in clip_plans:
            meta = {k: v for k, v in cp.items() if k != "frames"}
            cs = ClipSample(key=cp["key"], index=cp["clip_index"], params=meta, frames=[], split=cp["split"],
                            identity=cp["identity"])
            try:
                frames = self._gen.generate(cp["frames"])
            except Exception as e:  # a clip that cannot be rendered is quarantined, with the reason
                cs.quarantine("clips", f"frame rendering failed: {e!r}")
                frames = [FaceSample(key=f["key"], index=f["index"], params=f, split=f["split"], identity=f["identity"])
                          for f in cp["frames"]]
            if [f.key for f in frames] != [f["key"] for f in cp["frames"]]:
                cs.quarantine("clips", "the frame generator returned frames that do not match the plan")
            cs.frames = frames
            bad = [f for f in frames if f.quarantined]
            if bad:
                cs.quarantine("clips", f"{len(bad)} frame(s) quarantined, e.g. {bad[0].key}: {bad[0].quarantine_reasons}")
            if not cs.quarantined:
                try:
                    clip_labels(cs, self.clips_config)
                except (KeyError, TypeError, ValueError) as e:
                    cs.quarantine("clips", f"cannot derive labels: {e!r}")
            out.append(cs)
        return out
