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


def test_an_eye_is_visible_only_when_half_of_its_rendered_lid_contour_shows():
    """A profile hides the far eye behind the head, a bowed head can put both under a fringe: their state
    is not in the pixels, so the labels say not visible (an eye-state model must not learn hair as an
    open eye); frontal eyes stay visible whether open or shut."""
    from dmsfactory.generators.procedural import ProceduralGenerator, example_plan_entry
    from dmsfactory.labelers.params import LabelStage, eye_visibility
    from dmsfactory.sample import run_stages

    shut = {"eye_openness_left": 0.0, "eye_openness_right": 0.0}
    cases = {"open": ({}, {"yaw": 0.0}, 7), "shut": (shut, {"yaw": 0.0}, 8),
             "left": ({}, {"yaw": 75.0}, 20), "right": ({}, {"yaw": -75.0}, 21),
             "fringe": ({}, {"pitch": -45.0}, 22)}  # identity 22 wears a fringe (seen in the render)
    entries = [example_plan_entry(key=name, index=k, identity_seed=ident, sample_seed=1, state=st, head_pose_car=hp)
               for k, (name, (st, hp, ident)) in enumerate(cases.items())]
    seen = {}
    for s in run_stages([LabelStage()], ProceduralGenerator().generate(entries)):
        ep = s.params["render"]["eye_points"]
        assert all(ep[side]["of"] == 16 and ep[side]["visible"] + ep[side]["covered"] <= 16 for side in ep)
        seen[s.key] = (s.labels["eyes"]["right"]["visible"], s.labels["eyes"]["left"]["visible"])
    assert (seen["open"], seen["shut"], seen["fringe"]) == ((True, True), (True, True), (False, False))
    assert seen["left"][1] is False and seen["right"] == (False, True)  # a turned head hides its far eye
    assert eye_visibility({}, "left") is None  # another backend: the label does not guess
    assert eye_visibility({"eye_points": {"left": {"of": 16, "visible": 8, "covered": 8}}}, "left") is True
    assert eye_visibility({"eye_points": {"left": {"of": 16, "visible": 7, "covered": 0}}}, "left") is False


def test_mouth_is_not_visible_behind_a_rendered_hand_or_a_mask():
    """A hand over a yawn and a mask hide the lips in the render; the labels say so (a mouth-crop model
    must not learn the hand as the yawn), while an uncovered yawn and a closed mouth stay visible."""
    from dmsfactory.generators.procedural import ProceduralGenerator, example_plan_entry
    from dmsfactory.labelers.params import LabelStage
    from dmsfactory.sample import run_stages

    cases = {"hand": ({"yawn": "yawning_with_hand", "mouth_open": 0.9}, "none", (-20.0, 15.0)),
             "yawn": ({"yawn": "yawning_without_hand", "mouth_open": 0.9}, "none", (-20.0, 15.0)),
             "closed": ({"yawn": "none", "mouth_open": 0.05}, "none", (-20.0, 15.0)),
             "mask": ({"yawn": "none", "mouth_open": 0.05}, "mask", (-20.0, 30.0)),
             # a turned head hides the far half of its own lips: that is not an occluder
             "profile": ({"yawn": "none", "mouth_open": 0.05}, "none", (-70.0, 65.0))}
    entries = [example_plan_entry(key=f"{name}-{j}", index=len(cases) * j + k, identity_seed=7 + k, sample_seed=j,
                                  state=state, accessory=acc, head_pose_car={"yaw": yaws[j]})
               for k, (name, (state, acc, yaws)) in enumerate(cases.items()) for j in (0, 1)]
    out = run_stages([LabelStage()], ProceduralGenerator().generate(entries))
    seen = {}
    for s in out:
        lp = s.params["render"]["lip_points"]
        assert lp["of"] == 40 and lp["visible"] + lp["covered"] <= 40
        seen.setdefault(s.key.split("-")[0], []).append(s.labels["mouth"]["visible"])
    assert seen == {"hand": [False, False], "yawn": [True, True], "closed": [True, True], "mask": [False, False],
                    "profile": [True, True]}
    # without the renderer's record (another backend) the label says nothing rather than guessing
    from dmsfactory.labelers.params import mouth_visibility

    assert mouth_visibility({}) == {}
    assert mouth_visibility({"lip_points": {"of": 40, "visible": 10, "covered": 10}}) == {"visible": False}
    assert mouth_visibility({"lip_points": {"of": 40, "visible": 0, "covered": 0}}) == {"visible": False}
