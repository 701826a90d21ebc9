"""Generators: plan entries -> FaceSamples (docs/CONTRACT.md).

``get_generator(spec)`` picks the backend named in the spec; heavy imports (diffusers) happen only
when that backend is used."""

from __future__ import annotations

from typing import Any, Protocol

from dmsfactory.sample import FaceSample


# What the factory may assume about a backend's output (docs/verify.md, docs/privacy.md):
# exact_labels: labels are exact by construction (pixel verification then measures realism and runs as
#   an audit by default); identity_is_parameter: every image of an identity shows that identity (the
#   privacy gate then judges the identity on a few views, not every image). Diffusion does neither:
#   its labels come from prompts the model may ignore, and its identity can drift from image to image.
TRAITS: dict[str, dict[str, bool]] = {
    "procedural": {"exact_labels": True, "identity_is_parameter": True},
    "diffusion": {"exact_labels": False, "identity_is_parameter": False},
}


def backend_traits(backend: str) -> dict[str, bool]:
    if backend not in TRAITS:
        raise ValueError(f"backend: unknown backend {backend!r}; allowed: {', '.join(TRAITS)}")
    return TRAITS[backend]


class Generator(Protocol):
    name: str

    def setup(self) -> None: ...

    def generate(self, plan: list[dict[str, Any]]) -> list[FaceSample]: ...


def get_generator(spec) -> Generator:
    if spec.backend == "procedural":
        # not at the top: this __init__ runs before every ``dmsfactory.generators.*`` module (the spec's
        # config models among them), and the renderer (scipy, cv2) should load only when it is chosen
        from dmsfactory.generators.procedural import ProceduralGenerator  # see the comment above

        return ProceduralGenerator(spec.procedural, on_error=spec.run.on_error)
    if spec.backend == "diffusion":
        from dmsfactory.generators.diffusion import DiffusionGenerator  # heavy: torch, diffusers

        return DiffusionGenerator(spec.diffusion, image_size=spec.image.size, procedural_config=spec.procedural,
                                  on_error=spec.run.on_error)
    raise ValueError(f"backend: unknown backend {spec.backend!r}; allowed: procedural, diffusion")
