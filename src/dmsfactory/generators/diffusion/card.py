"""The dataset card's section for diffusion-made samples: a plain function of the shard records.

No model is loaded: everything it reports (model, revision, config hash, modes, ControlNet, scheduler,
mixup, truncated prompts, where the geometry labels come from) was recorded per sample at generation.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from dmsfactory.sample import CardSection


def card_section(records: list[dict[str, Any]]):
    """Dataset-card section for diffusion-made samples (``records``: the shard JSON documents)."""
    recs = [r.get("params", {}).get("diffusion") for r in records]
    recs = [d for d in recs if d]
    if not recs:
        return None
    models = Counter((d.get("model"), d.get("revision"), d.get("config_hash", "")[:12]) for d in recs)
    modes = Counter(d.get("mode") for d in recs)
    geometry = Counter(d.get("geometry") for d in recs)
    cns = Counter(
        (d["controlnet"]["model"], d["controlnet"]["config_hash"][:12]) for d in recs if d.get("controlnet")
    )
    mixed = sum(1 for d in recs if d.get("mixup"))
    truncated = sum(1 for d in recs if d.get("prompt_truncated"))
    sched = Counter((d.get("scheduler"), d.get("steps"), d.get("guidance")) for d in recs)
    lines = [
        f"{len(recs)} samples generated with diffusers {recs[0].get('diffusers_version')}.",
        "",
        "| model | revision | config hash | samples |",
        "|---|---|---|---|",
    ]
    lines += [f"| {m} | {r or '-'} | {h} | {n} |" for (m, r, h), n in models.most_common()]
    lines += ["", "Modes: " + ", ".join(f"{k} {v}" for k, v in modes.most_common())]
    if cns:
        lines.append("ControlNet: " + ", ".join(f"{m} ({h}) {n}" for (m, h), n in cns.most_common()))
    lines.append("Scheduler / steps / guidance: " + ", ".join(f"{a} / {b} / {c}: {n}" for (a, b, c), n in sched.most_common()))
    lines.append(f"Mixed identities (SynFace mixup): {mixed} samples. Prompts truncated at 77 CLIP tokens: {truncated}.")
    lines.append(
        f"Geometry labels: {geometry.get('renderer', 0)} samples carry the procedural renderer's landmarks "
        f"(ControlNet/img2img); {geometry.get('unknown', 0)} txt2img samples have no geometry labels."
    )
    lines.append("Labels are computed from the plan parameters, never parsed from prompt words.")
    data = {
        "samples": len(recs),
        "models": [{"model": m, "revision": r, "config_hash": h, "samples": n} for (m, r, h), n in models.items()],
        "modes": dict(modes),
        "geometry": dict(geometry),
        "mixup_samples": mixed,
        "prompts_truncated": truncated,
    }
    return CardSection(title="Diffusion backend", markdown="\n".join(lines), data=data, json_name="diffusion.json")
