"""`FaceSample`, the one record that flows through every stage, and the stage contract.

Geometry lives in arrays (``landmarks``, ``visibility``, ``bbox``, ``arrays``) and is the single
source of truth: a stage that moves pixels (augmentation) moves these too, and the JSON written to a
shard is built from them by :meth:`FaceSample.to_json`, so labels can never go stale.

Landmark layout (``landmarks`` is ``(478, 2)`` float32 pixel coordinates in the final image,
``visibility`` ``(478,)`` bool): MediaPipe face mesh's *refined* index order, i.e. the 468 mesh
vertices followed by two irises of five points each. 468 is the centre of the subject's right iris
(the eye with corners 33/133), 469-472 its ring; 473 the centre of the subject's left iris (eye
corners 263/362), 474-477 its ring. The 68-point iBUG subset is a documented index map into these
(:data:`dmsfactory.landmarks.IBUG68_FROM_MEDIAPIPE`, read through
:func:`dmsfactory.labelers.params.ibug68_index_map`).

The stage contract: a stage takes a list of samples and returns a list of samples. It never drops a
sample: a rejected one is marked with :meth:`FaceSample.quarantine` (stage, reason, scores) and is
written to the quarantine shard set. :func:`run_stages` hands each stage only the samples that are
still accepted and keeps the quarantined ones in the batch; a stage with ``sees_quarantined = True``
(the privacy gate, which must redact a leaked face wherever it is written) gets the whole batch and
must leave an earlier stage's verdicts alone.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from dmsfactory.errors import UserError
from dmsfactory.landmarks import LEFT_IRIS_CENTER, N_LANDMARKS, RIGHT_IRIS_CENTER  # noqa: F401  (re-exported)


def is_quarantined(record: "Verdicts | Mapping[str, Any]", check: str | None = None) -> bool:
    """True when ``record`` carries a quarantine verdict (of ``check``, if given).

    ``record``: a :class:`FaceSample` / clip sample, or the JSON document of one as read from a shard.
    The one place that decides what "quarantined" means; every report, reader and stage asks here."""
    verdicts = record.verdicts if isinstance(record, Verdicts) else (record.get("verdicts") or [])
    return any(v.get("verdict") == "quarantine" and (check is None or v.get("check") == check) for v in verdicts)


class Verdicts:
    """Quarantine bookkeeping shared by every record that carries ``verdicts`` (images and clips)."""

    verdicts: list[dict[str, Any]]

    @property
    def quarantined(self) -> bool:
        return is_quarantined(self)

    @property
    def quarantine_reasons(self) -> list[str]:
        return [f"{v['stage']}: {v.get('reason', '')}" for v in self.verdicts if v.get("verdict") == "quarantine"]

    def add_verdict(self, stage: str, check: str, verdict: str, reason: str = "", **scores: Any) -> None:
        """Record a check's outcome. ``verdict``: agree, disagree, undetectable, keep, relabel, quarantine."""
        self.verdicts.append({"stage": stage, "check": check, "verdict": verdict, "reason": reason, "scores": scores})

    def quarantine(self, stage: str, reason: str, check: str = "", **scores: Any) -> None:
        self.add_verdict(stage, check or stage, "quarantine", reason, **scores)


