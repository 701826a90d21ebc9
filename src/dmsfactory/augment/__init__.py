"""Landmark-consistent, replayable augmentation (docs/augment.md).

``AugmentStage(config, seed)`` turns each source sample into ``views_per_image`` augmented views;
every op's sampled parameters are recorded in ``FaceSample.aug`` and ``AugmentStage.replay``
reproduces a view from its source and that record.
"""

from dmsfactory.augment.config import AugmentConfig
from dmsfactory.augment.stage import AugmentStage, view_seed

__all__ = ["AugmentConfig", "AugmentStage", "view_seed"]
