"""Label verification from pixels: wrong labels are caught and the policy acts on them."""

from __future__ import annotations

import numpy as np
import pytest

from dmsfactory.labelers.config import VerifyConfig
from dmsfactory.labelers.verify import VerifyStage, agreement_report
from dmsfactory.spec import SpecError, parse_spec

procedural = pytest.importorskip("dmsfactory.generators.procedural")
from dmsfactory.labelers.params import make_labels  # noqa: E402


@pytest.fixture(scope="module")
def stage():
    st = VerifyStage(VerifyConfig(enabled=True))
    st.setup()
    yield st
    st.close()


@pytest.fixture(scope="module")
def renders():
    gen = procedural.ProceduralGenerator()
    gen.setup()
    entries = [
        procedural.example_plan_entry(key="t-0000000", index=0),  # eyes fully open, frontal
        procedural.example_plan_entry(key="t-0000001", index=1,
                                      state={"eye_openness_left": 0.0, "eye_openness_right": 0.0}),
        procedural.example_plan_entry(key="t-0000002", index=2, accessory="sunglasses"),
    ]
    out = gen.generate(entries)
    for s in out:
        assert not s.quarantined, s.verdicts
        s.labels = make_labels(s.params)
    return out


def _verdicts(s, check):
    return [v for v in s.verdicts if v["stage"] == "verify" and v["check"] == check]


def test_render_with_true_labels_agrees(stage, renders):
    s = renders[0].copy()
    stage.process([s])
    assert {v["verdict"] for v in _verdicts(s, "face")} == {"agree"}
    assert [v["verdict"] for v in _verdicts(s, "eyes")] == ["agree", "agree"]
    assert not s.quarantined


def test_open_eye_render_labelled_closed_is_caught_and_quarantined(renders):
    s = renders[0].copy()
    for side in ("left", "right"):
        s.labels["eyes"][side].update(state="close", openness=0.05)
    st = VerifyStage(VerifyConfig(enabled=True, policy={"eyes": "quarantine"}))
    st.process([s])
    vs = _verdicts(s, "eyes")
    assert [v["verdict"] for v in vs if v["verdict"] in ("agree", "disagree")] == ["disagree", "disagree"]
    assert all(v["scores"]["ear"] >= st.config.ear_closed for v in vs)
    assert s.quarantined and any("eyes" in r for r in s.quarantine_reasons)


def test_relabel_policy_records_both_values(renders):
    s = renders[0].copy()
    s.labels["eyes"]["left"].update(state="close", openness=0.05)
    VerifyStage(VerifyConfig(enabled=True, policy={"eyes": "relabel"})).process([s])
    assert not s.quarantined
    assert s.labels["eyes"]["left"]["state"] == "open"
    assert s.labels["relabelled"]["eyes.left.state"]["from"] == "close"
    assert s.labels["relabelled"]["eyes.left.state"]["to"] == "open"
    assert s.labels["eyes"]["right"]["state"] == "open" and "eyes.right.state" not in s.labels["relabelled"]
    assert any(v["verdict"] == "relabel" for v in _verdicts(s, "eyes"))


def test_closed_eye_render_measures_lower_ear_than_open(stage, renders):
    m_open = stage.measure(renders[0].image, 50)
    m_closed = stage.measure(renders[1].image, 50)
    assert m_open["face"] and m_closed["face"]
    for side in ("left", "right"):
        assert m_closed["ear"][side] < m_open["ear"][side]


def test_sunglasses_make_eyes_undetectable_not_disagree(stage, renders):
    s = renders[2].copy()
    s.labels["eyes"]["left"].update(state="close", openness=0.0)  # would be a disagreement if measured
    stage.process([s])
    assert {v["verdict"] for v in _verdicts(s, "eyes")} == {"undetectable"}
    assert {v["verdict"] for v in _verdicts(s, "gaze")} == {"undetectable"}
    assert "sunglasses" in _verdicts(s, "eyes")[0]["reason"]


def test_no_face_is_quarantined_and_other_checks_undetectable(stage, renders):
    s = renders[0].copy()
    s.image = np.full_like(s.image, 128)
    stage.process([s])
    assert _verdicts(s, "face")[0]["verdict"] == "disagree" and s.quarantined
    assert {v["verdict"] for v in _verdicts(s, "eyes")} == {"undetectable"}


def test_real_photo_wiring(stage):
    from skimage import data
    import cv2

    img = cv2.resize(data.astronaut()[0:260, 120:330], (256, 256), interpolation=cv2.INTER_AREA)
    m = stage.measure(img, None)
    assert m["face"] and m["landmarks"].shape == (478, 2)
    assert 0.15 < m["ear"]["left"] < 0.5 and abs(m["head_pose"]["yaw"]) < 25


def test_agreement_report_by_condition(stage, renders):
    a, b, c = (r.copy() for r in renders)
    b.labels["eyes"]["left"].update(state="open", openness=1.0)  # wrong: the render is closed
    stage.process([a, b, c])
    sec = stage.finalize(None, [x.to_json() for x in (a, b, c)])
    assert sec.json_name == "verify_report.json"
    eyes = sec.data["by_check"]["eyes"]
    assert eyes["undetectable"] == 2  # sunglasses, both eyes
    assert eyes["disagree"] >= 1
    assert "eyes / daylight / sunglasses" in sec.data["by_check_lighting_accessory"]
    assert "| eyes |" in sec.markdown
    assert agreement_report([]).data["samples_verified"] == 0


def test_determinism(renders):
    s1, s2 = renders[0].copy(), renders[0].copy()
    VerifyStage(VerifyConfig(enabled=True)).process([s1])
    VerifyStage(VerifyConfig(enabled=True)).process([s2])
    assert s1.verdicts == s2.verdicts


@pytest.mark.parametrize("bad,field", [
    ({"policy": {"face": "relabel"}}, "verify"),
    ({"policy": {"eyes": "delete"}}, "verify.policy.eyes"),
    ({"checks": ["eyes", "nose"]}, "verify.checks"),
    ({"ear_closed": 2}, "verify.ear_closed"),
    ({"threshold": 1}, "verify.threshold"),
])
def test_bad_config_names_the_field(bad, field):
    spec = {"name": "t", "seed": 1, "classes": {"alert": 1}, "identities": {"count": 2, "images_per_identity": 1},
            "verify": bad}
    with pytest.raises(SpecError) as ei:
        parse_spec(spec)
    assert any(p.startswith(field) for p in ei.value.problems), ei.value.problems
