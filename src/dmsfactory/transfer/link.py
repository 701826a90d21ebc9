"""The dataset card's link to a transfer report (no heavy imports: the card writer uses this)."""

from __future__ import annotations

import os
from pathlib import Path

MARK = "<!-- dmsfactory-transfer-report -->"
TITLE = "## Sim-to-real transfer"


def card_lines(dataset_dir: str | Path, report: str | Path | None = None) -> list[str]:
    """Markdown lines linking ``report`` (default ``DIR/transfer/report.md`` when it exists), or []."""
    d = Path(dataset_dir)
    r = Path(report) if report is not None else d / "transfer" / "report.md"
    if not r.is_file():
        return []
    try:
        rel = os.path.relpath(r.resolve(), d.resolve())
    except ValueError:  # another drive
        rel = str(r.resolve())
    return [TITLE, "", f"{MARK} Models trained on this dataset alone, tested on real labelled images: "
            f"[{rel}]({rel.replace(' ', '%20')}) (`dmsfactory transfer`, docs/transfer.md).", ""]


def refresh_card(dataset_dir: str | Path, report: str | Path) -> bool:
    """Add or replace the transfer section of ``DIR/README.md``; False when there is no card."""
    card = Path(dataset_dir) / "README.md"
    if not card.is_file():
        return False
    lines = card.read_text().split("\n")
    new = card_lines(dataset_dir, report)
    if not new:
        return False
    out, i = [], 0
    while i < len(lines):
        if lines[i] == TITLE and any(MARK in ln for ln in lines[i : i + 4]):
            i += 1
            while i < len(lines) and not lines[i].startswith("## "):
                i += 1
            continue
        out.append(lines[i])
        i += 1
    while out and out[-1] == "":
        out.pop()
    card.write_text("\n".join(out + [""] + new))
    return True
