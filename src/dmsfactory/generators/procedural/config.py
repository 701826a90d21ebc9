"""Configuration of the embedded procedural 3D head renderer (spec section ``procedural:``)."""

from pydantic import BaseModel, ConfigDict, Field


class ProceduralConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    supersample: int = Field(1, ge=1, le=4, description="render at N x size and downscale (anti-aliasing)")
    background: bool = Field(True, description="draw the cabin background, seat and shoulders")
