import subprocess
import sys

import pytest

from dmsfactory.cli import main
from dmsfactory.spec import SpecError, load_spec, parse_spec


def test_demo_spec_validates():
    from dmsfactory.privacy.testgallery import write_reference_gallery

    write_reference_gallery("out/real-gallery")  # what `make demo` does first
    spec = load_spec("specs/demo.yaml")
    assert spec.total_samples == spec.identities.count * spec.identities.images_per_identity


@pytest.mark.parametrize(
    "patch, field, needle",
    [
        ({"classes": {"alert": 1, "sleepy": 1}}, "classes.sleepy", "allowed values: alert, mild_fatigue"),
        ({"identities": {"count": -2, "images_per_identity": 3}}, "identities.count", "greater than 0"),
        ({"splits": {"train": 0.5, "val": 0.2, "test": 0.2}}, "splits", "must sum to 1"),
        ({"identities": {"count": "ten", "images_per_identity": 3}}, "identities.count", "valid integer"),
        ({"colour": "red"}, "colour", "unknown key; allowed keys: name, seed"),
        ({"conditions": {"lighting": {"moon": 1}}}, "conditions.lighting.moon", "allowed values: daylight, night_ir"),
        ({"conditions": {"head_pose": {"yaw": {"min": 5, "max": -5}}}}, "conditions.head_pose.yaw", "min (5.0) must be <= max"),
        ({"backend": "gan"}, "backend", "allowed values: procedural, diffusion"),
        ({"classes": {"alert": 0}}, "classes", "must not all be 0"),
    ],
)
def test_bad_spec_names_field_and_allowed_values(tiny_spec_dict, patch, field, needle):
    tiny_spec_dict.update(patch)
    with pytest.raises(SpecError) as ei:
        parse_spec(tiny_spec_dict)
    lines = ei.value.problems
    assert any(line.startswith(field + ":") and needle in line for line in lines), lines


def test_cli_validate_exit_2_one_line_per_problem_no_traceback(tiny_spec_dict, write_spec):
    tiny_spec_dict["classes"] = {"sleepy": 1}
    tiny_spec_dict["identities"]["count"] = -1
    tiny_spec_dict["extra"] = 1
    p = write_spec(tiny_spec_dict)
    r = subprocess.run([sys.executable, "-m", "dmsfactory.cli", "validate", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 3, lines
    assert all(line.startswith(f"error: {p}: ") for line in lines)


def test_cli_run_reads_spec_the_same_way(tiny_spec_dict, write_spec, tmp_path, capsys):
    tiny_spec_dict["seed"] = "x"
    p = write_spec(tiny_spec_dict)
    assert main(["run", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "seed:" in capsys.readouterr().err


def test_missing_and_broken_files(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "spec file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert main(["validate", str(bad)]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err


def test_spec_hash_ignores_output_dir(tiny_spec_dict):
    a = parse_spec(tiny_spec_dict)
    tiny_spec_dict["output"] = {"dir": "elsewhere"}
    b = parse_spec(tiny_spec_dict)
    tiny_spec_dict["seed"] = 8
    c = parse_spec(tiny_spec_dict)
    assert a.content_hash() == b.content_hash() != c.content_hash()
