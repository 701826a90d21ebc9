import json

from dmsfactory.labelers.params import SCHEMA_VERSION, eye_state, hands_on_wheel, make_labels
from dmsfactory.plan import make_plan
from dmsfactory.spec import parse_spec


def test_labels_are_a_pure_function_of_params(tiny_spec_dict):
    plan = make_plan(parse_spec(tiny_spec_dict))
    for e in plan:
        a = make_labels(e)
        b = make_labels(json.loads(json.dumps(e)))
        assert a == b
        assert a["schema_version"] == SCHEMA_VERSION
        assert a["class"] == e["class"]
        assert a["eyes"]["left"]["openness"] == e["state"]["eye_openness_left"]
        assert a["drowsy"] == (e["kss"] >= 7)
        assert a["identity"]["id"] == e["identity"]
        json.dumps(a)  # serialisable


def test_eye_state_threshold_is_p80():
    assert eye_state(0.2) == "close" and eye_state(0.21) == "open" and eye_state(0.0) == "close"


def test_hands_on_wheel():
    assert hands_on_wheel("safe_drive", "none") == "both"
    assert hands_on_wheel("phone_call_left", "none") == "only_right"
    assert hands_on_wheel("texting_right", "none") == "only_left"
    assert hands_on_wheel("safe_drive", "yawning_with_hand") == "only_right"
    assert hands_on_wheel("phone_call_right", "yawning_with_hand") == "none"


def test_mixup_soft_identity_label(tiny_spec_dict):
    tiny_spec_dict["identities"] = {"count": 30, "images_per_identity": 1, "mixup_fraction": 0.2}
    plan = make_plan(parse_spec(tiny_spec_dict))
    mixed = [e for e in plan if e["identity_params"]["mixup"]]
    assert mixed
    lab = make_labels(mixed[0])["identity"]["mixup"]
    lam = mixed[0]["identity_params"]["mixup"]["lam"]
    assert abs(sum(lab["soft"].values()) - 1) < 1e-9 and lab["soft"][lab["b"]] == lam


def test_sunglasses_hide_eyes_in_rgb(tiny_spec_dict):
    e = make_plan(parse_spec(tiny_spec_dict))[0]
    e = dict(e, accessory="sunglasses", lighting="daylight")
    assert make_labels(e)["eyes"]["left"]["visible"] is False
    e = dict(e, accessory="none")
    assert make_labels(e)["eyes"]["left"]["visible"] is True
