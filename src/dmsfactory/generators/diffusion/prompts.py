"""Prompts from plan entries: deterministic, template-driven, recorded per sample.

An identity's prompt part is its demographic words (sex, age, skin tone) plus *identity code words*
(hair, face shape, eyes, one extra trait) picked with a ``random.Random(identity_seed)``; the
condition part comes from the sample's class, state, gaze zone, action, accessory, lighting, camera
mount and head pose. The same plan entry always yields the same strings.
"""

from __future__ import annotations

import random
from typing import Any

from dmsfactory.generators.diffusion.templates import DEFAULT_TEMPLATES

_SALT_WORDS = 0x1D_C0DE


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(f"prompt template uses unknown placeholder {{{key}}}")


def _clean(text: str) -> str:
    """Drop empty comma-separated parts and extra spaces left by empty fragments."""
    parts = [" ".join(p.split()) for p in text.split(",")]
    return ", ".join(p for p in parts if p)


class PromptBuilder:
    def __init__(self, overrides: dict[str, str] | None = None, base_negative: str = ""):
        self.t = dict(DEFAULT_TEMPLATES)
        self.t.update(overrides or {})
        self.base_negative = base_negative

    def _frag(self, axis: str, value: Any, field: str) -> str:
        key = f"{axis}.{value}"
        if key not in self.t:
            raise ValueError(f"plan entry field {field!r} has value {value!r} with no prompt template {key!r}")
        return self.t[key]

    def identity_words(self, identity_seed: int, age_group: str | None = None) -> str:
        rng = random.Random(int(identity_seed) ^ _SALT_WORDS)
        words = []
        for part in ("hair", "face", "eyes", "extra"):
            options = self.t[f"identity.{part}"].split("|")
            if part == "hair" and age_group != "senior":
                options = [o for o in options if "grey" not in o] or options
            words.append(rng.choice(options))
        return ", ".join(w for w in words if w.strip())

    def identity_part(self, identity_seed: int, ip: dict[str, Any]) -> dict[str, str]:
        for f in ("sex", "age", "skin_tone"):
            if f not in ip:
                raise ValueError(f"plan entry identity_params is missing {f!r}")
        age_group = ip.get("age_group")
        return {
            "sex": self._frag("sex", ip["sex"], "identity_params.sex"),
            "age": str(int(ip["age"])),
            "skin": self._frag("skin_tone", int(ip["skin_tone"]), "identity_params.skin_tone"),
            "identity": self.identity_words(identity_seed, age_group),
        }

    def condition_part(self, e: dict[str, Any]) -> dict[str, str]:
        state = e.get("state") or {}
        hp = e.get("head_pose_car") or {}
        state_words = [self._frag("class", e["class"], "class")]
        state_words.append(self._frag("yawn", state.get("yawn", "none"), "state.yawn"))
        yaw, pitch = float(hp.get("yaw", 0.0)), float(hp.get("pitch", 0.0))
        if yaw > 20:
            state_words.append(self.t["head.yaw_left"])
        elif yaw < -20:
            state_words.append(self.t["head.yaw_right"])
        if pitch > 15:
            state_words.append(self.t["head.pitch_up"])
        elif pitch < -15:
            state_words.append(self.t["head.pitch_down"])
        cam = e.get("camera") or {}
        return {
            "view": self.t["view.default"],
            "state": ", ".join(state_words),
            "gaze": self._frag("gaze", e.get("gaze_zone", "front"), "gaze_zone"),
            "action": self._frag("action", e.get("action", "safe_drive"), "action"),
            "accessory": self._frag("accessory", e.get("accessory", "none"), "accessory"),
            "lighting": self._frag("lighting", e.get("lighting", "daylight"), "lighting"),
            "camera": self._frag("mount", cam.get("mount", "steering_column"), "camera.mount"),
        }

    def prompt(self, e: dict[str, Any], identity_seed: int, identity_params: dict[str, Any]) -> str:
        fields = _Blank(self.condition_part(e))
        fields.update(self.identity_part(identity_seed, identity_params))
        return _clean(self.t["prompt"].format_map(fields))

    def negative(self, e: dict[str, Any]) -> str:
        lighting = e.get("lighting", "daylight")
        fields = _Blank(
            base_negative=self.base_negative,
            lighting_negative=self._frag("lighting_negative", lighting, "lighting"),
        )
        return _clean(self.t["negative"].format_map(fields))

    def prompts_for(self, e: dict[str, Any]) -> dict[str, Any]:
        """``{"prompt": str, "negative_prompt": str, "mixup": None | {a, b, lam, prompt_a, prompt_b}}``.

        For a mixed identity the prompt of each parent identity (its demographics and code words, the
        sample's condition) is returned; the generator interpolates their embeddings with ``lam``.
        """
        ip = e.get("identity_params") or {}
        mix = ip.get("mixup")
        neg = self.negative(e)
        if not mix:
            if "identity_seed" not in e:
                raise ValueError(f"plan entry {e.get('key')!r} has no 'identity_seed'")
            return {"prompt": self.prompt(e, e["identity_seed"], ip), "negative_prompt": neg, "mixup": None}
        for f in ("a", "b", "a_seed", "b_seed", "a_params", "b_params", "lam"):
            if f not in mix:
                raise ValueError(f"plan entry {e.get('key')!r}: identity_params.mixup is missing {f!r}")
        lam = float(mix["lam"])
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"plan entry {e.get('key')!r}: identity_params.mixup.lam must be in [0, 1] (got {lam})")
        pa = self.prompt(e, mix["a_seed"], mix["a_params"])
        pb = self.prompt(e, mix["b_seed"], mix["b_params"])
        return {
            "prompt": pb if lam > 0.5 else pa,  # the dominant parent, as the planner does
            "negative_prompt": neg,
            "mixup": {"a": mix["a"], "b": mix["b"], "lam": lam, "prompt_a": pa, "prompt_b": pb},
        }
