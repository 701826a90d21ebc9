"""What every worker process needs before its first batch, done once in the pool's fork server.

:class:`~dmsfactory.pipeline.ShardPool` forks its workers from a server process (multiprocessing's
``forkserver``) that imported this module first: torch, MediaPipe, albumentations, dlib and the
factory's stage modules (2-3 s of imports per process), the face model the renderer loads in its
``setup`` and numba's compiled renderer kernels (one small render). A forked worker starts with all
of it and only builds its own models (MediaPipe graphs, dlib predictors, the descriptor network).
``dmsfactory run`` starts the server first thing (:func:`~dmsfactory.workerserver.start_pool_server`),
so these imports overlap the run's own start instead of following it.

Importing this module must start no thread: a process that runs threads must not fork (a lock held
by another thread at the fork stays locked in the child forever). Nothing here does (tested):
the model graphs that do start threads are built in each worker, after the fork.
"""

from __future__ import annotations

import importlib

import dmsfactory.augment.stage  # noqa: F401  # albumentations
import dmsfactory.pipeline  # noqa: F401  # every stage module the workers run
from dmsfactory.generators.procedural.config import ProceduralConfig
from dmsfactory.generators.procedural.generator import example_plan_entry
from dmsfactory.generators.procedural.render import model_geometry, render

# the stages import these inside their setup; a missing one is the stage's error to report, not this module's
HEAVY = ("torch", "mediapipe", "dlib", "face_recognition_models")


def _import_heavy() -> None:
    for name in HEAVY:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _one_opencv_thread() -> None:
    """OpenCV starts its own thread pool at its first parallel call (the warm-up render below makes
    one on some CPUs: seen on an AMD EPYC, not on an Intel Xeon). A worker forked from a server with
    that pool inherits the pool's bookkeeping but not its threads, and its ``cv2.setNumThreads(1)``
    (:func:`~dmsfactory.pipeline.default_threads`) then waits forever on a condition variable that
    only the missing threads could release: the run hangs before its first batch. One thread from
    the start means there is no pool to inherit."""
    import cv2

    cv2.setNumThreads(1)


def _warm_renderer() -> None:
    """Load the face model and numba's cached kernels (one 64-px render) in the server."""
    model_geometry()
    render(example_plan_entry(camera={"image_size": 64}), ProceduralConfig())


_import_heavy()
_one_opencv_thread()
_warm_renderer()
