"""What a command will need before it starts, and the command that makes each missing piece.

``dmsfactory validate`` prints these checks, ``dmsfactory run`` and ``dmsfactory train`` refuse to
start when one of theirs fails (exit 2, one line per missing piece, no traceback), so a run never
spends minutes in Prefect before finding out that a model directory does not exist.

* ``run``: the diffusion backend's model (and ControlNet) directory, or the hub id in the local cache
  when the hub is offline (``HF_HUB_OFFLINE=1``, the CLI's default). Real galleries of the privacy
  gate are checked when the spec is loaded (:class:`dmsfactory.privacy.config.PrivacyConfig`).
* ``train``: the synthetic dataset (``train.dataset_dir``) and the private set
  (``train.private_data``), each a finished dataset directory (``manifest.json``). When a spec next
  to the given one makes that directory (its ``output.dir``), the fix names that spec.

Only file-system and cache look-ups: nothing is loaded, so the checks take milliseconds.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmsfactory.generators.diffusion.loading import how_to_supply, looks_local


@dataclass(frozen=True)
class Need:
    """A piece a command needs that is not there."""

    field: str  # the spec field that names it, e.g. "diffusion.model"
    what: str  # what is wrong, e.g. "local directory 'out/tiny-sd/sd' not found"
    fix: str  # the command (or action) that makes it
    command: str = "run"  # the dmsfactory command that needs it: run | train
    runnable: bool = True  # ``fix`` is a command line (else an instruction)

    def line(self) -> str:
        return lines([self])[0]


def _shown(path: str | Path) -> str:
    """A path as the user would type it here: relative to the working directory when inside it
    (symlinks are not followed: ``.venv/bin/python`` stays that)."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(Path(os.path.abspath(p)).relative_to(os.path.abspath(Path.cwd())))
    except ValueError:
        return str(p)