@dataclass
class FaceSample(Verdicts):
    key: str  # stable: derived from the spec hash and the plan index; webdataset __key__
    index: int  # position in the plan
    params: dict[str, Any]  # every parameter that shaped the sample (JSON-serialisable)
    image: np.ndarray | None = None  # uint8 HxWx3 RGB
    labels: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable, non-geometric + pose/gaze
    landmarks: np.ndarray | None = None  # (478, 2) float32, pixels in `image`
    visibility: np.ndarray | None = None  # (478,) bool
    bbox: tuple[float, float, float, float] | None = None  # face box x0, y0, x1, y1 in pixels
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # extra geometry, e.g. landmarks_3d
    aug: list[dict[str, Any]] = field(default_factory=list)  # applied transforms + sampled params
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # each check: stage, check, verdict, reason, scores
    split: str | None = None
    identity: str | None = None
    source_key: str | None = None  # for augmented views: the key of the sample they came from
    # the encoded image bytes, cached by whoever encoded ``image`` first (the privacy gate judges them,
    # the shard writer writes them: datasets.shards.encode_sample); never serialised, and void as soon
    # as ``image`` is replaced
    encoded: Any = field(default=None, repr=False, compare=False)

    def copy(self) -> "FaceSample":
        return copy.deepcopy(self)

    # --- serialisation ---
    @property
    def written_bbox(self) -> tuple[float, float, float, float] | None:
        """The face box as the sample's JSON stores it (3 decimals): what a later reader of the shards
        (``dmsfactory leakcheck``) gets, so checks that depend on it judge the same box in both places."""
        return None if self.bbox is None else tuple(round(float(v), 3) for v in self.bbox)

    def to_json(self) -> dict[str, Any]:
        """The JSON document stored next to the image in a shard."""
        doc: dict[str, Any] = {
            "key": self.key,
            "index": self.index,
            "split": self.split,
            "identity": self.identity,
            "source_key": self.source_key,
            "labels": self.labels,
            "params": self.params,
            "aug": self.aug,
            "verdicts": self.verdicts,
        }
        if self.landmarks is not None:
            vis = self.visibility if self.visibility is not None else np.ones(len(self.landmarks), bool)
            doc["landmarks"] = {
                "format": "mediapipe_refined_478",
                "xy": np.round(self.landmarks.astype(np.float64), 3).tolist(),
                "visible": [bool(v) for v in vis],
            }
        if self.bbox is not None:
            doc["bbox"] = list(self.written_bbox)
        for name, arr in self.arrays.items():
            doc.setdefault("arrays", {})[name] = np.round(np.asarray(arr, dtype=np.float64), 5).tolist()
        return doc

    def numbers_finite(self) -> bool:
        """Whether the landmarks and arrays :meth:`to_json` writes hold finite numbers only (checked as arrays)."""
        if self.landmarks is not None and not np.isfinite(np.asarray(self.landmarks, np.float64)).all():
            return False
        return all(np.isfinite(np.asarray(a, np.float64)).all() for a in self.arrays.values())

    @classmethod
    def from_json(cls, doc: dict[str, Any], image: np.ndarray | None = None) -> "FaceSample":
        lm = doc.get("landmarks")
        return cls(
            key=doc["key"],
            index=doc["index"],
            params=doc.get("params", {}),
            image=image,
            labels=doc.get("labels", {}),
            landmarks=np.asarray(lm["xy"], np.float32) if lm else None,
            visibility=np.asarray(lm["visible"], bool) if lm else None,
            bbox=tuple(doc["bbox"]) if doc.get("bbox") else None,
            arrays={k: np.asarray(v, np.float32) for k, v in doc.get("arrays", {}).items()},
            aug=doc.get("aug", []),
            verdicts=doc.get("verdicts", []),
            split=doc.get("split"),
            identity=doc.get("identity"),
            source_key=doc.get("source_key"),
        )


@dataclass
class CardSection:
    """What a stage contributes to the dataset card and reports after a run."""

    title: str
    markdown: str
    data: dict[str, Any] = field(default_factory=dict)  # written as JSON next to the card
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> content (plots)
    json_name: str | None = None  # file name for `data`, e.g. "privacy_report.json"


@runtime_checkable
class Stage(Protocol):
    """A stage of the factory. ``setup`` loads models once per worker; ``process`` maps a batch.

    Optional: ``finalize(dataset_dir, records) -> CardSection | None`` for dataset-level reports,
    where ``records`` are the JSON documents of all written samples (quarantined ones included).
    """

    name: str

    def setup(self) -> None: ...

    def process(self, batch: list[FaceSample]) -> list[FaceSample]: ...


def run_stages(stages: list[Stage], batch: list[FaceSample]) -> list[FaceSample]:
    """Run ``stages`` in order; each sees only accepted samples (all, with ``sees_quarantined``);
    quarantined ones are kept."""
    out = list(batch)
    for stage in stages:
        if getattr(stage, "sees_quarantined", False):
            accepted, held = out, []
        else:
            accepted = [s for s in out if not s.quarantined]
            held = [s for s in out if s.quarantined]
        try:
            result = stage.process(accepted) if accepted else []
        except UserError:  # bad input the user can fix: keep its type, the CLI prints it (exit 2)
            raise
        except Exception as e:  # a stage that fails on a batch fails the batch loudly (the task retries)
            raise RuntimeError(f"stage {stage.name!r} failed: {e}") from e
        if len({s.key for s in result}) != len(result):
            raise RuntimeError(f"stage {stage.name!r} returned duplicate keys")
        out = held + result
        out.sort(key=lambda s: (s.index, s.key))
    return out
