"""The default prompt template table (pure data; no imports).

A prompt is ``DEFAULT_TEMPLATES["prompt"]`` formatted with fragments looked up per plan-entry value
under ``"<axis>.<value>"`` keys. Any key can be overridden in the spec
(``diffusion.prompt_templates``); unknown keys are an error. Fragments may be empty strings.
Labels never come from these words: they are computed from the plan entry's parameters.
Keep prompts short: CLIP reads 77 tokens and truncates the rest (the generator records the token
count and whether a prompt was truncated).

Placeholders of ``prompt``: {view} {age} {sex} {skin} {identity} {state} {gaze} {action}
{accessory} {lighting} {camera}. Of ``negative``: {base_negative} (the config's ``negative_prompt``)
and {lighting_negative}.
"""

DEFAULT_TEMPLATES: dict[str, str] = {
    "prompt": (
        "{view} photo of a {age}-year-old {sex}, {skin}, {identity}, {accessory}, {lighting}, driving a car, "
        "{state}, {gaze}, {action}, {camera}"
    ),
    "negative": "{base_negative}{lighting_negative}",
    "view.default": "in-car camera",
    # demographics
    "sex.female": "woman",
    "sex.male": "man",
    "age_group.young": "young",
    "age_group.adult": "adult",
    "age_group.middle_aged": "middle-aged",
    "age_group.senior": "elderly",
    "skin_tone.1": "very fair skin",
    "skin_tone.2": "fair skin",
    "skin_tone.3": "light olive skin",
    "skin_tone.4": "olive skin",
    "skin_tone.5": "brown skin",
    "skin_tone.6": "dark brown skin",
    # driver state by class (appearance words only; labels come from parameters)
    "class.alert": "alert and attentive, eyes open",
    "class.mild_fatigue": "slightly tired, heavy eyelids",
    "class.moderate_fatigue": "drowsy, eyes half closed",
    "class.severe_fatigue": "very drowsy, eyes closed",
    "class.distracted": "distracted",
    "class.phone": "",
    "yawn.none": "",
    "yawn.yawning_without_hand": "yawning with mouth wide open",
    "yawn.yawning_with_hand": "yawning, hand over mouth",
    # gaze zones (DMD set)
    "gaze.left_mirror": "looking at the left side mirror",
    "gaze.left": "looking out of the left window",
    "gaze.front": "eyes on the road",
    "gaze.center_mirror": "looking at the rear-view mirror",
    "gaze.front_right": "looking ahead to the right",
    "gaze.right_mirror": "looking at the right side mirror",
    "gaze.right": "looking out of the right window",
    "gaze.infotainment": "looking down at the infotainment screen",
    "gaze.steering_wheel": "looking down at the steering wheel",
    # actions
    "action.safe_drive": "hands on the wheel",
    "action.phone_call_left": "holding a phone to the ear with the left hand",
    "action.phone_call_right": "holding a phone to the ear with the right hand",
    "action.texting_left": "texting on a phone held in the left hand",
    "action.texting_right": "texting on a phone held in the right hand",
    # accessories
    "accessory.none": "",
    "accessory.glasses": "wearing clear eyeglasses",
    "accessory.sunglasses": "wearing dark sunglasses",
    "accessory.mask": "wearing a surgical face mask",
    "accessory.cap": "wearing a baseball cap",
    # lighting (night_ir: near-infrared monochrome camera)
    "lighting.daylight": "daylight",
    "lighting.night_ir": "night, near-infrared monochrome image",
    "lighting.night_cabin": "at night in a dark car, face lit by the dashboard screen's glow, grainy",
    "lighting.tunnel": "dim orange tunnel lighting",
    "lighting.backlight": "backlit, face in shadow",
    "lighting_negative.daylight": "",
    "lighting_negative.night_ir": ", color, colorful, daylight",
    "lighting_negative.night_cabin": ", bright daylight, overexposed",
    "lighting_negative.tunnel": "",
    "lighting_negative.backlight": "",
    # camera viewpoint
    "mount.steering_column": "frontal view from below",
    "mount.rearview_mirror": "view from above and to the side",
    "mount.a_pillar": "three-quarter side view",
    "mount.center_stack": "low side view",
    # head pose words (thresholds in degrees: |yaw| > 20, |pitch| > 15)
    "head.yaw_left": "head turned to the left",
    "head.yaw_right": "head turned to the right",
    "head.pitch_up": "head tilted up",
    "head.pitch_down": "head tilted down",
    # identity code words: one of each list is picked from the identity seed
    "identity.hair": "short straight black hair|short wavy brown hair|long straight blonde hair|"
    "curly dark hair|shoulder-length auburn hair|buzz cut|long braided hair|grey hair|bald head|"
    "tied-back brown hair",
    "identity.face": "oval face|round face|square jaw|long face|heart-shaped face|high cheekbones",
    "identity.eyes": "brown eyes|dark brown eyes|hazel eyes|green eyes|blue eyes|grey eyes",
    "identity.extra": "|freckles|light stubble|a small mole on the cheek|thick eyebrows|thin eyebrows|dimples",
}
