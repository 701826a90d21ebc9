"""Sim-to-real transfer report: models trained on the factory's shards alone, judged on real data.

``dmsfactory transfer SHARDS_DIR --real REAL_DIR`` (or :func:`run_transfer`) trains fixed, seeded
reference CNNs on the synthetic shards and reports how they do on a folder of the user's own real
labelled images, next to the same models trained on the real images (k-fold), training-free
baselines (MediaPipe, dlib) and chance, with bootstrap intervals, plots, a learning curve and
DP-SGD rows. Layout, crop rules, models and metrics: docs/transfer.md.

Importing this package is light (no torch); the modules that train import torch themselves.
"""

from dmsfactory.transfer.layout import LayoutError, read_real

__all__ = ["run_transfer", "read_real", "LayoutError", "TransferInputError"]


def __getattr__(name):
    if name in ("run_transfer", "TransferInputError"):
        from dmsfactory.transfer import run

        return getattr(run, name)
    raise AttributeError(name)
