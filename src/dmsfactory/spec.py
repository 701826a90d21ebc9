"""The dataset spec: what a run makes.

A spec is YAML (read with ``yaml.safe_load``) validated by pydantic v2 models with
``extra="forbid"`` everywhere, so a typo is an error, never a silently ignored key.
:func:`load_spec` turns every validation problem into one line naming the field path,
what was wrong and the allowed values; the CLI prints those lines and exits 2.

Stage-specific sections (``verify``, ``augment``, ``privacy``, ``diffusion``, ``train``,
``clips``) are defined next to their stage, in ``<package>/config.py`` modules that import
only pydantic, so a stage stays usable without the rest of the factory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Annotated, Any, Callable, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dmsfactory.augment.config import AugmentConfig
from dmsfactory.clips.config import ClipsConfig, CoverageConfig
from dmsfactory.conditions import ACCESSORIES, CAMERA_MOUNTS, LIGHTING
from dmsfactory.errors import ErrorPolicy, UserError
from dmsfactory.generators.diffusion.config import DiffusionConfig
from dmsfactory.generators.procedural.config import ProceduralConfig
from dmsfactory.labelers.config import VerifyConfig
from dmsfactory.privacy.config import PrivacyConfig
from dmsfactory.taxonomy import AGE_GROUPS, AGE_RANGES, CLASSES, SEXES, SKIN_TONES  # noqa: F401  (re-exported)
from dmsfactory.training.config import TrainConfig

# --- value sets (label schema anchors: Euro NCAP DSM protocols and the DMD taxonomy) ---
BACKENDS = ("procedural", "diffusion")
SPLITS = ("train", "val", "test")

ClassName = Literal["alert", "mild_fatigue", "moderate_fatigue", "severe_fatigue", "distracted", "phone"]
Lighting = Literal[LIGHTING]
Accessory = Literal[ACCESSORIES]
AgeGroup = Literal["young", "adult", "middle_aged", "senior"]
Sex = Literal["female", "male"]
Mount = Literal[CAMERA_MOUNTS]
SkinTone = Literal[1, 2, 3, 4, 5, 6]
PosWeight = Annotated[float, Field(ge=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_weights(v: dict, what: str) -> dict:
    if not v:
        raise ValueError(f"at least one {what} with a weight > 0 is required")
    if sum(v.values()) <= 0:
        raise ValueError(f"{what} weights must not all be 0")
    return v


class Range(_Strict):
    """A closed interval [min, max] sampled uniformly (degrees for angles)."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not self.min <= self.max:
            raise ValueError(f"min ({self.min}) must be <= max ({self.max})")
        return self


class HeadPose(_Strict):
    """Head rotation of the driver relative to looking straight down the road, degrees."""

    yaw: Range = Range(min=-30, max=30)
    pitch: Range = Range(min=-15, max=15)
    roll: Range = Range(min=-10, max=10)

    @model_validator(mode="after")
    def _limits(self) -> "HeadPose":
        for name, lim in (("yaw", 75), ("pitch", 45), ("roll", 45)):
            r = getattr(self, name)
            if r.min < -lim or r.max > lim:
                raise ValueError(f"{name} range must lie within [-{lim}, {lim}] degrees")
        return self


class Gaze(_Strict):
    """Eye-in-head rotation for attentive classes, degrees (distracted gaze comes from gaze zones)."""

    yaw: Range = Range(min=-10, max=10)
    pitch: Range = Range(min=-8, max=8)


class Camera(_Strict):
    mount: dict[Mount, PosWeight] = {"steering_column": 1.0}
    fov_deg: float = Field(38.0, gt=10, lt=120, description="horizontal field of view (38: docs/renderer.md)")
    distance_m: Range = Range(min=0.55, max=0.75)

    _w = field_validator("mount")(lambda v: _check_weights(v, "camera mount"))


