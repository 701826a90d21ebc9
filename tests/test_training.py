"""The DMS classifier stage: labels, config, end-to-end train_from_spec on a drawn toy set."""

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dmsfactory.spec import DatasetSpec
from dmsfactory.training.config import TrainConfig
from dmsfactory.training.data import IGNORE, encode_labels, load_split, preprocess
from dmsfactory.training.model import DMSNet, per_sample_loss, to_input
from dmsfactory.training.toy import make_toy_dataset
from dmsfactory.training.train import load_model, mixup_loss, predict, run_training, train_from_spec

torch.set_num_threads(1)

FAST = dict(image_size=32, width=8, batch_size=32, lr=3e-3, private_lr=2e-3)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(root, seed=0, size=48, syn_ids=24, real_ids=16, per_id=10)


def _spec(train: dict, seed: int = 5) -> DatasetSpec:
    return DatasetSpec.model_validate({
        "name": "traintest", "seed": seed, "classes": {"alert": 1},
        "identities": {"count": 4, "images_per_identity": 2}, "train": train,
    })


def test_encode_labels_lead_schema():
    heads = ("class", "fatigue", "eye_left", "eye_right", "yawn", "distracted", "phone")
    labels = {"class": "phone", "fatigue_level": "alert",
              "eyes": {"left": {"state": "close", "visible": True}, "right": {"state": "open", "visible": False}},
              "mouth": {"yawn": "yawning_with_hand"}, "distracted": False,
              "phone": {"present": True, "hand": "left"}, "uses_phone": True}
    assert encode_labels(labels, heads).tolist() == [5, 0, 2, IGNORE, 2, 0, 1]
    assert encode_labels({}, ("class", "yawn")).tolist() == [IGNORE, IGNORE]
    with pytest.raises(ValueError, match="class='asleep'"):
        encode_labels({"class": "asleep"}, ("class",))


def test_preprocess_face_crop_and_errors():
    img = np.zeros((100, 120, 3), np.uint8)
    img[40:60, 50:70] = 255  # the "face"
    out = preprocess(img, (50, 40, 70, 60), 16, "face")
    assert out.shape == (3, 16, 16) and out.dtype == np.uint8
    assert out[:, 8, 8].min() == 255 and out[:, 0, 0].max() == 0  # face centred, margin around it
    full = preprocess(img, None, 16, "full")
    assert full.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        preprocess(np.zeros((10, 10), np.uint8), None, 16, "full")


def test_train_config_validation():
    with pytest.raises(ValidationError, match="private_data is required"):
        TrainConfig(method="dp_sgd")
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig.model_validate({"method": "synthetic_only", "epsilion": 3})
    with pytest.raises(ValidationError):
        TrainConfig(method="dp_sgd", private_data="x", epsilon=0)
    TrainConfig(method="dp_sgd", private_data="x", epsilon=math.inf)  # ε = ∞ means no noise


def test_mixup_loss_endpoints():
    torch.manual_seed(0)
    heads = ("class", "yawn")
    m = DMSNet(heads, 4)
    xr = torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8)
    yr = torch.randint(0, 3, (5, 2))
    xs = torch.randint(0, 255, (7, 3, 16, 16), dtype=torch.uint8)
    ys = torch.randint(0, 3, (7, 2))
    g = torch.Generator().manual_seed(0)
    l0 = mixup_loss(m, xr, yr, xs, ys, heads, 0.0, g)  # λ = 0: the real sample alone
    assert torch.allclose(l0, per_sample_loss(m(to_input(xr)), yr, heads), atol=1e-6)
    l1 = mixup_loss(m, xr, yr, xs, ys, heads, 1.0, g)
    assert l1.shape == (5,) and not torch.allclose(l1, l0)


def test_synthetic_only_learns_above_chance(toy):
    syn, real = toy
    cfg = TrainConfig(method="synthetic_only", pretrain_epochs=14, **FAST)
    h = tuple(cfg.heads)
    st = load_split(syn, "train", h, 32)
    tests = {"synthetic_test": load_split(syn, "test", h, 32)}
    s = run_training(cfg, st, None, tests, None, seed=0)
    m = s["metrics"]["synthetic_test"]
    assert m["class_acc"] > 0.4  # chance is 1/6
    assert m["phone_acc"] > 0.85 and m["distracted_acc"] > 0.85


