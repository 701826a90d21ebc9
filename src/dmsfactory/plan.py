"""Spec -> per-sample parameters, deterministically.

The plan is the only place where randomness is drawn for a sample's *content*; generators render
deterministically from a plan entry (docs/CONTRACT.md). Same spec (content hash) and seed give the
same plan, entry for entry.

Stratification: every categorical axis gets exact counts by largest-remainder allocation of its
weights (per split for per-image axes, over all identities for identity axes), then the values are
shuffled with a seeded RNG. So a 6-class spec with 1,000 images has each class within one image of
its weight, in every split.

Splits are drawn per identity, so they are identity-disjoint by construction; a mixed identity
(SynFace mixup) takes both of its parents from base identities of its own split.

Units: the plan lists *renders* (one generated face each); a render becomes one or more *images* in
the shards (the render plus its augmented views). ``shards.size`` counts images (see
:func:`renders_per_shard`). A preview (``--limit N``) is N renders picked by :func:`preview_indices`
from the full plan, so its samples are byte for byte the ones the full run makes.

The fatigue -> appearance mapping (docs/labels.md) is the table ``CLASS_STATES`` in :mod:`dmsfactory.taxonomy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmsfactory.clips.drivers import YAWN as YAWN_SHAPE
from dmsfactory.clips.kinematics import YawnShape, inverse_smoothstep5
from dmsfactory.conditions import LUX
from dmsfactory.seeds import rng, seed
from dmsfactory.spec import DatasetSpec
from dmsfactory.taxonomy import AGE_RANGES
from dmsfactory.taxonomy import (  # noqa: F401  the tables live in dmsfactory.taxonomy (re-exported)
    CLASS_STATES,
    DISTRACTION_ZONES,
    EYE_IN_HEAD_LIMIT,
    FATIGUE_LEVEL,
    FIXATION_DISTANCE_M,
    GAZE_ZONES,
)

SPLIT_ORDER = ("train", "val", "test")




def allocate(weights: dict, n: int) -> list:
    """Largest-remainder allocation of ``n`` items to the keys of ``weights`` (exact counts).

    Keys are taken in sorted order, so the order in which a YAML file lists them does not change
    the plan (the spec hash is computed with sorted keys too)."""
    keys = sorted(weights, key=str)
    w = np.array([float(weights[k]) for k in keys])
    quotas = w / w.sum() * n
    counts = np.floor(quotas).astype(int)
    rest = n - counts.sum()
    order = sorted(range(len(keys)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    out: list = []
    for k, c in zip(keys, counts):
        out.extend([k] * int(c))
    return out


def stratified(weights: dict, n: int, rng: np.random.Generator) -> list:
    vals = allocate(weights, n)
    perm = rng.permutation(len(vals))
    return [vals[i] for i in perm]


def round_to(x: float, nd: int = 4) -> float:
    """A float rounded to ``nd`` decimals, as recorded in plan entries (stable JSON, short labels)."""
    return float(round(float(x), nd))


@dataclass(frozen=True)
class Identity:
    id: str
    seed: int
    split: str
    params: dict[str, Any]


def make_identities(spec: DatasetSpec) -> list[Identity]:
    n = spec.identities.count
    r_ids = rng(spec.seed, "identities")
    n_mix = int(round(spec.identities.mixup_fraction * n))
    n_base = n - n_mix
    split_w = spec.splits.model_dump()
    splits = stratified(split_w, n, r_ids)
    sexes = stratified(dict(spec.conditions.sex), n, r_ids)
    ages = stratified(dict(spec.conditions.age_group), n, r_ids)
    tones = stratified(dict(spec.conditions.skin_tone), n, r_ids)

    def demo(i: int) -> dict[str, Any]:
        lo, hi = AGE_RANGES[ages[i]]
        r = rng(spec.seed, "age", i)
        return {
            "sex": sexes[i],
            "age_group": ages[i],
            "age": int(r.integers(lo, hi + 1)),
            "skin_tone": int(tones[i]),
            "mixup": None,
        }

    base = [Identity(f"id{i:06d}", seed(spec.seed, "identity", i), splits[i], demo(i)) for i in range(n_base)]
    out = list(base)
    for j in range(n_base, n):
        split = splits[j]
        pool = [b for b in base if b.split == split]
        if len(pool) < 2:
            raise ValueError(
                f"identities.mixup_fraction: split '{split}' has {len(pool)} base identities, a mixed identity "
                "needs 2 from its own split (raise identities.count or lower mixup_fraction)"
            )
        r = rng(spec.seed, "mixup", j)
        a, b = r.choice(len(pool), size=2, replace=False)
        pa, pb = pool[int(a)], pool[int(b)]
        lam = round_to(r.uniform(0.3, 0.7))
        params = dict(pa.params)  # demographics for the planner follow the dominant parent
        if lam > 0.5:
            params = dict(pb.params)
        params["mixup"] = {
            "a": pa.id,
            "b": pb.id,
            "a_seed": pa.seed,
            "b_seed": pb.seed,
            "a_params": {k: v for k, v in pa.params.items() if k != "mixup"},
            "b_params": {k: v for k, v in pb.params.items() if k != "mixup"},
            "lam": lam,
        }
        out.append(Identity(f"mx{j:06d}", seed(spec.seed, "identity", j), split, params))
    return out


def _head_and_eyes(zone: str, r: np.random.Generator) -> tuple[dict, dict]:
    """Split a gaze target into head rotation and eye-in-head rotation (owl vs lizard)."""
    ty, tp = GAZE_ZONES[zone]
    ty += r.uniform(-4, 4)
    tp += r.uniform(-3, 3)
    head_share = r.uniform(0.45, 0.85)  # owl (head) share of the movement; the rest is lizard (eyes)
    hy, hp = ty * head_share, tp * head_share
    ey, ep = ty - hy, tp - hp
    ey = float(np.clip(ey, -EYE_IN_HEAD_LIMIT[0], EYE_IN_HEAD_LIMIT[0]))
    ep = float(np.clip(ep, -EYE_IN_HEAD_LIMIT[1], EYE_IN_HEAD_LIMIT[1]))
    hy, hp = float(np.clip(ty - ey, -75, 75)), float(np.clip(tp - ep, -45, 45))
    return {"yaw": hy, "pitch": hp}, {"yaw": ey, "pitch": ep}


def entry_key(spec_hash: str, index: int) -> str:
    """The stable key of plan index ``index`` (webdataset ``__key__``)."""
    return f"{spec_hash[:10]}-{index:07d}"


TALKING_MOUTH_OPEN = (0.12, 0.55)  # conditions.talking: speech-like openings (a yawn's moments open 0.3-1)


def yawn_still(amplitude: float, rs: np.random.Generator) -> dict[str, Any]:
    """A still of a yawn is a moment of one: the yawn shaped as clips shape it (slow opening, short
    acme, faster closing: :class:`~dmsfactory.clips.kinematics.YawnShape` with the shares of
    ``clips.drivers.YAWN``) at a time drawn uniformly over the part of it that clips label yawning
    (mouth opening >= ``YAWN["labelled_open"]``). Stills and clips thus share one definition of a
    yawning frame, and a set holds early and late moments of yawns, not only their widest point.

    Returns the mouth opening, the shape's level there (0..1 of the amplitude), every parameter that
    placed the moment, and the head's upward tilt and the eyes' narrowing at the acme (``head_tilt_deg``,
    ``eye_narrow``, applied times the level as a clip's yawn applies them) and the yawn's lips
    (``upper_lip_raise``, ``lip_stretch``: the renderer's weights, times the opening, also in
    ``state.yawn_lips``); all recorded in the plan entry's ``state.yawn_moment``."""
    peak_frac, opening_share = rs.uniform(*YAWN_SHAPE["peak_frac"]), rs.uniform(*YAWN_SHAPE["opening_share"])
    shape = YawnShape.split(0.0, 1.0, amplitude, peak_frac, opening_share)  # times as shares of the yawn
    y0 = min(1.0, YAWN_SHAPE["labelled_open"] / amplitude)
    t_on = shape.opening_s * inverse_smoothstep5(y0)
    t_off = shape.opening_s + shape.peak_s + shape.closing_s * inverse_smoothstep5(1.0 - y0)
    t = float(rs.uniform(t_on, t_off))
    level = float(shape.curve(np.array([t]))[0])
    phase = "opening" if t < shape.opening_s else "acme" if t <= shape.opening_s + shape.peak_s else "closing"
    tilt = rs.uniform(*YAWN_SHAPE["head_tilt_deg"])  # drawn after the moment: its earlier draws stay as they were
    narrow = rs.uniform(*YAWN_SHAPE["eye_narrow"])
    lip_up = rs.uniform(*YAWN_SHAPE["upper_lip_raise"])  # drawn last (renderer 0.10.0): the draws above stay
    stretch = rs.uniform(*YAWN_SHAPE["lip_stretch"])
    return {"mouth_open": round_to(amplitude * level), "shape_level": round_to(level), "amplitude": round_to(amplitude),
            "peak_frac": round_to(peak_frac), "opening_share": round_to(opening_share), "time_frac": round_to(t),
            "phase": phase, "head_tilt_deg": round_to(tilt), "eye_narrow": round_to(narrow),
            "upper_lip_raise": round_to(lip_up), "lip_stretch": round_to(stretch)}


def make_entry(spec: DatasetSpec, spec_hash: str, index: int, ident: Identity, cond: dict[str, Any]) -> dict[str, Any]:
    r = rng(spec.seed, "sample", index)
    cls = cond["class"]
    st = CLASS_STATES[cls]
    c = spec.conditions
    kss = int(r.integers(st["kss"][0], st["kss"][1] + 1))
    base_open = r.uniform(*st["openness"])
    asym = r.uniform(-0.04, 0.04)
    eo_l = float(np.clip(base_open + asym, 0, 1))
    eo_r = float(np.clip(base_open - asym, 0, 1))

    yawn = "none"
    yawn_moment = None
    mouth = r.uniform(0.0, 0.12)
    if r.random() < st["p_yawn"]:
        yawn = "yawning_with_hand" if r.random() < 0.4 else "yawning_without_hand"
        yawn_moment = yawn_still(r.uniform(*YAWN_SHAPE["amplitude"]), rng(spec.seed, "yawn_moment", index))
        mouth = yawn_moment["mouth_open"]
        narrow = 1.0 - yawn_moment["eye_narrow"] * yawn_moment["shape_level"]  # as in a clip's yawn: 35-50 % at its acme
        eo_l, eo_r = eo_l * narrow, eo_r * narrow
    elif c.talking > 0:  # its own named draw: specs without talking keep every other draw unchanged
        rt = rng(spec.seed, "talking", index)
        if rt.random() < c.talking:
            mouth = rt.uniform(*TALKING_MOUTH_OPEN)

    head = {
        "yaw": r.uniform(c.head_pose.yaw.min, c.head_pose.yaw.max),
        "pitch": r.uniform(c.head_pose.pitch.min, c.head_pose.pitch.max) + st["pitch_bias"],
        "roll": r.uniform(c.head_pose.roll.min, c.head_pose.roll.max),
    }
    nod_deg, nod_p = st["nod"]
    if nod_deg and r.random() < nod_p:
        head["pitch"] -= r.uniform(0.5, 1.0) * nod_deg
        head["roll"] += r.uniform(-0.3, 0.3) * nod_deg
    if yawn_moment is not None:  # as in a clip's yawn: the head tilts up with the mouth
        head["pitch"] += yawn_moment["head_tilt_deg"] * yawn_moment["shape_level"]
    gaze = {"yaw": r.uniform(c.gaze.yaw.min, c.gaze.yaw.max), "pitch": r.uniform(c.gaze.pitch.min, c.gaze.pitch.max)}
    zone = "front"
    action = "safe_drive"
    phone = None
    if cls == "distracted":
        zone = str(r.choice(DISTRACTION_ZONES))
        h, gaze = _head_and_eyes(zone, r)
        head = {"yaw": h["yaw"], "pitch": h["pitch"], "roll": head["roll"]}
    elif cls == "phone":
        hand = "left" if r.random() < 0.5 else "right"
        use = "call" if r.random() < 0.5 else "texting"
        phone = {"hand": hand, "use": use}
        action = f"phone_call_{hand}" if use == "call" else f"texting_{hand}"
        if use == "texting":
            zone = "steering_wheel"
            h, gaze = _head_and_eyes(zone, r)
            head = {"yaw": h["yaw"], "pitch": h["pitch"], "roll": head["roll"]}
    head["pitch"] = float(np.clip(head["pitch"], -45, 45))
    head["roll"] = float(np.clip(head["roll"], -45, 45))

    lo, hi = LUX[cond["lighting"]]
    lux = math.exp(r.uniform(math.log(lo), math.log(hi)))
    fix = FIXATION_DISTANCE_M[zone]
    if fix is not None:  # own stream: adding vergence left every other draw of the sample unchanged
        fix = round_to(fix * rng(spec.seed, "fixation", index).uniform(0.85, 1.15), 3)
    return {
        "key": entry_key(spec_hash, index),
        "index": index,
        "split": ident.split,
        "identity": ident.id,
        "identity_seed": ident.seed,
        "sample_seed": seed(spec.seed, "pixels", index),
        "identity_params": ident.params,
        "class": cls,
        "kss": kss,
        "lighting": cond["lighting"],
        "illuminance_lux": round_to(lux, 3),
        "accessory": cond["accessory"],
        "camera": {
            "mount": cond["mount"],
            "fov_deg": float(c.camera.fov_deg),
            "distance_m": round_to(r.uniform(c.camera.distance_m.min, c.camera.distance_m.max)),
            "image_size": spec.image.size,
        },
        "state": {
            "eye_openness_left": round_to(eo_l),
            "eye_openness_right": round_to(eo_r),
            "mouth_open": round_to(mouth),
            "yawn": yawn,
            "yawn_moment": yawn_moment,
            "yawn_lips": {k: yawn_moment[k] for k in ("upper_lip_raise", "lip_stretch")} if yawn_moment else None,
            "brow_raise": round_to(r.uniform(0, 0.3) if cls in ("alert", "distracted", "phone") else r.uniform(0, 0.1)),
            "smile": round_to(r.uniform(0, 0.4) if cls == "alert" and yawn == "none" else 0.0),
        },
        "head_pose_car": {k: round_to(v, 3) for k, v in head.items()},
        "gaze_in_head": {**{k: round_to(v, 3) for k, v in gaze.items()}, "distance_m": fix},
        "gaze_zone": zone,
        "action": action,
        "phone": phone,
    }


COND_AXES = ("class", "lighting", "accessory", "mount")


def stratified_by_split(idents: list[Identity], per: int, axes: dict[str, dict], *seed_parts: Any) -> dict[str, list]:
    """Per-item categorical axes, stratified within each split: the one draw both planners use.

    Items are ``per`` consecutive indices per identity (item ``i * per + j`` belongs to ``idents[i]``);
    within each split, each axis in ``axes`` (axis -> weights, in the given order) is a seeded
    largest-remainder draw over that split's items (:func:`stratified`, one generator per split from
    ``seed_parts + (split,)``). Returns columns: axis -> value per item index."""
    n = len(idents) * per
    cols: dict[str, list] = {k: [None] * n for k in axes}
    for split in ("train", "val", "test"):
        idx = [i * per + j for i, ident in enumerate(idents) if ident.split == split for j in range(per)]
        if not idx:
            continue
        r = rng(*seed_parts, split)
        for axis, weights in axes.items():
            vals, col = stratified(dict(weights), len(idx), r), cols[axis]
            for k, i in enumerate(idx):
                col[i] = vals[k]
    return cols


def plan_conditions(spec: DatasetSpec, idents: list[Identity]) -> dict[str, list]:
    """The per-image categorical axes (class, lighting, accessory, mount) of every plan index,
    stratified within each split, as columns (axis -> value per index; :func:`condition` reads one
    index). Cheap next to :func:`make_entry`, so readers that need only these (the verification
    audit's strata, :mod:`dmsfactory.planindex`) never build the whole plan."""
    c = spec.conditions
    axes = {"class": spec.classes, "lighting": c.lighting, "accessory": c.accessory, "mount": c.camera.mount}
    assert tuple(axes) == COND_AXES
    return stratified_by_split(idents, spec.identities.images_per_identity, axes, spec.seed, "conditions")


def condition(cols: dict[str, list], index: int) -> dict[str, Any]:
    """One plan index's conditions from :func:`plan_conditions`'s columns."""
    return {k: cols[k][index] for k in COND_AXES}


def split_quotas(weights: dict[str, float], available: dict[str, int], n: int) -> dict[str, int]:
    """How many of ``n`` preview items each split gets: by weight (largest remainder), at least one for
    every split that has a share and items while ``n`` allows, never more than a split holds."""
    present = [s for s in SPLIT_ORDER if weights.get(s, 0) > 0 and available.get(s, 0) > 0]
    q = {s: 0 for s in SPLIT_ORDER}
    n = min(n, sum(available.get(s, 0) for s in present))
    if not present or n <= 0:
        return q
    for s in allocate({s: weights[s] for s in present}, n):
        q[s] += 1
    by_weight = sorted(present, key=lambda s: (-weights[s], SPLIT_ORDER.index(s)))
    for s in by_weight:  # every split with a share gets one, taken from the best-served split
        if q[s] == 0:
            donor = max(present, key=lambda d: (q[d], -SPLIT_ORDER.index(d)))
            if q[donor] > 1:
                q[donor] -= 1
                q[s] = 1
    spill = 0
    for s in present:  # a split cannot give more than it holds; the rest goes to the others by weight
        if q[s] > available[s]:
            spill += q[s] - available[s]
            q[s] = available[s]
    while spill:
        room = [s for s in by_weight if q[s] < available[s]]
        if not room:
            break
        for s in room:
            if spill and q[s] < available[s]:
                q[s] += 1
                spill -= 1
    return q


def preview_indices(items: list[tuple[int, str, str, str]], weights: dict[str, float], n: int) -> list[int]:
    """A stratified preview of ``n`` of the planned ``items`` = (index, split, stratum, identity).

    Every split that has a share gets items (:func:`split_quotas`); within a split the strata (image
    classes, clip scenarios) take turns, the least-shown stratum over all splits first, so each stratum
    appears wherever ``n`` allows; within a stratum the first item of each identity comes before any
    identity's second. Deterministic: the same items and ``n`` give the same indices (sorted)."""
    if n >= len(items):
        return sorted(i for i, _, _, _ in items)
    by_split: dict[str, list[tuple[int, str, str, str]]] = {s: [] for s in SPLIT_ORDER}
    for it in items:
        by_split[it[1]].append(it)
    quotas = split_quotas(weights, {s: len(v) for s, v in by_split.items()}, n)
    shown: dict[str, int] = {}
    chosen: list[int] = []
    # the smallest split chooses first: it holds the fewest strata, the larger ones fill in the rest
    for split in sorted(SPLIT_ORDER, key=lambda s: (quotas[s], SPLIT_ORDER.index(s))):
        groups: dict[str, list[int]] = {}
        rank: dict[tuple[str, str], int] = {}
        order: dict[int, tuple[int, int]] = {}
        for idx, _, stratum, ident in sorted(by_split[split]):
            r = rank.get((stratum, ident), 0)
            rank[(stratum, ident)] = r + 1
            order[idx] = (r, idx)
            groups.setdefault(stratum, []).append(idx)
        queues = {k: sorted(v, key=order.__getitem__) for k, v in groups.items()}
        pos = {k: 0 for k in queues}
        for _ in range(quotas[split]):
            open_ = [k for k in queues if pos[k] < len(queues[k])]
            k = min(open_, key=lambda s: (shown.get(s, 0), pos[s], str(s)))
            chosen.append(queues[k][pos[k]])
            pos[k] += 1
            shown[k] = shown.get(k, 0) + 1
    return sorted(chosen)


def plan_indices(spec: DatasetSpec, limit: int | None = None, idents: list[Identity] | None = None,
                 conds: dict[str, list] | None = None) -> list[int]:
    """The plan indices a run makes, ascending: all of them, or the ``--limit`` stratified preview
    (:func:`preview_indices`: every split with a share, each class where the number allows)."""
    if limit is None or limit >= spec.total_samples:
        return list(range(spec.total_samples))
    idents = idents if idents is not None else make_identities(spec)
    conds = conds if conds is not None else plan_conditions(spec, idents)
    depth = spec.identities.images_per_identity
    items = [(i, idents[i // depth].split, conds["class"][i], idents[i // depth].id) for i in range(spec.total_samples)]
    return preview_indices(items, spec.splits.model_dump(), limit)


def make_plan(spec: DatasetSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """Every render's parameters, in index order (identity-major: index = identity * depth + image).

    ``limit``: a stratified preview of that many renders (:func:`plan_indices`); its entries are the
    full plan's, key for key."""
    spec_hash = spec.content_hash()
    idents = make_identities(spec)
    depth = spec.identities.images_per_identity
    conds = plan_conditions(spec, idents)
    return [make_entry(spec, spec_hash, i, idents[i // depth], condition(conds, i))
            for i in plan_indices(spec, limit, idents, conds)]


def images_per_render(spec: DatasetSpec) -> int:
    """Images written per render at most: the render itself (unless augmentation drops originals) plus its
    augmented views."""
    a = spec.augment
    if not a.enabled:
        return 1
    return max(1, int(a.keep_originals) + a.views_per_image)


def renders_per_shard(spec: DatasetSpec) -> int:
    """Renders per generation batch, so that a shard holds at most ``shards.size`` images."""
    return max(1, spec.shards.size // images_per_render(spec))


@dataclass(frozen=True)
class ShardJob:
    split: str
    shard: int  # index of the shard within its split
    entries: tuple  # plan entries (dicts), or a sequence that makes them on demand (planindex.LazyEntries)

    @property
    def name(self) -> str:
        return f"{self.split}-{self.shard:06d}"

    @property
    def keys(self) -> list[str]:
        """The planned keys, without making the entries when they are lazy."""
        k = getattr(self.entries, "keys", None)
        return list(k()) if callable(k) else [e["key"] for e in self.entries]


def shard_jobs(spec: DatasetSpec, plan: list[dict[str, Any]]) -> list[ShardJob]:
    """Group a plan into shard-sized batches, one tar per batch, per split, in index order.

    ``shards.size`` counts images: a batch holds :func:`renders_per_shard` renders, so that with
    augmented views its shard (accepted + quarantined images) holds at most ``shards.size`` images."""
    jobs = []
    size = renders_per_shard(spec)
    for split in ("train", "val", "test"):
        entries = [e for e in plan if e["split"] == split]
        for s in range(0, len(entries), size):
            jobs.append(ShardJob(split, s // size, tuple(entries[s : s + size])))
    return jobs
