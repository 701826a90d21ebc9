"""The dataset card's links to transfer reports (no heavy imports: the card writer uses this).

The card gets a section "Sim-to-real transfer" with one line per report folder (a dataset can be
judged against several real folders); running ``transfer`` again into the same folder refreshes its
line instead of adding one. ``card_lines(DIR)`` rebuilds the section from the reports found under
``DIR/transfer*/report.md`` and the links already in the card, so re-writing the card keeps them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MARK = "<!-- dmsfactory-transfer-report -->"
TITLE = "## Sim-to-real transfer"
_LINK = re.compile(r"\]\(([^)]+)\)")


def _rel(dataset_dir: Path, report: Path) -> str:
    try:
        return os.path.relpath(report.resolve(), dataset_dir.resolve())
    except ValueError:  # another drive
        return str(report.resolve())


def _line(rel: str) -> str:
    return (f"- {MARK} [{rel}]({rel.replace(' ', '%20')}): models trained on this dataset alone, tested on "
            "real labelled images (`dmsfactory transfer`, docs/transfer.md)")


def _existing(dataset_dir: Path) -> list[str]:
    card = dataset_dir / "README.md"
    if not card.is_file():
        return []
    out = []
    for ln in card.read_text().split("\n"):
        if MARK in ln:
            m = _LINK.search(ln)
            if m:
                out.append(m.group(1).replace("%20", " "))
    return out


def card_lines(dataset_dir: str | Path, extra: str | Path | None = None) -> list[str]:
    """The card section (title, one line per existing report), or [] when there is none."""
    d = Path(dataset_dir)
    rels = []
    for rel in _existing(d) + [_rel(d, p) for p in sorted(d.glob("transfer*/report.md"))] + (
            [_rel(d, Path(extra))] if extra is not None else []):
        if rel not in rels and (d / rel).is_file():
            rels.append(rel)
    if not rels:
        return []
    return [TITLE, "", *[_line(r) for r in rels], ""]


def refresh_card(dataset_dir: str | Path, report: str | Path) -> bool:
    """Add or refresh ``report``'s line in the card's transfer section; False when there is no card."""
    d = Path(dataset_dir)
    card = d / "README.md"
    if not card.is_file():
        return False
    new = card_lines(d, report)
    lines = card.read_text().split("\n")
    out, i = [], 0
    while i < len(lines):
        if lines[i] == TITLE:  # drop the old section (up to the next heading)
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
