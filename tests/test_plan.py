import json
from collections import Counter

import numpy as np
import pytest

from dmsfactory.plan import (
    FIXATION_DISTANCE_M,
    GAZE_ZONES,
    allocate,
    images_per_render,
    make_identities,
    make_plan,
    preview_indices,
    shard_jobs,
    split_quotas,
)
from dmsfactory.spec import parse_spec


def test_allocate_is_exact_largest_remainder():
    assert Counter(allocate({"a": 1, "b": 1, "c": 1}, 10)) == {"a": 4, "b": 3, "c": 3}
    assert len(allocate({"a": 0.25, "b": 0.75}, 7)) == 7


def test_plan_is_deterministic_and_seed_sensitive(tiny_spec_dict):
    spec = parse_spec(tiny_spec_dict)
    a = json.dumps(make_plan(spec), sort_keys=True)
    b = json.dumps(make_plan(parse_spec(tiny_spec_dict)), sort_keys=True)
    tiny_spec_dict["seed"] += 1
    c = json.dumps(make_plan(parse_spec(tiny_spec_dict)), sort_keys=True)
    assert a == b != c


def test_keys_unique_and_stable(tiny_spec_dict):
    spec = parse_spec(tiny_spec_dict)
    plan = make_plan(spec)
    keys = [e["key"] for e in plan]
    assert len(set(keys)) == len(keys) == spec.total_samples
    assert all(k.startswith(spec.content_hash()[:10]) and "." not in k for k in keys)
    by_key = {e["key"]: e for e in plan}
    preview = make_plan(spec, limit=5)
    assert len(preview) == 5 and all(by_key[e["key"]] == e for e in preview)  # a preview is the full plan's entries


def test_splits_are_identity_disjoint_and_classes_stratified_per_split(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 20, "images_per_identity": 6}
    spec = parse_spec(tiny_spec_dict)
    plan = make_plan(spec)
    split_of = {}
    for e in plan:
        assert split_of.setdefault(e["identity"], e["split"]) == e["split"]
    n_ids = Counter(split_of.values())
    assert n_ids == {"train": 12, "val": 4, "test": 4}
    for split in ("train", "val", "test"):
        cls = Counter(e["class"] for e in plan if e["split"] == split)
        assert max(cls.values()) - min(cls.values()) <= 1, (split, cls)


def test_mixup_parents_come_from_the_same_split(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 30, "images_per_identity": 2, "mixup_fraction": 0.2}
    spec = parse_spec(tiny_spec_dict)
    idents = {i.id: i for i in make_identities(spec)}
    mixed = [i for i in idents.values() if i.params["mixup"]]
    assert len(mixed) == 6
    for m in mixed:
        mx = m.params["mixup"]
        assert idents[mx["a"]].split == idents[mx["b"]].split == m.split
        assert 0.3 <= mx["lam"] <= 0.7 and mx["a"] != mx["b"]


def test_mixup_impossible_split_is_a_named_error(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 4, "images_per_identity": 1, "mixup_fraction": 0.5}
    with pytest.raises(ValueError, match="identities.mixup_fraction"):
        make_identities(parse_spec(tiny_spec_dict))


def test_class_drives_state(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 20, "images_per_identity": 12}
    plan = make_plan(parse_spec(tiny_spec_dict))
    for e in plan:
        st = e["state"]
        if e["class"] == "severe_fatigue":
            assert max(st["eye_openness_left"], st["eye_openness_right"]) <= 0.22
        if e["class"] == "alert":
            assert min(st["eye_openness_left"], st["eye_openness_right"]) >= 0.7 and st["yawn"] == "none"
        if e["class"] == "distracted":
            assert e["gaze_zone"] != "front" and e["gaze_zone"] in GAZE_ZONES
        if e["class"] == "phone":
            assert e["phone"] and e["action"] != "safe_drive"
        else:
            assert e["phone"] is None
        assert -75 <= e["head_pose_car"]["yaw"] <= 75