class Conditions(_Strict):
    lighting: dict[Lighting, PosWeight] = {"daylight": 1.0}
    accessory: dict[Accessory, PosWeight] = {"none": 1.0}
    age_group: dict[AgeGroup, PosWeight] = {"young": 1, "adult": 1, "middle_aged": 1, "senior": 1}
    skin_tone: dict[SkinTone, PosWeight] = {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1}
    sex: dict[Sex, PosWeight] = {"female": 1, "male": 1}
    head_pose: HeadPose = HeadPose()
    gaze: Gaze = Gaze()
    camera: Camera = Camera()
    talking: float = Field(
        0.0, ge=0, le=1,
        description="share of the non-yawning images whose mouth is open as in speech (mouth_open "
        "0.12-0.55, a smaller jaw drop than a yawn): hard negatives for yawn detectors",
    )

    @field_validator("skin_tone", mode="before")
    @classmethod
    def _tone_keys(cls, v):  # JSON round trips turn int keys into strings
        if isinstance(v, dict):
            return {int(k) if isinstance(k, str) and k.strip().isdigit() else k: w for k, w in v.items()}
        return v

    @field_validator("lighting", "accessory", "age_group", "skin_tone", "sex")
    @classmethod
    def _weights(cls, v: dict, info) -> dict:
        return _check_weights(v, info.field_name)


class Identities(_Strict):
    count: int = Field(gt=0, description="width: number of distinct synthetic identities")
    images_per_identity: int = Field(gt=0, description="depth: images per identity")
    mixup_fraction: float = Field(
        0.0, ge=0, le=1, description="share of identities made by mixing two base identities (SynFace)"
    )


class ImageCfg(_Strict):
    size: int = Field(256, ge=64, le=2048)
    format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(95, ge=50, le=100)


class Shards(_Strict):
    size: int = Field(
        200, gt=0,
        description="images per shard at most (renders + their augmented views; accepted and quarantined "
        "together): a generation batch is size // images-per-render renders (docs/spec.md)",
    )
    max_bytes: int = Field(1 << 30, gt=0, description="a shard larger than this is an error")


