"""The gate and ``dmsfactory leakcheck`` agree sample by sample on a demo-sized run (issue 23).

The demo spec (400 renders, 800 images) runs with the privacy gate against the demo's real gallery,
to which the written bytes of one view of one identity were added: that identity must be quarantined
whole at the gate. ``leakcheck`` on the fresh output must exit 0, reproduce every verdict (the
redacted identity included), name what it did ("flagged"), and write its report next to the dataset.
dlib, MediaPipe and the renderer run for real.
"""

import json
from pathlib import Path

import pytest
import yaml

from dmsfactory import pipeline
from dmsfactory.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]


def _leakcheck_agrees(out: Path, gal: Path, tmp_path: Path, monkeypatch) -> dict:
    from dmsfactory.privacy.leakcheck import leakcheck

    monkeypatch.chdir(tmp_path)  # the report must not land in the working directory
    logs: list[str] = []
    code = leakcheck(out, [gal], log=logs.append)
    assert code == 0, logs[-1]
    assert not (tmp_path / "privacy_report.json").exists() and not (tmp_path / "privacy").exists()
    lc = json.loads((out / "leakcheck" / "privacy_report.json").read_text())
    a = lc["leakcheck"]["agreement"]
    assert a["comparable"], a["why_not"]
    assert a["disagree"] == 0 and a["agree"] + a["redacted"] == a["compared"], a
    assert a["identity_distance_max_difference"] < 1e-3 and not a["views_whose_bytes_differ"] and not a["views_missing"]
    assert lc["verdicts"]["leaked"] == 0  # nothing in the output (a mosaic is no one's face)
    md = (out / "leakcheck" / "privacy_report.md").read_text()
    assert f"Agreement with the gate: {a['agree']} of {a['compared']} images agree; {a['redacted']} were quarantined by the gate" in md
    assert f"agrees with the gate on {a['agree']} of {a['compared']} images" in logs[-1]
    return lc


@pytest.mark.slow
def test_gate_and_leakcheck_agree_sample_by_sample_on_a_demo_sized_run(tmp_path, monkeypatch):
    from dmsfactory.datasets import iter_records
    from dmsfactory.privacy.report import sample_verdict
    from dmsfactory.privacy.testgallery import write_reference_gallery

    gal = write_reference_gallery(tmp_path / "gallery")  # the demo's gallery (make demo writes the same files)
    d = yaml.safe_load((ROOT / "specs" / "demo.yaml").read_text())
    d["privacy"].update(galleries=[str(gal)], cache_dir=str(tmp_path / "cache"))
    spec = parse_spec(d)
    out = tmp_path / "demo"
    res = pipeline.run_plain(spec, out, workers=2)
    assert res["manifest"]["counts"]["planned"] == 400
    docs = {doc["key"]: doc for doc, _ in iter_records(out)}
    assert len(docs) == 800
    rep = json.loads((out / "privacy_report.json").read_text())
    assert rep["leakage_mode"]["identities_judged"] == 40 and rep["action"] == "quarantined"
    lc = _leakcheck_agrees(out, gal, tmp_path, monkeypatch)
    a = lc["leakcheck"]["agreement"]
    assert a["compared"] == 800 and a["identities_reproduced"] + a["identities_redacted_by_gate"] == 40
    for g, row in a["gate_vs_leakcheck"].items():  # sample by sample: each gate verdict found again
        if g != "leaked":
            assert row == {g: rep["verdicts"][g]}, (g, row)
    assert sum(v == "leaked" for v in map(sample_verdict, docs.values())) == a["redacted"]
    # the gate's own report and files are untouched
    assert json.loads((out / "privacy_report.json").read_text()) == rep


@pytest.mark.slow
def test_an_identity_the_gate_quarantined_is_agreed_as_redacted(tmp_path, monkeypatch, tiny_spec_dict):
    """One view of identity 1 is planted in the gallery (its written bytes): the gate quarantines and
    redacts all of that identity's images; leakcheck agrees (redacted), and flags nothing."""
    import cv2

    from dmsfactory.datasets import iter_records
    from dmsfactory.datasets.shards import encode_image
    from dmsfactory.privacy.report import sample_verdict
    from skimage import data

    gal = tmp_path / "gallery"
    gal.mkdir()
    cv2.imwrite(str(gal / "astronaut.png"), data.astronaut()[..., ::-1])
    tiny_spec_dict.update({"identities": {"count": 8, "images_per_identity": 2}, "image": {"size": 160}, "shards": {"size": 3},
                           "augment": {"enabled": True, "policy": "geometric"},
                           "privacy": {"galleries": [str(gal)], "cache_dir": str(tmp_path / "cache"), "threshold": 0.3}})
    spec = parse_spec(tiny_spec_dict)
    views = pipeline.PlanViews(spec)
    planted = views.candidates("id000001")[1]
    (gal / "planted.jpg").write_bytes(encode_image(views.render(planted).image, spec.image.format, spec.image.jpeg_quality))
    out = tmp_path / "ds"
    pipeline.run_plain(spec, out)
    docs = {doc["key"]: doc for doc, _ in iter_records(out)}
    leaked = {k for k, doc in docs.items() if sample_verdict(doc) == "leaked"}
    mine = {k for k, doc in docs.items() if doc["identity"] == "id000001"}
    assert mine and mine <= leaked  # every image of the identity and every augmented copy
    lv = [v for v in docs[planted]["verdicts"] if v["check"] == "leakage"][0]
    assert lv["scores"]["deciding_view"] == planted and lv["scores"]["file"] == "planted.jpg" and lv["scores"]["distance"] < 0.05
    lc = _leakcheck_agrees(out, gal, tmp_path, monkeypatch)
    a = lc["leakcheck"]["agreement"]
    assert a["redacted"] == len(leaked) and a["identities_redacted_by_gate"] >= 1
