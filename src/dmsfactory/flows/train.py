"""The private fine-tune stage as a Prefect flow (wiring only: all work is in dmsfactory.training)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dmsfactory.spec import load_spec


@task(name="train-classifier", cache_policy=NO_CACHE)
def train_task(spec_path: str, out: str) -> dict[str, Any]:
    from dmsfactory.training import train_from_spec  # heavy: torch

    spec = load_spec(spec_path)
    return train_from_spec(spec, Path(out), progress=lambda e: print(e) if e.get("phase") != "load" else None)


@flow(name="dmsfactory-train", log_prints=True)
def train_flow(spec_path: str, out: str) -> dict[str, Any]:
    """Spec (with a ``train:`` section) -> model.safetensors, MODEL_CARD.md, ledger.json in ``out``."""
    summary = train_task(spec_path, out)
    card = Path(summary["report"]).read_text() if summary.get("report") else str(summary["metrics"])
    key = re.sub(r"[^a-z0-9-]+", "-", f"dmsfactory-train-{Path(spec_path).stem}".lower()).strip("-")
    create_markdown_artifact(key=key, markdown=card, description="DMS classifier fine-tune")
    return summary
