"""`dmsfactory run` with the diffusion backend, on a tiny model built in code and loaded from disk."""

import subprocess
import sys

import yaml

from dmsfactory.datasets import iter_records, load_manifest


def test_run_diffusion_spec_end_to_end(tmp_path):
    model_dir = tmp_path / "tiny"
    subprocess.run([sys.executable, "-m", "dmsfactory.generators.diffusion.tiny", str(model_dir)], check=True)
    spec = yaml.safe_load(open("specs/diffusion-tiny.yaml"))
    spec["diffusion"]["model"] = str(model_dir / "sd")
    spec["diffusion"]["controlnet"]["model"] = str(model_dir / "controlnet")
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(out), "--no-prefect"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = load_manifest(out)
    assert m["backend"] == "diffusion" and m["counts"]["planned"] == 12
    docs = [d for d, _ in iter_records(out)]
    assert len(docs) == 12
    for d in docs:
        diff = d["params"]["diffusion"]
        assert diff["model"] == str(model_dir / "sd") and diff["mode"] == "controlnet" and diff["config_hash"]
        assert d["labels"]["geometry_source"] == "renderer" and len(d["landmarks"]["xy"]) == 478


def test_missing_model_is_exit_2_with_a_clear_line(tmp_path):
    spec = yaml.safe_load(open("specs/diffusion-tiny.yaml"))
    spec["diffusion"]["model"] = str(tmp_path / "no-such-model")
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(spec))
    r = subprocess.run(
        [sys.executable, "-m", "dmsfactory.cli", "run", str(p), "--out", str(tmp_path / "o"), "--no-prefect"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no-such-model" in r.stderr
