"""Landmark-consistent, replayable augmentation (docs/augment.md).

``AugmentStage(config, seed)`` turns each source sample into ``views_per_image`` augmented views;
every op's sampled parameters are recorded in ``FaceSample.aug`` and ``AugmentStage.replay``
reproduces a view from its source and that record.

``AugmentStage`` and ``view_seed`` load on first use: the stage imports albumentations, which imports
torch (seconds), and ``dmsfactory.spec`` imports this package for ``AugmentConfig`` alone
(docs/architecture.md: config models are record-layer modules that cost nothing to import).
"""

from dmsfactory.augment.config import AugmentConfig

__all__ = ["AugmentConfig", "AugmentStage", "view_seed"]


def __getattr__(name: str):
    if name in ("AugmentStage", "view_seed"):
        from dmsfactory.augment import stage  # optional heavy dependency: albumentations (+ torch)

        return getattr(stage, name)
    raise AttributeError(f"module 'dmsfactory.augment' has no attribute {name!r}")
