"""Pixels, labels and shard bytes stay identical across refactors (issue 22's "Done when").

Runs ``specs/demo.yaml`` with ``limit=12`` (augment, verify, privacy on) and three short clips of
``specs/clips-demo.yaml``, and compares the sha256 of every shard, every shard member (images, clip
frames, ``<key>.json``, ``<key>.params.txt``) and every top-level field of each ``<key>.json`` with
``tests/golden/fingerprint.json``, recorded from main's code without issue 22's refactor (first at
1c4a709, then again at e3ef298 after i17 and i19 were merged, whose spec and privacy changes changed
the keys and verdicts; the refactor, merged with them, reproduces that fixture byte for byte; and
again after issue 19's privacy gate judged identity views on their labelled face only and ran the Haar
presence fallback around the labelled face box, which changed verdict scores, and in the same merge
labels schema 1.3.0 (mouth.visible from the render; renderer 0.4.1 records lip_points)
and dlib's ResNet run in torch (stored face descriptors moved by float noise); and for labels schema 1.4.0
(a yawning still is a moment of a yawn: one yawn render's pixels, every label's schema_version); and for
renderer 0.4.2 (ambient occlusion on the ambient light only: every render's pixels); and for renderer
0.5.0 with labels 1.5.0 (face-priority auto-exposure: every render's pixels; eyes.visible from the render);
and for renderer 0.6.0 (corneal glints: the pixels of every render with an open eye)). A deliberate change of what the factory writes (renderer, labels, augmentation,
privacy verdicts) regenerates the fixture with ``PYTHONPATH=src .venv/bin/python tests/golden_run.py
--write``, committed together with that change; a refactor must never need to.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from golden_run import FIXTURE, compare


def test_demo_spec_shards_are_byte_identical_to_the_recorded_fingerprint(tmp_path):
    """In a fresh process: state left by other tests (torch/OpenCV thread counts) must not leak in."""
    expected = json.loads(FIXTURE.read_text())
    fp = tmp_path / "fingerprint.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")] if p)}
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("golden_run.py")), "--out", str(fp)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(fp.read_text())
    assert got["members"], "the run wrote no shard members"
    diffs = compare(expected, got)
    assert not diffs, f"{len(diffs)} differences from {FIXTURE.name} (see tests/golden_run.py):\n" + "\n".join(diffs[:40])


def test_the_comparison_detects_a_changed_label():
    """The comparison itself: one changed label field is reported, with the field's name."""
    expected = json.loads(FIXTURE.read_text())
    got = json.loads(json.dumps(expected))
    name = next(k for k in got["members"] if k.endswith(".json"))
    got["members"][name] = "0" * 64
    got["json_fields"][name]["labels"] = "0" * 64
    diffs = compare(expected, got)
    assert diffs == [f"members: {name} differs (fields changed: labels)"]