def _bin_dir() -> Path:
    """The environment's ``bin`` as the user called it (``.venv/bin`` when they typed ``.venv/bin/dmsfactory``)."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if argv0 is not None and argv0.name == "dmsfactory" and argv0.parent.joinpath("python").exists():
        return argv0.parent
    return Path(sys.executable).parent


def python_cmd() -> str:
    """How to call this Python: ``.venv/bin/python`` from the repository, else its full path."""
    exe = _bin_dir() / "python"
    return shlex.quote(_shown(exe if exe.exists() else sys.executable))


def dmsfactory_cmd() -> str:
    """How to call the ``dmsfactory`` command of this environment."""
    exe = _bin_dir() / "dmsfactory"
    return shlex.quote(_shown(exe)) if exe.is_file() else "dmsfactory"


def lines(needs: list["Need"]) -> list[str]:
    """One line per fix: pieces made by the same command (the tiny model's two directories) share it."""
    by_fix: dict[str, list[Need]] = {}
    for n in needs:
        by_fix.setdefault(n.fix, []).append(n)
    out = []
    for fix, group in by_fix.items():
        what = "; ".join(f"{n.field}: {n.what}" for n in group)
        how = f"make {'it' if len(group) == 1 else 'them'} with: " if group[0].runnable else "to fix: "
        out.append(f"{what}; {how}{fix}")
    return out


def _tiny_root(path: Path, leaf: str) -> Path | None:
    """``DIR`` when ``path`` is ``DIR/sd`` or ``DIR/controlnet`` of the tiny test model's layout."""
    return path.parent if path.name == leaf and "tiny" in path.parent.name.lower() else None


def _hub_cached(repo: str, filename: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - diffusers depends on it
        return True
    try:
        hit = try_to_load_from_cache(repo, filename, revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id: let the loader say what is wrong
        return True
    return isinstance(hit, str)


def _model_need(field: str, name: str, revision: str | None, local_only: bool, kind: str) -> Need | None:
    """``kind``: "pipeline" (a StableDiffusionPipeline directory) or "controlnet" (a ControlNetModel)."""
    leaf, marker = ("sd", "model_index.json") if kind == "pipeline" else ("controlnet", "config.json")
    if looks_local(name):
        path = Path(os.path.expanduser(name))
        if path.is_dir() and (path / marker).is_file():
            return None
        what = f"local directory {name!r} not found" if not path.is_dir() else f"{_shown(path / marker)} is missing"
        tiny = _tiny_root(path, leaf)
        if tiny is not None:
            return Need(field, what, f"{python_cmd()} -m dmsfactory.generators.diffusion.tiny {shlex.quote(_shown(tiny))}")
        return Need(field, what, how_to_supply("<hub-id>", kind), runnable=False)
    if not (local_only or os.environ.get("HF_HUB_OFFLINE") == "1"):
        return None  # the loader may download it
    if _hub_cached(name, marker, revision):
        return None
    return Need(field, f"hub model {name!r} is not in the local cache and the hub is offline (HF_HUB_OFFLINE=1)",
                how_to_supply(name, kind), runnable=False)


def run_needs(spec: Any) -> list[Need]:
    """Missing pieces ``dmsfactory run`` of ``spec`` needs."""
    needs: list[Need] = []
    d = spec.diffusion
    if spec.backend == "diffusion" and d is not None:
        n = _model_need("diffusion.model", d.model, d.revision, d.local_files_only, "pipeline")
        if n:
            needs.append(n)
        if d.mode == "controlnet" and d.controlnet is not None:
            n = _model_need("diffusion.controlnet.model", d.controlnet.model, d.controlnet.revision,
                            d.local_files_only, "controlnet")
            if n:
                needs.append(n)
    return needs


def _same_dir(a: str | Path, b: str | Path) -> bool:
    return Path(os.path.expanduser(str(a))).resolve() == Path(os.path.expanduser(str(b))).resolve()


def spec_making(directory: str | Path, spec_path: str | Path | None) -> Path | None:
    """A spec file next to ``spec_path`` (the same folder) whose ``output.dir`` is ``directory``."""
    if spec_path is None:
        return None
    import yaml

    here = Path(spec_path)
    for p in sorted(here.parent.glob("*.y*ml")):
        try:
            data = yaml.safe_load(p.read_text())
        except (OSError, yaml.YAMLError):
            continue
        out = ((data or {}).get("output") or {}).get("dir") if isinstance(data, dict) else None
        if out and _same_dir(out, directory):
            return p
    return None


def _dataset_need(field: str, directory: str, spec_path: str | Path | None, this_spec: Any, other: str) -> Need | None:
    d = Path(os.path.expanduser(directory))
    if (d / "manifest.json").is_file():
        return None
    what = f"dataset {directory!r} not found" if not d.is_dir() else f"{directory!r} has no manifest.json (an unfinished run?)"
    maker = Path(spec_path) if spec_path is not None and _same_dir(this_spec.output.dir, directory) else spec_making(directory, spec_path)
    if maker is not None:
        fix = f"{dmsfactory_cmd()} run {shlex.quote(_shown(maker))}"
        if not _same_dir(directory, _spec_output(maker)):
            fix += f" --out {shlex.quote(directory)}"
        return Need(field, what, fix, command="train")
    return Need(field, what, other, command="train", runnable=other.startswith(dmsfactory_cmd()))


def _spec_output(path: Path) -> str:
    import yaml

    try:
        return str(((yaml.safe_load(path.read_text()) or {}).get("output") or {}).get("dir") or "")
    except (OSError, yaml.YAMLError, AttributeError):
        return ""


def train_needs(spec: Any, spec_path: str | Path | None = None) -> list[Need]:
    """Missing pieces ``dmsfactory train`` of ``spec`` needs (none when the spec has no ``train:``)."""
    cfg = spec.train
    if cfg is None:
        return []
    needs: list[Need] = []
    ds = cfg.dataset_dir or spec.output.dir
    n = _dataset_need("train.dataset_dir", ds, spec_path, spec,
                      f"{dmsfactory_cmd()} run SPEC --out {shlex.quote(ds)} (the synthetic set to train on)")
    if n:
        needs.append(n)
    if cfg.method != "synthetic_only" or cfg.private_data:
        if not cfg.private_data:
            needs.append(Need("train.private_data", f"method {cfg.method!r} needs a private set",
                              "set train.private_data to a shard directory of the private set", command="train",
                              runnable=False))
        else:
            n = _dataset_need("train.private_data", cfg.private_data, spec_path, spec,
                              "write the private set as dmsfactory shards (docs/training.md) and point "
                              "train.private_data at them")
            if n:
                needs.append(n)
    return needs
