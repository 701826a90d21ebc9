"""Spec -> clip plans: one dict per clip with its identity, split, scenario and per-frame plan entries.

Identities and their splits are the image planner's (:func:`dmsfactory.plan.make_identities`): the
split is drawn per identity by a seeded, stratified (largest-remainder) assignment of the spec's split
weights, so clip splits are identity-disjoint and an identity's clips share the split of its stills.
Per-clip axes (scenario, base lighting, accessory, camera mount) are stratified within each split
like the image planner's per-image axes, then shuffled with a seeded RNG.

Every frame is a plan entry in the docs/CONTRACT.md format (identity fields, camera and accessory
fixed per clip; state, head_pose_car, gaze_in_head, gaze_zone, action, phone, lighting and
illuminance_lux per frame) plus ``clip_id``, ``frame_index``, ``time_s``, ``scenario``, ``activity``
and ``body_lean_deg``.
"""

from __future__ import annotations

import math
from typing import Any

from dmsfactory.clips.behaviour import kss_class, scenario_segments, simulate
from dmsfactory.clips.drivers import driver_traits
from dmsfactory.clips.config import ClipsConfig
from dmsfactory.conditions import LUX
from dmsfactory.plan import make_identities, preview_indices, round_to, stratified_by_split
from dmsfactory.seeds import rng, seed

SCENARIO_BASE_LIGHTING = {"tunnel_entry": "daylight"}  # a tunnel is entered from daylight


def _clips_cfg(spec: Any, clips: ClipsConfig | None) -> ClipsConfig:
    if clips is not None:
        return clips
    c = getattr(spec, "clips", None)
    if c is None:
        raise ValueError("spec has no 'clips:' section (add one, e.g. clips: {fps: 30, duration_s: 20})")
    return c


def frame_class(kss: int, zone: str, phone: Any, on_road_zones: tuple[str, ...]) -> str:
    """Per-frame image class: phone > distracted (eyes off road) > fatigue class of the clip's KSS."""
    if phone is not None:
        return "phone"
    if zone not in on_road_zones:
        return "distracted"
    return kss_class(kss)


def make_clip_plan(spec: Any, clips: ClipsConfig | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """One dict per clip: ``key, clip_index, identity, identity_seed, identity_params, split, scenario,
    kss, fps, n_frames, segments, behaviour, events, frames`` (``frames``: per-frame plan entries;
    ``behaviour``: the driver's traits and their values at this KSS, dmsfactory.clips.drivers).

    ``limit``: a stratified preview of that many clips, picked from the full plan
    (:func:`dmsfactory.plan.preview_indices`): every split with a share, each scenario where the number
    allows; each clip is the full plan's clip of the same index."""
    cfg = _clips_cfg(spec, clips)
    spec_hash = spec.content_hash()
    idents = make_identities(spec)
    per = cfg.clips_per_identity
    c = spec.conditions
    axes = {"scenario": cfg.scenarios, "lighting": c.lighting, "accessory": c.accessory, "mount": c.camera.mount}
    cols = stratified_by_split(idents, per, axes, spec.seed, "clips", "conditions")
    conds = {i: {axis: cols[axis][i] for axis in axes} for i in range(len(idents) * per)}
    total = len(idents) * per
    if limit is None or limit >= total:
        indices = list(range(total))
    else:  # a stratified preview: every split with a share, each scenario where the number allows
        items = [(ci, idents[ci // per].split, conds[ci]["scenario"], idents[ci // per].id) for ci in range(total)]
        indices = preview_indices(items, spec.splits.model_dump(), limit)
    n = cfg.n_frames
    on_road = tuple(cfg.temporal.on_road_zones)
    out = []
    for ci in indices:
        ident = idents[ci // per]
        cond = conds[ci]
        scen = cond["scenario"]
        r = rng(spec.seed, "clip", ci)
        driver = driver_traits(ident.seed)  # one driver per identity: same traits in all its clips
        kss, segs = scenario_segments(scen, cfg, r, driver)
        lighting = SCENARIO_BASE_LIGHTING.get(scen, cond["lighting"])
        lo, hi = LUX[lighting]
        lux = math.exp(r.uniform(math.log(lo), math.log(hi)))
        model = simulate(kss, segs, cfg.duration_s, r, driver, lighting=lighting, illuminance_lux=lux)
        per_frame, events = model.frames(n, cfg.fps), model.events
        key = f"{spec_hash[:10]}-c{ci:06d}"
        camera = {
            "mount": cond["mount"],
            "fov_deg": float(c.camera.fov_deg),
            "distance_m": round_to(r.uniform(c.camera.distance_m.min, c.camera.distance_m.max)),
            "image_size": cfg.image_size,
        }
        frames = []
        for fi, pf in enumerate(per_frame):
            frames.append({
                "key": f"{key}-f{fi:05d}",
                "index": ci * n + fi,
                "split": ident.split,
                "identity": ident.id,
                "identity_seed": ident.seed,
                "sample_seed": seed(spec.seed, "clip-pixels", ci),  # fixed per clip: same fine detail every frame
                "identity_params": ident.params,
                "class": frame_class(kss, pf["gaze_zone"], pf["phone"], on_road),
                "kss": kss,
                "accessory": cond["accessory"],
                "camera": camera,
                **pf,
                "clip_id": key,
                "frame_index": fi,
                "time_s": round_to(fi / cfg.fps, 5),
                "scenario": scen,
            })
        out.append({
            "key": key,
            "clip_index": ci,
            "identity": ident.id,
            "identity_seed": ident.seed,
            "identity_params": ident.params,
            "split": ident.split,
            "scenario": scen,
            "kss": kss,
            "accessory": cond["accessory"],
            "lighting": lighting,
            "camera": camera,
            "fps": cfg.fps,
            "n_frames": n,
            "segments": segs,
            "behaviour": model.record(),
            "events": events,
            "frames": frames,
        })
    return out


def clip_shard_jobs(clip_plans: list[dict[str, Any]], clips_per_shard: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """Group clip plans into (shard name, clips) per split, in clip order: ``train-000000`` ... (written under DIR/clips/)."""
    jobs = []
    for split in ("train", "val", "test"):
        cs = [c for c in clip_plans if c["split"] == split]
        for k in range(0, len(cs), clips_per_shard):
            jobs.append((f"{split}-{k // clips_per_shard:06d}", cs[k : k + clips_per_shard]))
    return jobs
