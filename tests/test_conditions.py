"""The shared condition lists (dmsfactory.conditions) and every stage that must know each value."""

import typing

import numpy as np
import pytest

from dmsfactory import conditions as C
from dmsfactory.generators.diffusion.templates import DEFAULT_TEMPLATES
from dmsfactory.generators.procedural import example_plan_entry
from dmsfactory.generators.procedural.render import MOUNTS, light_setup
from dmsfactory.labelers.config import Condition


def test_every_lighting_mode_has_an_illuminance_range_a_light_setup_and_prompt_text():
    assert set(C.LUX) == set(C.LIGHTING)
    for mode in C.LIGHTING:
        lo, hi = C.LUX[mode]
        assert 0 < lo < hi, mode
        entry = example_plan_entry(lighting=mode)
        assert light_setup(entry, np.random.default_rng(0))["mode"] == mode
        assert f"lighting.{mode}" in DEFAULT_TEMPLATES and f"lighting_negative.{mode}" in DEFAULT_TEMPLATES


def test_a_lighting_mode_without_a_light_setup_is_an_error_not_another_mode():
    entry = example_plan_entry()
    entry["lighting"] = "moonlight"
    with pytest.raises(ValueError, match="moonlight.*no light setup"):
        light_setup(entry, np.random.default_rng(0))


def test_accessories_mounts_and_verify_conditions_follow_the_shared_lists():
    assert all(f"accessory.{a}" in DEFAULT_TEMPLATES for a in C.ACCESSORIES)
    assert tuple(MOUNTS) == C.CAMERA_MOUNTS
    assert set(typing.get_args(Condition)) == set(C.ACCESSORIES) | set(C.LIGHTING)