def test_talking_mouths_are_non_yawning_negatives_that_move_no_other_draw(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 20, "images_per_identity": 12}
    base = make_plan(parse_spec(tiny_spec_dict))
    tiny_spec_dict.setdefault("conditions", {})["talking"] = 0.0
    assert make_plan(parse_spec(tiny_spec_dict))[0]["key"] == base[0]["key"]  # datasets made before keep their keys
    tiny_spec_dict["conditions"]["talking"] = 0.5
    talk = make_plan(parse_spec(tiny_spec_dict))
    assert talk[0]["key"] != base[0]["key"]  # the knob shapes samples: part of the spec's hash
    assert all(e["state"]["mouth_open"] <= 0.12 for e in base if e["state"]["yawn"] == "none")
    open_ = [e for e in talk if e["state"]["yawn"] == "none" and e["state"]["mouth_open"] > 0.12]
    non_yawn = [e for e in talk if e["state"]["yawn"] == "none"]
    assert 0.35 < len(open_) / len(non_yawn) < 0.65  # the share asked for (240 images)
    assert all(0.12 <= e["state"]["mouth_open"] <= 0.55 for e in open_)  # speech-like openings
    for a, b in zip(base, talk):  # a named draw of its own: every other parameter is unchanged
        assert a["state"]["yawn"] == b["state"]["yawn"] and a["head_pose_car"] == b["head_pose_car"]
        assert a["class"] == b["class"] and a["state"]["eye_openness_left"] == b["state"]["eye_openness_left"]
        if a["state"]["yawn"] != "none":
            assert a["state"]["mouth_open"] == b["state"]["mouth_open"]


def test_a_yawning_still_is_a_recorded_moment_of_the_clips_yawn(tiny_spec_dict):
    from dmsfactory.clips.drivers import YAWN
    from dmsfactory.clips.kinematics import YawnShape

    tiny_spec_dict["identities"] = {"count": 60, "images_per_identity": 10}
    tiny_spec_dict["classes"] = {"moderate_fatigue": 1.0}
    plan = make_plan(parse_spec(tiny_spec_dict))
    yawns = [e for e in plan if e["state"]["yawn"] != "none"]
    assert len(yawns) > 150 and all(e["state"]["yawn_moment"] is None for e in plan if e["state"]["yawn"] == "none")
    for e in yawns:
        ym = e["state"]["yawn_moment"]
        # the recorded parameters give the mouth again, through the shape clips use
        shape = YawnShape.split(0.0, 1.0, ym["amplitude"], ym["peak_frac"], ym["opening_share"])
        level = float(shape.curve(np.array([ym["time_frac"]]))[0])
        assert abs(ym["amplitude"] * level - e["state"]["mouth_open"]) < 2e-3
        assert YAWN["labelled_open"] <= e["state"]["mouth_open"] <= ym["amplitude"] + 1e-9  # labelled yawning, as in clips
        assert YAWN["amplitude"][0] <= ym["amplitude"] <= YAWN["amplitude"][1]
    mouth = np.array([e["state"]["mouth_open"] for e in yawns])
    phases = {e["state"]["yawn_moment"]["phase"] for e in yawns}
    assert phases == {"opening", "acme", "closing"}
    assert 0.1 < (mouth < 0.5).mean() < 0.4 and (mouth > 0.8).mean() > 0.2  # early and late moments, and wide ones
    assert plan == make_plan(parse_spec(tiny_spec_dict))  # seeded


def test_a_yawning_still_tilts_the_head_and_narrows_the_eyes_as_a_clips_yawn_does_and_moves_no_other_draw(
        tiny_spec_dict, monkeypatch):
    """Clips tilt the head up 4-8 deg and narrow the eyes by 35-50 %, times the yawn's level; a still is a
    moment of that yawn, so its planned head pitch and eye openness carry the same (drawn after the
    moment on its own stream, recorded)."""
    from dmsfactory.clips.drivers import YAWN

    tiny_spec_dict["identities"] = {"count": 40, "images_per_identity": 10}
    tiny_spec_dict["classes"] = {"moderate_fatigue": 0.5, "alert": 0.5}
    plan = make_plan(parse_spec(tiny_spec_dict))
    monkeypatch.setitem(YAWN, "head_tilt_deg", (0.0, 0.0))
    monkeypatch.setitem(YAWN, "eye_narrow", (0.0, 0.0))
    flat = make_plan(parse_spec(tiny_spec_dict))
    yawns = 0
    for a, b in zip(plan, flat):
        ym = a["state"]["yawn_moment"]
        if ym is None:
            assert a == b
            continue
        yawns += 1
        assert 4.0 <= ym["head_tilt_deg"] <= 8.0 and b["state"]["yawn_moment"]["head_tilt_deg"] == 0.0
        assert 0.35 <= ym["eye_narrow"] <= 0.5
        tilt = a["head_pose_car"]["pitch"] - b["head_pose_car"]["pitch"]
        if abs(a["head_pose_car"]["pitch"]) < 45:  # not at the clip
            assert abs(tilt - ym["head_tilt_deg"] * ym["shape_level"]) < 1e-3 and tilt > 0
        for side in ("left", "right"):
            want = b["state"][f"eye_openness_{side}"] * (1 - ym["eye_narrow"] * ym["shape_level"])
            assert abs(a["state"][f"eye_openness_{side}"] - want) < 2e-3
        moved = {"head_tilt_deg", "eye_narrow"}
        assert {k: v for k, v in ym.items() if k not in moved} == {
            k: v for k, v in b["state"]["yawn_moment"].items() if k not in moved}
        assert a["state"]["mouth_open"] == b["state"]["mouth_open"] and a["head_pose_car"]["yaw"] == b["head_pose_car"]["yaw"]
    assert yawns > 40


