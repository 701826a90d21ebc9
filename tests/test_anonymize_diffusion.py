"""The diffusion route of the anonymiser on tiny random-weight Stable Diffusion pipelines built in code.

Random weights make noise images: these tests check the plumbing (loading through from_pretrained,
DDIM inversion and denoising, guidance choices, keys in the encrypted record, recovery) and the
inversion arithmetic, not image quality. Real checkpoints run only where a user gives a path.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from dmsfactory.anonymize.config import AnonymizeConfig, DiffusionAnonConfig
from tests.tiny_sd import save_tiny

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny_sd_anon"))


def _dcfg(tiny, **kw) -> DiffusionAnonConfig:
    base = dict(model=tiny["model"], resolution=64, steps=4, strength=0.75, guided_steps=1, guidance_candidates=2)
    base.update(kw)
    return DiffusionAnonConfig(**base)


def test_missing_model_is_a_clear_error(tmp_path):
    from dmsfactory.anonymize.diffusion import DiffusionAnonymizer
    from dmsfactory.generators.diffusion.generator import ModelNotAvailable

    with pytest.raises(ModelNotAvailable, match="tiny"):
        DiffusionAnonymizer(DiffusionAnonConfig()).setup()
    with pytest.raises(ModelNotAvailable, match="not found"):
        DiffusionAnonymizer(DiffusionAnonConfig(model=str(tmp_path / "nope"))).setup()
    with pytest.raises(ValueError, match="multiple of 8"):
        DiffusionAnonConfig(resolution=60)


def test_inversion_keys_give_the_original_latent_back(tiny):
    """DDIM inversion is exact only where the noise prediction is smooth in the latent; a random UNet's
    is not, so its output convolution is scaled down (x0.03) for this test of the arithmetic: denoising
    the inverted noise map with the original embedding (the keys) must land much nearer the original
    latent than denoising it with the identity-shifted embedding."""
    from dmsfactory.anonymize.diffusion import DiffusionAnonymizer

    d = DiffusionAnonymizer(_dcfg(tiny, steps=10, strength=0.6, identity_shift=3.0, guided_steps=0))
    d.setup()
    with torch.no_grad():
        d.pipe.unet.conv_out.weight.mul_(0.03)
        d.pipe.unet.conv_out.bias.mul_(0.03)
    crop = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    emb, ts = d._embed(d.cfg.prompt), d._timesteps()
    z0 = d._encode(crop)
    zT = d.invert(z0, emb, ts)
    assert float((zT - z0).norm()) > 0.3 * float(z0.norm())  # the noise map is not the latent
    back, _ = d.denoise(zT, emb, ts)
    anon, _ = d.denoise(zT, emb, ts, None, d.directions(emb, 3))
    assert float((back - z0).norm()) < 0.7 * float((anon - z0).norm())


def test_guidance_keeps_the_direction_farthest_from_the_original(tiny):
    from dmsfactory.anonymize.diffusion import DiffusionAnonymizer

    d = DiffusionAnonymizer(_dcfg(tiny, guided_steps=2, guidance_candidates=3))
    crop = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    src = crop.reshape(-1, 3).mean(0)
    res = d.anonymize_crop(crop, seed=5, describe=lambda c: c.reshape(-1, 3).astype(float).mean(0), src_descriptor=src)
    log = res.record["guidance"]
    assert len(log) == 2 and all(len(s["distances"]) == 3 for s in log)
    assert all(s["chosen"] == int(np.argmax(s["distances"])) for s in log)
    assert res.crop.shape == (64, 64, 3) and res.crop.dtype == np.uint8
    k = np.load(io.BytesIO(res.keys))
    assert k["z_T"].shape[0] == 1 and k["embedding"].shape[1] == 77
    again = d.anonymize_crop(crop, seed=5, describe=lambda c: c.reshape(-1, 3).astype(float).mean(0), src_descriptor=src)
    assert (again.crop == res.crop).all()  # deterministic
    assert d.reconstruct(res.keys).shape == (64, 64, 3)


@pytest.mark.slow
def test_diffusion_route_end_to_end_with_keys_and_exact_recovery(tiny, tmp_path):
    import cv2

    from dmsfactory.anonymize.diffusion import DiffusionAnonymizer
    from dmsfactory.anonymize.keys import generate_key_file, load_key, open_record, read_records
    from dmsfactory.anonymize.recover import recover_path
    from dmsfactory.anonymize.run import anonymize_path
    from dmsfactory.privacy.descriptors import load_image
    from tests.test_anonymize import real_frame

    inp = tmp_path / "in"
    inp.mkdir()
    img = real_frame(1.0, 5.0)
    cv2.imwrite(str(inp / "a.png"), img[..., ::-1])
    key = generate_key_file(tmp_path / "k.key")
    cfg = AnonymizeConfig(backend="diffusion", fov_deg=38.0, max_faces=1, diffusion=_dcfg(tiny))
    rep = anonymize_path(inp, tmp_path / "out", cfg, key_path=key)
    assert rep["faces"] == 1 and rep["faces_fallback_pixelated"] == 0 and rep["faces_by_method"] == {"diffusion": 1}
    rec_file = next((tmp_path / "out" / "recovery").glob("*.rec"))
    (_, blob), = list(read_records(rec_file))
    r = open_record(load_key(key), blob)
    assert r.header["diffusion_keys"] == 1 and len(r.extra) == 1
    d = DiffusionAnonymizer(_dcfg(tiny))
    assert d.reconstruct(r.extra[0]).shape == (64, 64, 3)  # the keys regenerate a crop (approximate original)
    out = tmp_path / "rec"
    recover_path(tmp_path / "out", key, out)
    assert (load_image(out / "a.png") == img).all()  # the record's pixels restore it exactly
