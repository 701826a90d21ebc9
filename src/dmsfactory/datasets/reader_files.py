"""The files other readers open, written with the manifest (docs/readers.md).

:func:`write_reader_files` is the one hook the pipeline calls after it has built the manifest
and before it writes it: wids shard indexes (:mod:`~dmsfactory.datasets.wids_index`) and
``croissant.json`` (:mod:`~dmsfactory.datasets.croissant`). Both are derived from the manifest
alone (shard paths, counts, sizes, sha256), so this works on a streaming finalize. The Hugging Face
metadata lives in the card's YAML header (:func:`dmsfactory.datasets.hf.card_header`, written by
the card writer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmsfactory.datasets.croissant import write_croissant
from dmsfactory.datasets.wids_index import write_wids_indexes


def write_reader_files(out_dir: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the reader files into ``out_dir``; returns what to record as ``manifest["readers"]``."""
    wids = write_wids_indexes(out_dir, manifest)
    croissant = write_croissant(out_dir, manifest)
    return {
        "huggingface": "README.md (YAML header: configs + dataset_info.features)",
        "wids": wids,
        "croissant": croissant.name,
    }