def test_a_yawning_still_draws_its_lips_last_and_the_renderer_uses_them(tiny_spec_dict, monkeypatch):
    """Renderer 0.10.0: a yawn's upper-lip raise and lip stretch are drawn per yawn (the clips' ranges),
    after the moment's other draws (so they stay), recorded in the moment and given to the renderer as
    ``state.yawn_lips``; non-yawning entries have none; the renderer's weights follow them."""
    import importlib

    from dmsfactory.clips.drivers import YAWN

    R = importlib.import_module("dmsfactory.generators.procedural.render")
    tiny_spec_dict["identities"] = {"count": 30, "images_per_identity": 10}
    tiny_spec_dict["classes"] = {"severe_fatigue": 1.0}
    plan = make_plan(parse_spec(tiny_spec_dict))
    monkeypatch.setitem(YAWN, "upper_lip_raise", (0.35, 0.35))
    monkeypatch.setitem(YAWN, "lip_stretch", (0.55, 0.55))
    fixed = make_plan(parse_spec(tiny_spec_dict))
    ups = []
    for a, b in zip(plan, fixed):
        st, ym = a["state"], a["state"]["yawn_moment"]
        if ym is None:
            assert st["yawn_lips"] is None and a == b
            continue
        assert st["yawn_lips"] == {"upper_lip_raise": ym["upper_lip_raise"], "lip_stretch": ym["lip_stretch"]}
        assert 0.35 <= ym["upper_lip_raise"] <= 1.0 and 0.55 <= ym["lip_stretch"] <= 0.9
        ups.append(ym["upper_lip_raise"])
        drawn = {"upper_lip_raise", "lip_stretch"}
        assert {k: v for k, v in ym.items() if k not in drawn} == {
            k: v for k, v in b["state"]["yawn_moment"].items() if k not in drawn}
        assert {**a, "state": {**st, "yawn_moment": None, "yawn_lips": None}} == {
            **b, "state": {**b["state"], "yawn_moment": None, "yawn_lips": None}}
        w = R.expression_weights(st)
        assert w["mouthUpperUp_L"] == pytest.approx(min(1.0, ym["upper_lip_raise"] * st["mouth_open"]))
        assert w["mouthStretch_R"] == pytest.approx(min(1.0, ym["lip_stretch"] * st["mouth_open"]))
        w0 = R.expression_weights({**st, "yawn_lips": None})  # entries without them: the former recipe
        assert w0["mouthUpperUp_L"] == pytest.approx(0.35 * st["mouth_open"])
    assert len(ups) > 20 and np.std(ups) > 0.1


def test_shard_jobs_cover_plan_once(tiny_spec_dict):
    spec = parse_spec(tiny_spec_dict)
    plan = make_plan(spec)
    jobs = shard_jobs(spec, plan)
    keys = [e["key"] for j in jobs for e in j.entries]
    assert sorted(keys) == sorted(e["key"] for e in plan)
    assert all(len(j.entries) <= spec.shards.size for j in jobs)
    assert all(e["split"] == j.split for j in jobs for e in j.entries)


def test_key_order_in_the_yaml_does_not_change_the_plan(tiny_spec_dict):
    a = make_plan(parse_spec(tiny_spec_dict))
    tiny_spec_dict["classes"] = dict(reversed(list(tiny_spec_dict["classes"].items())))
    tiny_spec_dict["conditions"]["lighting"] = dict(reversed(list(tiny_spec_dict["conditions"]["lighting"].items())))
    b = make_plan(parse_spec(tiny_spec_dict))
    assert a == b


def test_in_cabin_gaze_targets_carry_a_fixation_distance(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 20, "images_per_identity": 12}
    plan = make_plan(parse_spec(tiny_spec_dict))
    near = 0
    for e in plan:
        want = FIXATION_DISTANCE_M[e["gaze_zone"]]
        got = e["gaze_in_head"]["distance_m"]
        if want is None:
            assert got is None  # outside the car: parallel eyes
        else:
            near += 1
            assert 0.85 * want - 1e-3 <= got <= 1.15 * want + 1e-3
    assert near > 0