def test_dp_sgd_end_to_end_from_spec(toy, tmp_path):
    syn, real = toy
    spec = _spec({"method": "dp_sgd", "dataset_dir": str(syn), "private_data": str(real), "epsilon": 2.0,
                  "pretrain_epochs": 4, "epochs": 2, "mixup": {"enabled": True, "lam_max": 0.5}, **FAST})
    events = []
    out = tmp_path / "run"
    s = train_from_spec(spec, out, progress=events.append)
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "MODEL_CARD.md", "ledger.json", "metrics.json"}
    led = json.loads((out / "ledger.json").read_text())
    assert led["method"] == "dp_sgd" and led["private_records"] == 160
    assert len(led["entries"]) == 2
    for e in led["entries"]:
        for k in ("accountant", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon"):
            assert k in e
    assert led["entries"][-1]["epsilon"] <= 2.0 and led["delta"] < 1 / 160
    assert s["privacy"]["epsilon"] == led["entries"][-1]["epsilon"]
    assert set(s["metrics"]) == {"synthetic_test", "real_test"}
    assert any(e["phase"] == "finetune_private_dp" for e in events)
    card = (out / "MODEL_CARD.md").read_text()
    assert "ε = " in card and "dp_sgd" in card
    lines = card.splitlines()
    for name, m in s["metrics"].items():  # the card says when a head does no better than its majority label
        i = next(k for k, line in enumerate(lines) if line.startswith(f"- **{name}**"))
        notes = [line for line in lines[i + 1 : i + 4] if line.startswith("  - **at or below the majority-label rate")]
        flagged = bool(notes) and f"class {m['class_acc']:.3f}" in notes[0]
        assert flagged == (m["class_acc"] <= m["majority_baseline"]["class"] + 1e-6), (name, m)
    from dmsfactory.summary import train_summary_lines

    lines = train_summary_lines(s)
    assert lines[0].startswith("privacy:  dp_sgd: epsilon ") and "delta" in lines[0]
    assert sum(line.startswith("accuracy: ") and "majority-class rate" in line for line in lines) == 2
    # weights reload and give the same predictions
    model, meta = load_model(out / "model.safetensors")
    assert meta["method"] == "dp_sgd" and meta["image_size"] == 32
    x = torch.from_numpy(load_split(real, "test", tuple(meta["heads"]), 32).x)
    s2 = train_from_spec(spec, tmp_path / "run2")  # same spec + seed ⇒ same model
    m2, _ = load_model(tmp_path / "run2" / "model.safetensors")
    p1, p2 = predict(model, x), predict(m2, x)
    assert all(torch.equal(p1[h], p2[h]) for h in p1)
    assert s2["metrics"] == s["metrics"]


def test_pate_end_to_end(toy, tmp_path):
    syn, real = toy
    spec = _spec({"method": "pate", "dataset_dir": str(syn), "private_data": str(real), "epsilon": 8.0,
                  "pretrain_epochs": 3, "pate": {"teachers": 4, "queries": 60, "teacher_epochs": 2,
                                                  "student_epochs": 2}, **FAST})
    s = train_from_spec(spec, tmp_path / "pate")
    p = s["privacy"]
    assert p["teachers"] == 4 and p["partition_unit"] == "identity"
    assert p["epsilon"] <= 8.0 and p["epsilon_data_dependent"] <= p["epsilon"] + 1e-9
    assert p["answered"] == 60
    led = json.loads((tmp_path / "pate" / "ledger.json").read_text())
    assert led["entries"][-1]["accountant"] == "pate_rdp_gnmax"
    assert s["heads"] == ["class"]


def test_missing_inputs_are_clear_errors(toy, tmp_path):
    syn, real = toy
    with pytest.raises(FileNotFoundError, match="train.dataset_dir"):
        train_from_spec(_spec({"method": "synthetic_only", "dataset_dir": str(tmp_path / "nope")}), tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="train.private_data"):
        train_from_spec(_spec({"method": "dp_sgd", "dataset_dir": str(syn), "private_data": str(tmp_path / "no")}),
                        tmp_path / "o")
    with pytest.raises(ValueError, match="train.delta"):
        train_from_spec(_spec({"method": "dp_sgd", "dataset_dir": str(syn), "private_data": str(real),
                               "delta": 0.5, "pretrain_epochs": 0, "epochs": 1, **FAST}), tmp_path / "o")
    with pytest.raises(ValueError, match="no 'train:' section"):
        train_from_spec(DatasetSpec.model_validate({"name": "x", "seed": 1, "classes": {"alert": 1},
                                                    "identities": {"count": 1, "images_per_identity": 1}}), tmp_path)


def test_random_flip_mirrors_and_swaps_eyes():
    from dmsfactory.training.train import random_flip

    heads = ("class", "eye_left", "eye_right")
    x = torch.arange(4 * 3 * 2 * 5, dtype=torch.float32).view(4, 3, 2, 5)
    y = torch.tensor([[0, 1, 2]] * 4)
    g = torch.Generator().manual_seed(1)
    xf, yf = random_flip(x, y, heads, g)
    flipped = [bool(torch.equal(xf[i], x[i].flip(-1))) for i in range(4)]
    assert any(flipped) and not all(flipped)  # p = 0.5 per sample (seeded)
    for i in range(4):
        if flipped[i]:
            assert yf[i].tolist() == [0, 2, 1]
        else:
            assert torch.equal(xf[i], x[i]) and yf[i].tolist() == [0, 1, 2]


def test_card_flags_heads_at_the_majority_rate():
    from dmsfactory.training.train import at_majority

    m = {"class_acc": 0.16899999976158142, "majority_baseline": {"class": 0.169, "yawn": 0.8, "phone": 0.9},
         "yawn_acc": 0.85, "phone_acc": 0.75}
    assert at_majority(m) == ["class 0.169 = 0.169", "phone 0.750 < 0.900"]
