"""Stable Diffusion backend on tiny random-weight pipelines built in code (CPU, offline).

The tiny models are saved to a temp dir and loaded back through ``from_pretrained`` exactly as a
user's checkpoint would be. Their images are noise-like; the tests check the plumbing that matters:
determinism, batch-size independence, mixup, conditioning, provenance, errors.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dmsfactory.generators.diffusion import DiffusionConfig, DiffusionGenerator, ModelNotAvailable, reproduce
from dmsfactory.generators.diffusion.condmap import draw_condition_map
from dmsfactory.generators.diffusion.identity import slerp
from dmsfactory.generators.diffusion.prompts import PromptBuilder
from tests.tiny_sd import save_tiny

torch.set_num_threads(1)
SIZE = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def plan():
    from dmsfactory.plan import make_plan
    from dmsfactory.spec import parse_spec

    spec = parse_spec(
        {
            "name": "difftest",
            "seed": 7,
            "classes": {"alert": 1, "severe_fatigue": 1, "phone": 1, "distracted": 1},
            "conditions": {"lighting": {"daylight": 1, "night_ir": 1}},
            "identities": {"count": 6, "images_per_identity": 2, "mixup_fraction": 0.34},
            "splits": {"train": 1.0, "val": 0.0, "test": 0.0},
            "image": {"size": SIZE},
            "backend": "diffusion",
            "diffusion": {"model": "unused"},
        }
    )
    return make_plan(spec)


def _gen(tiny, **kw):
    cfg = {"model": tiny["model"], "steps": 3, "guidance": 4.0}
    cfg.update(kw)
    return DiffusionGenerator(DiffusionConfig(**cfg), SIZE)


def _images(samples):
    assert all(not s.quarantined for s in samples), [s.quarantine_reasons for s in samples]
    return [s.image.astype(np.int16) for s in samples]


# ---------------------------------------------------------------- config and errors
def test_config_validation_messages():
    with pytest.raises(ValidationError, match="controlnet"):
        DiffusionConfig(model="x", mode="controlnet")
    with pytest.raises(ValidationError, match="unknown prompt template key"):
        DiffusionConfig(model="x", prompt_templates={"class.sleepy": "zzz"})
    with pytest.raises(ValidationError, match="multiple of 8"):
        DiffusionConfig(model="x", resolution=100)
    with pytest.raises(ValidationError, match="extra"):
        DiffusionConfig(model="x", stepz=3)
    with pytest.raises(ValidationError, match="fp16"):
        DiffusionConfig(model="x", device="cpu", dtype="fp16")
    assert DiffusionConfig(model="x").mode == "txt2img"


def test_missing_local_model_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_model"
    g = DiffusionGenerator(DiffusionConfig(model=str(missing)), SIZE)
    with pytest.raises(ModelNotAvailable) as ei:
        g.setup()
    msg = str(ei.value)
    assert str(missing) in msg and "local copy" in msg and "diffusion.model" in msg


def test_missing_hub_model_offline_is_a_clear_error():
    g = DiffusionGenerator(DiffusionConfig(model="nobody-xyz/no-such-sd-model", local_files_only=True), SIZE)
    with pytest.raises(ModelNotAvailable) as ei:
        g.setup()
    msg = str(ei.value)
    assert "nobody-xyz/no-such-sd-model" in msg and "save_pretrained" in msg


def test_directory_without_pipeline_is_a_clear_error(tmp_path):
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(ModelNotAvailable, match="model_index.json"):
        DiffusionGenerator(DiffusionConfig(model=str(tmp_path)), SIZE).setup()


def test_missing_controlnet_is_a_clear_error(tiny, tmp_path):
    g = _gen(tiny, mode="controlnet", controlnet={"model": str(tmp_path / "nocn")})
    with pytest.raises(ModelNotAvailable, match="controlnet model"):
        g.setup()


# ---------------------------------------------------------------- prompts
def test_prompts_deterministic_and_follow_conditions(plan):
    pb = PromptBuilder()
    e = next(x for x in plan if not x["identity_params"]["mixup"])
    p1, p2 = pb.prompts_for(e), PromptBuilder().prompts_for(copy.deepcopy(e))
    assert p1 == p2
    night = dict(e, lighting="night_ir")
    day = dict(e, lighting="daylight")
    assert "near-infrared" in pb.prompts_for(night)["prompt"]
    assert "near-infrared" not in pb.prompts_for(day)["prompt"]
    assert "color" in pb.prompts_for(night)["negative_prompt"]
    shades = dict(e, accessory="sunglasses")
    assert "sunglasses" in pb.prompts_for(shades)["prompt"]
    # identity code words depend on the identity seed only
    assert pb.identity_words(e["identity_seed"]) == pb.identity_words(e["identity_seed"])
    assert len({pb.identity_words(s) for s in range(30)}) > 20
    over = PromptBuilder({"class.alert": "ALERTWORD"})
    assert "ALERTWORD" in over.prompts_for(dict(e, **{"class": "alert"}))["prompt"]
    with pytest.raises(ValueError, match="lighting"):
        pb.prompts_for(dict(e, lighting="moonlight"))


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    m = slerp(a, b, 0.5)
    assert not torch.allclose(m, a) and not torch.allclose(m, b)
    # slerp keeps a Gaussian latent's norm (a lerp would shrink it by ~1/sqrt(2))
    assert abs(float(m.norm()) - 0.5 * float(a.norm() + b.norm())) < 0.05 * float(a.norm())


# ---------------------------------------------------------------- generation
def test_txt2img_records_provenance_and_no_geometry(tiny, plan):
    g = _gen(tiny)
    s = g.generate(plan[:1])[0]
    assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
    assert s.landmarks is None and s.bbox is None
    d = s.params["diffusion"]
    for k in ("model", "revision", "config_hash", "prompt", "negative_prompt", "seed", "steps", "guidance",
              "scheduler", "mode", "strength", "mixup", "geometry"):
        assert k in d, k
    assert d["model"] == tiny["model"] and d["mode"] == "txt2img" and d["geometry"] == "unknown"
    assert len(d["config_hash"]) == 64 and d["seed"] == plan[0]["sample_seed"]
    json.dumps(s.to_json())  # params stay JSON-serialisable
    assert {k: v for k, v in s.params.items() if k != "diffusion"} == plan[0]


def test_batch_size_independence(tiny, plan):
    entries = plan[:5]
    # eta > 0: DDIM draws noise every step from the per-image generators
    one = _images(_gen(tiny, batch_size=1, eta=0.5).generate(entries))
    five = _images(_gen(tiny, batch_size=5, eta=0.5).generate(entries))
    two = _images(_gen(tiny, batch_size=2, eta=0.5).generate(entries))
    again = _images(_gen(tiny, batch_size=5, eta=0.5).generate(entries))
    for a, b, c, d in zip(one, five, two, again):
        assert np.array_equal(b, d)  # same batching: bit-identical
        for x in (b, c):  # other batching: equal up to float rounding of batched matmuls
            diff = np.abs(a - x)
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # and the images are not all the same (the seeds matter)
    assert np.abs(one[0] - one[1]).mean() > 0.5


def test_seed_changes_image(tiny, plan):
    e = plan[0]
    e2 = dict(e, sample_seed=e["sample_seed"] + 1)
    a, b = _images(_gen(tiny, eta=1.0).generate([e, e2]))
    assert np.abs(a - b).max() > 1


def _pure(mixed: dict, which: str) -> dict:
    m = mixed["identity_params"]["mixup"]
    e = copy.deepcopy(mixed)
    e["identity"] = m[which]
    e["identity_seed"] = m[f"{which}_seed"]
    e["identity_params"] = dict(m[f"{which}_params"], mixup=None)
    return e


def _with_lam(mixed: dict, lam: float) -> dict:
    e = copy.deepcopy(mixed)
    e["identity_params"]["mixup"]["lam"] = lam
    return e


def test_mixup_endpoints_equal_pure_identities(tiny, plan):
    mixed = next(e for e in plan if e["identity_params"]["mixup"])
    entries = [_pure(mixed, "a"), _pure(mixed, "b"), _with_lam(mixed, 0.0), _with_lam(mixed, 1.0), _with_lam(mixed, 0.5)]
    samples = _gen(tiny, batch_size=1).generate(entries)
    pa, pb, m0, m1, mh = _images(samples)
    assert np.abs(pa - pb).mean() > 0.5  # the two identities differ
    assert np.array_equal(m0, pa) and np.array_equal(m1, pb)
    assert np.abs(mh - pa).mean() > 0.25 and np.abs(mh - pb).mean() > 0.25
    rec = samples[4].params["diffusion"]["mixup"]
    assert rec["a"] == mixed["identity_params"]["mixup"]["a"] and rec["b"] == mixed["identity_params"]["mixup"]["b"]
    assert rec["lam"] == 0.5 and rec["prompt_a"] != rec["prompt_b"]
    assert samples[4].params["identity_params"]["mixup"]["lam"] == 0.5  # soft identity label source


def test_identity_keeps_latent_across_conditions(tiny, plan):
    """Depth: two images of one identity share the initial latent, so with identical condition words
    they are identical, and a condition change alone changes the image."""
    e = next(x for x in plan if not x["identity_params"]["mixup"])
    same = dict(e, sample_seed=e["sample_seed"] + 99, key=e["key"] + "b")  # eta=0: the sample seed is unused
    night = dict(e, lighting="night_ir" if e["lighting"] != "night_ir" else "daylight")
    a, b, c = _images(_gen(tiny, batch_size=1).generate([e, same, night]))
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 0


def test_recorded_params_reproduce_the_image(tiny, plan):
    s = _gen(tiny, batch_size=1, eta=0.3).generate(plan[2:3])[0]
    params = json.loads(json.dumps(s.params))  # as read back from a shard
    r = reproduce(params)
    assert np.array_equal(r.image, s.image)
    assert r.params["diffusion"]["prompt"] == s.params["diffusion"]["prompt"]
    bad = copy.deepcopy(params)
    bad["diffusion"]["config_hash"] = "0" * 64
    with pytest.raises(ValueError, match="config hash"):
        reproduce(bad)


def test_bad_plan_entry_is_quarantined_not_dropped(tiny, plan):
    bad = copy.deepcopy(plan[0])
    bad["lighting"] = "moonlight"
    out = _gen(tiny).generate([bad, plan[1]])
    assert len(out) == 2 and out[0].quarantined and "moonlight" in out[0].quarantine_reasons[0]
    assert not out[1].quarantined and out[1].image is not None


# ---------------------------------------------------------------- conditioning maps
def test_condition_map_draws_landmarks():
    rng = np.random.default_rng(0)
    lm = rng.uniform(10, 54, size=(478, 2))
    m = draw_condition_map(lm, 128, src_size=64)
    assert m.shape == (128, 128, 3) and m.dtype == np.uint8 and (m > 0).any()
    m2 = draw_condition_map(lm + 3, 128, src_size=64)
    assert not np.array_equal(m, m2)
    hidden = draw_condition_map(lm, 128, src_size=64, visibility=np.zeros(478, bool))
    assert not hidden.any()
    mesh = draw_condition_map(lm, 128, src_size=64, style="mesh")
    assert (mesh > 0).sum() > (m > 0).sum()
    with pytest.raises(ValueError, match="landmarks"):
        draw_condition_map(lm[:10], 128)


# ---------------------------------------------------------------- ControlNet and img2img (need the renderer)
def _geometry_pair(plan):
    """Same identity, seed and condition words; different head pose and eye openness (geometry only)."""
    e = copy.deepcopy(next(x for x in plan if not x["identity_params"]["mixup"]))
    e["class"], e["state"]["yawn"] = "alert", "none"
    e["head_pose_car"] = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    f = copy.deepcopy(e)
    f["key"] = e["key"] + "g"
    f["head_pose_car"] = {"yaw": 12.0, "pitch": 8.0, "roll": 10.0}  # below the prompt's head-turn thresholds
    f["state"]["eye_openness_left"] = f["state"]["eye_openness_right"] = 0.1
    f["state"]["mouth_open"] = 0.8
    return e, f


def test_controlnet_conditioning_map_changes_output(tiny, plan):
    pytest.importorskip("dmsfactory.generators.procedural", reason="procedural renderer")
    from dmsfactory.generators.procedural import render

    e, f = _geometry_pair(plan)
    cn = {"model": tiny["controlnet"], "conditioning_scale": 1.0}
    g = _gen(tiny, mode="controlnet", controlnet=cn, batch_size=2)
    se, sf = g.generate([e, f])
    a, b = _images([se, sf])
    pa, pf = se.params["diffusion"], sf.params["diffusion"]
    assert pa["prompt"] == pf["prompt"]  # only the geometry differs
    # the images differ, and where the face (the drawn map) is, not elsewhere
    diff = np.abs(a - b).sum(-1)
    face = np.zeros(diff.shape, bool)
    x0 = int(min(se.bbox[0], sf.bbox[0])) - 2
    y0 = int(min(se.bbox[1], sf.bbox[1])) - 2
    x1 = int(max(se.bbox[2], sf.bbox[2])) + 3
    y1 = int(max(se.bbox[3], sf.bbox[3])) + 3
    face[max(y0, 0) : y1, max(x0, 0) : x1] = True
    assert diff[face].mean() > 1.0 and diff[face].mean() > 4 * diff[~face].mean()
    # without the map's influence the two are identical: the difference came from the map
    off = _gen(tiny, mode="controlnet", controlnet=dict(cn, conditioning_scale=0.0), batch_size=2)
    a0, b0 = _images(off.generate([e, f]))
    assert np.abs(a0 - b0).max() <= 1
    # geometry labels are the renderer's for the same plan entry
    r = render(e)
    assert se.landmarks.shape == (478, 2)
    np.testing.assert_allclose(se.landmarks, np.asarray(r.landmarks) * SIZE / r.image.shape[1], atol=1e-3)
    assert pa["geometry"] == "renderer" and pa["controlnet"]["config_hash"] and pa["conditioning_scale"] == 1.0
    assert "landmarks_3d" in se.arrays



def test_controlnet_on_the_render_depth(tiny, plan):
    pytest.importorskip("dmsfactory.generators.procedural", reason="procedural renderer")
    from dmsfactory.generators.procedural import ProceduralGenerator, render
    from dmsfactory.generators.procedural.generator import depth_to_map

    e, f = _geometry_pair(plan)
    cn = {"model": tiny["controlnet"], "conditioning_scale": 1.0, "map_style": "depth"}
    g = _gen(tiny, mode="controlnet", controlnet=cn, batch_size=2)
    se, sf = g.generate([e, f])
    a, b = _images([se, sf])
    # the head moved: another depth map, another image (a random tiny ControlNet answers a smooth grey
    # map weakly, so the check is "differs at all"); at conditioning scale 0 the two are the same image
    assert np.abs(a - b).max() >= 3
    a0, b0 = _images(_gen(tiny, mode="controlnet", controlnet=dict(cn, conditioning_scale=0.0), batch_size=2).generate([e, f]))
    assert np.abs(a0 - b0).max() <= 1
    # the map is the render's own depth buffer, as inverse depth at the generation size
    geo = ProceduralGenerator().generate([e], keep_depth=True)[0]
    m = g.mode.control_map(geo, g.resolution, g.image_size)
    want = depth_to_map(render(e).depth, g.resolution)
    assert m.shape == (g.resolution, g.resolution, 3) and np.array_equal(m[..., 0], want) and np.array_equal(m[..., 2], want)
    assert want.max() > 200 and (want == 0).any()  # near face bright, empty background black
    # conditioning only: the depth buffer is not written with the sample; the style is recorded
    assert "depth" not in se.arrays and "landmarks_3d" in se.arrays
    assert se.params["diffusion"]["controlnet"]["map_style"] == "depth"
    (lm,) = _gen(tiny, mode="controlnet", controlnet=dict(cn, map_style="mediapipe_face"), batch_size=2).generate([e])
    assert not np.array_equal(_images([lm])[0], a)  # a landmark map conditions differently

def test_img2img_from_render(tiny, plan):
    pytest.importorskip("dmsfactory.generators.procedural", reason="procedural renderer")
    e, f = _geometry_pair(plan)
    g = _gen(tiny, mode="img2img", img2img={"strength": 0.5}, batch_size=2)
    se, sf = g.generate([e, f])
    a, b = _images([se, sf])
    assert np.abs(a - b).mean() > 0.5  # the render (geometry) shows through
    assert se.params["diffusion"]["strength"] == 0.5 and se.landmarks is not None
    strong = _images(_gen(tiny, mode="img2img", img2img={"strength": 1.0}).generate([e]))[0]
    assert np.abs(strong - a).mean() > 0.5
    again = _images(_gen(tiny, mode="img2img", img2img={"strength": 0.5}, batch_size=1).generate([e]))[0]
    assert np.abs(again - a).max() <= 1


def test_card_section_and_spec_section(tiny, plan):
    from dmsfactory.generators.diffusion import card_section
    from dmsfactory.spec import SpecError, parse_spec

    samples = _gen(tiny).generate(plan[:3])
    sec = card_section([s.to_json() for s in samples])
    assert sec.data["samples"] == 3 and sec.data["modes"] == {"txt2img": 3}
    assert tiny["model"] in sec.markdown and sec.data["geometry"] == {"unknown": 3}
    base = {"name": "x", "seed": 1, "classes": {"alert": 1}, "identities": {"count": 2, "images_per_identity": 1},
            "backend": "diffusion"}
    spec = parse_spec(dict(base, diffusion={"model": tiny["model"], "mode": "img2img", "img2img": {"strength": 0.4}}))
    assert spec.diffusion.img2img.strength == 0.4
    with pytest.raises(SpecError, match="diffusion.steps"):
        parse_spec(dict(base, diffusion={"model": "m", "steps": 0}))
    with pytest.raises(SpecError, match="controlnet"):
        parse_spec(dict(base, diffusion={"model": "m", "mode": "controlnet"}))