def test_lazy_batches_equal_the_plan_s_batches():
    """The flow holds plan indices, not entries: its batches must be the plan's, entry for entry."""
    import copy
    import pickle

    from conftest import TINY_SPEC
    from dmsfactory.plan import shard_jobs
    from dmsfactory.planindex import lazy_shard_jobs

    d = copy.deepcopy(TINY_SPEC)
    d["identities"] = {"count": 16, "images_per_identity": 3, "mixup_fraction": 0.2}
    spec = parse_spec(d)
    for limit in (None, 7, 13):
        eager = shard_jobs(spec, make_plan(spec, limit))
        lazy = lazy_shard_jobs(spec, limit)
        assert [j.name for j in lazy] == [j.name for j in eager]
        assert [j.keys for j in lazy] == [j.keys for j in eager]
        assert [list(j.entries) for j in lazy] == [list(j.entries) for j in eager]
    again = pickle.loads(pickle.dumps(lazy[0]))  # what a worker process receives
    assert list(again.entries) == list(lazy[0].entries) and len(again.entries) == len(lazy[0].entries)


@pytest.mark.parametrize("n", [3, 6, 12, 30, 50])
def test_a_preview_has_every_split_and_each_class_where_n_allows(n):
    """`--limit N` on the demo spec: the README's quick preview must hold val and test, not only train."""
    import yaml

    d = yaml.safe_load(open("specs/demo.yaml"))
    d["privacy"]["galleries"] = []  # the plan needs no gallery
    spec = parse_spec(d)
    full = {e["key"]: e for e in make_plan(spec)}
    plan = make_plan(spec, limit=n)
    assert len(plan) == n and len({e["key"] for e in plan}) == n
    assert all(full[e["key"]] == e for e in plan)
    assert [e["index"] for e in plan] == sorted(e["index"] for e in plan)
    splits = Counter(e["split"] for e in plan)
    assert set(splits) == {"train", "val", "test"}, splits
    classes = Counter(e["class"] for e in plan)
    assert len(classes) == min(n, len(spec.classes)), classes
    if n >= 30:  # the held-out splits together show every class, train alone too
        assert len({e["class"] for e in plan if e["split"] == "train"}) == 6
        assert len({e["class"] for e in plan if e["split"] != "train"}) == 6
    assert make_plan(spec, limit=n) == plan  # deterministic


def test_split_quotas_follow_weights_keep_every_share_and_respect_sizes():
    w = {"train": 0.8, "val": 0.1, "test": 0.1}
    assert split_quotas(w, {"train": 320, "val": 40, "test": 40}, 30) == {"train": 24, "val": 3, "test": 3}
    assert split_quotas(w, {"train": 320, "val": 40, "test": 40}, 5) == {"train": 3, "val": 1, "test": 1}
    assert split_quotas(w, {"train": 320, "val": 40, "test": 40}, 2) == {"train": 1, "val": 1, "test": 0}
    # a split with no share or no items gets nothing; a small split gives its overflow to the others
    assert split_quotas({"train": 0.8, "val": 0.0, "test": 0.2}, {"train": 48, "val": 0, "test": 12}, 10) == \
        {"train": 8, "val": 0, "test": 2}
    assert split_quotas(w, {"train": 100, "val": 1, "test": 1}, 50) == {"train": 48, "val": 1, "test": 1}
    assert sum(split_quotas(w, {"train": 3, "val": 1, "test": 1}, 99).values()) == 5


def test_preview_spreads_identities_within_a_class():
    items = [(i, "train", "a", f"id{i // 4}") for i in range(16)]  # 4 identities x 4 items of one class
    assert preview_indices(items, {"train": 1, "val": 0, "test": 0}, 4) == [0, 4, 8, 12]


def test_shard_size_counts_images_with_augmented_views(tiny_spec_dict):
    tiny_spec_dict["augment"] = {"enabled": True, "views_per_image": 1}
    spec = parse_spec(tiny_spec_dict)  # shards.size 8 -> 4 renders + 4 views per shard
    assert images_per_render(spec) == 2
    jobs = shard_jobs(spec, make_plan(spec))
    assert max(len(j.entries) for j in jobs) * images_per_render(spec) == spec.shards.size
    tiny_spec_dict["augment"]["keep_originals"] = False
    assert images_per_render(parse_spec(tiny_spec_dict)) == 1
