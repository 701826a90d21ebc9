"""Condition values every stage shares: the one place to add a lighting mode, accessory or camera mount.

Plain tuples and a table, no imports, so the spec (pydantic), the planner, the renderers and the
label verifier all read the same lists without pulling each other in. A new lighting mode also
needs its light setup in the procedural renderer (``render.light_setup``) and its prompt text in
the diffusion templates; ``tests/test_conditions.py`` checks those stay in step.
"""

LIGHTING = ("daylight", "night_ir", "night_cabin", "tunnel", "backlight")
ACCESSORIES = ("none", "glasses", "sunglasses", "mask", "cap")
CAMERA_MOUNTS = ("steering_column", "rearview_mirror", "a_pillar", "center_stack")

# illuminance at the face (lux, low/high) the planner draws per lighting mode: the label's ``lux``
LUX = {
    "daylight": (2_000, 100_000),
    "tunnel": (10, 300),
    "night_ir": (0.1, 10),  # visible light only; the camera sees its own NIR illuminator
    "night_cabin": (1, 30),
    "backlight": (20_000, 100_000),
}