class Splits(_Strict):
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self) -> "Splits":
        s = self.train + self.val + self.test
        if abs(s - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1 (got {s:g})")
        return self


class Output(_Strict):
    dir: str = "out/dataset"
    # the licence you release the dataset under (an SPDX id, e.g. CC-BY-4.0): written to the card's
    # YAML header and croissant.json; unset, they say "other" (not part of the spec hash)
    license: str | None = Field(None, pattern=r"^[A-Za-z0-9.+-]+$")


class RunCfg(_Strict):
    """How the flow executes (not part of the spec hash: it does not change samples)."""

    cluster: str | None = Field(None, description="address of an existing Dask scheduler")
    retries: int = Field(2, ge=0)
    workers: int | None = Field(None, ge=1, description="worker processes, one batch each (None: every core)")
    torch_threads: int = Field(1, ge=1)
    on_error: ErrorPolicy = Field(
        "quarantine", description="a sample a stage cannot handle: quarantine it with the reason, or raise (fail the batch)"
    )


# (section, field) -> the value that leaves samples as they were before the field existed.
# privacy.descriptor_backend "auto" runs dlib's network in torch: descriptors move by float noise
# (< 2e-6 L2, docs/privacy.md), so datasets made before it keep their keys and resume.
# privacy.identity_view_hog: "always" is how identity views were described before the field; its default
# "fallback" moves some views' descriptors (and so verdicts), so a default spec's keys changed with it.
HASH_NEUTRAL_DEFAULTS: dict[tuple[str, str], Any] = {
    ("conditions", "talking"): 0.0, ("privacy", "descriptor_backend"): "auto", ("privacy", "identity_view_hog"): "always",
}


class DatasetSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = Field(ge=0, lt=2**32)
    backend: Literal["procedural", "diffusion"] = "procedural"
    classes: dict[ClassName, PosWeight]
    conditions: Conditions = Conditions()
    identities: Identities
    image: ImageCfg = ImageCfg()
    shards: Shards = Shards()
    splits: Splits = Splits()
    output: Output = Output()
    procedural: ProceduralConfig = ProceduralConfig()
    diffusion: DiffusionConfig | None = None
    verify: VerifyConfig = VerifyConfig()
    augment: AugmentConfig = AugmentConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    train: TrainConfig | None = None
    clips: ClipsConfig | None = None
    coverage: CoverageConfig = CoverageConfig()
    run: RunCfg = RunCfg()

    _w = field_validator("classes")(lambda v: _check_weights(v, "class"))

    @model_validator(mode="after")
    def _backend_section(self) -> "DatasetSpec":
        if self.backend == "diffusion" and self.diffusion is None:
            raise ValueError("backend 'diffusion' needs a 'diffusion:' section (at least 'model:')")
        return self

    @property
    def total_samples(self) -> int:
        """Planned renders (identities x images_per_identity); augmented views add images on top."""
        return self.identities.count * self.identities.images_per_identity

    def content_hash(self) -> str:
        """sha256 of everything that shapes samples (output location and run options excluded).

        Fields added after datasets were made with this hash (:data:`HASH_NEUTRAL_DEFAULTS`) are left
        out while they hold their neutral default, so those datasets keep their keys and resume."""
        data = self.model_dump(mode="json", exclude={"output", "run", "train"})
        for (section, name), neutral in HASH_NEUTRAL_DEFAULTS.items():
            if data.get(section, {}).get(name, neutral) == neutral:
                data.get(section, {}).pop(name, None)
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


T = TypeVar("T")


class PerSpecCache(Generic[T]):
    """``build(spec)``, once per process and spec content (the last ``size`` specs kept), thread-safe:
    for derived objects that are pure functions of a spec (the plan index, the audit sample)."""

    def __init__(self, build: Callable[[DatasetSpec], T], size: int = 4):
        self.build, self.size = build, size
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def __call__(self, spec: DatasetSpec) -> T:
        h = spec.content_hash()
        with self._lock:
            item = self._items.get(h)
            if item is None:
                if len(self._items) >= self.size:
                    self._items.pop(next(iter(self._items)))
                item = self._items[h] = self.build(spec)
            return item

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class SpecError(UserError):
    """A spec failed to load or validate; ``problems`` holds one human-readable line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    @property
    def lines(self) -> list[str]:
        return [f"{self.source}: {p}" for p in self.problems]


def _allowed_values(loc: tuple, model: type[BaseModel] = DatasetSpec) -> str | None:
    """Allowed values for a Literal/enum field at ``loc`` (best effort, for error messages)."""
    import typing

    ann: Any = model
    for part in loc:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            f = ann.model_fields.get(str(part))
            if f is None:
                return ", ".join(ann.model_fields)
            ann = f.annotation
        else:
            origin = typing.get_origin(ann)
            args = typing.get_args(ann)
            if origin is typing.Union or str(origin) == "types.UnionType":
                ann = next((a for a in args if a is not type(None)), ann)
                origin, args = typing.get_origin(ann), typing.get_args(ann)
            if origin is dict:
                ann = args[1] if part not in ("[key]",) else args[0]
            else:
                return None
    origin = typing.get_origin(ann)
    if origin is typing.Union or str(origin) == "types.UnionType":
        ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
        origin = typing.get_origin(ann)
    if origin is Literal:
        return ", ".join(str(a) for a in typing.get_args(ann))
    if origin is dict:
        k = typing.get_args(ann)[0]
        if typing.get_origin(k) is Literal:
            return ", ".join(str(a) for a in typing.get_args(k))
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ", ".join(ann.model_fields)
    return None


def format_validation_error(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # pydantic reports a bad dict key as (..., key, '[key]')
        path_parts = [str(p) for p in loc if p != "[key]"]
        path = ".".join(path_parts) or "(top level)"
        typ = e["type"]
        msg = e["msg"]
        if typ == "extra_forbidden":
            allowed = _allowed_values(loc[:-1])
            msg = "unknown key" + (f"; allowed keys: {allowed}" if allowed else "")
        elif typ in ("literal_error", "enum"):
            if "[key]" in loc:  # a bad dict key: the allowed values are the dict's key type
                allowed = _allowed_values(loc[: loc.index("[key]") - 1])
            else:
                allowed = _allowed_values(loc)
            bad = e.get("input")
            msg = f"{bad!r} is not allowed" + (f"; allowed values: {allowed}" if allowed else "")
        elif typ == "missing":
            msg = "required field is missing"
        else:
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            if "input" in e and not isinstance(e["input"], dict | list):
                msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{path}: {msg}")
    return lines


def parse_spec(data: Any, source: str = "<spec>") -> DatasetSpec:
    if not isinstance(data, dict):
        raise SpecError(source, [f"(top level): expected a mapping of spec fields, got {type(data).__name__}"])
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, format_validation_error(e)) from None


def load_spec(path: str | Path) -> DatasetSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(p), [f"spec file not found: {p} (pass the path of a YAML spec, e.g. specs/demo.yaml)"])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(str(p), [f"(file): not valid YAML{where}: {getattr(e, 'problem', e)}"]) from None
    return parse_spec(data, str(p))
