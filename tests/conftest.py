"""Shared test setup: offline, single-threaded, Prefect without analytics."""

import os

from dmsfactory.env import apply_defaults  # imports only os

apply_defaults()  # the CLI's defaults (Prefect, telemetry, offline hub, quiet native logs)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: results depend on it (tests/golden_run.py)

import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402

TINY_SPEC = {
    "name": "tiny",
    "seed": 7,
    "backend": "procedural",
    "classes": {"alert": 1, "mild_fatigue": 1, "moderate_fatigue": 1, "severe_fatigue": 1, "distracted": 1, "phone": 1},
    "conditions": {
        "lighting": {"daylight": 2, "night_ir": 1, "tunnel": 1, "backlight": 1},
        "accessory": {"none": 2, "glasses": 1, "sunglasses": 1, "mask": 1, "cap": 1},
    },
    "identities": {"count": 10, "images_per_identity": 3, "mixup_fraction": 0.0},
    "image": {"size": 96},
    "shards": {"size": 8},
    "splits": {"train": 0.6, "val": 0.2, "test": 0.2},
}


@pytest.fixture
def tiny_spec_dict():
    return copy.deepcopy(TINY_SPEC)


@pytest.fixture
def write_spec(tmp_path: Path):
    def _write(data: dict, name: str = "spec.yaml") -> Path:
        p = tmp_path / name
        p.write_text(yaml.safe_dump(data))
        return p

    return _write
