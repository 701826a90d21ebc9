"""Embedded procedural generator: a textured 3D head in MediaPipe's face-mesh topology.

See docs/renderer.md. Public interface::

    from dmsfactory.generators.procedural import ProceduralGenerator, render, RenderResult
"""

from .config import ProceduralConfig
from .render import PlanEntryError, RenderResult, render, validate
from .generator import ProceduralGenerator, conditioning_map, depth_map, example_plan_entry
from .topology import IBUG68_FROM_MEDIAPIPE

__all__ = ["ProceduralConfig", "ProceduralGenerator", "RenderResult", "render", "validate", "PlanEntryError",
           "conditioning_map", "depth_map", "example_plan_entry", "IBUG68_FROM_MEDIAPIPE"]
