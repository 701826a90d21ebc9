"""Generators: plan entries -> FaceSamples (docs/CONTRACT.md).

``get_generator(spec)`` picks the backend named in the spec; heavy imports (diffusers) happen only
when that backend is used."""

from __future__ import annotations

from typing import Any, Protocol

from dmsfactory.sample import FaceSample


class Generator(Protocol):
    name: str

    def setup(self) -> None: ...

    def generate(self, plan: list[dict[str, Any]]) -> list[FaceSample]: ...


def get_generator(spec) -> Generator:
    if spec.backend == "procedural":
        from dmsfactory.generators.procedural import ProceduralGenerator

        return ProceduralGenerator(spec.procedural, on_error=spec.run.on_error)
    if spec.backend == "diffusion":
        from dmsfactory.generators.diffusion import DiffusionGenerator

        return DiffusionGenerator(spec.diffusion, image_size=spec.image.size, procedural_config=spec.procedural,
                                  on_error=spec.run.on_error)
    raise ValueError(f"backend: unknown backend {spec.backend!r}; allowed: procedural, diffusion")
