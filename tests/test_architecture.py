"""The import rules of docs/architecture.md, read from the code (ast): a forbidden arrow fails here.

Layers, low to high: domain (0) <- record (1) <- stages (2) <- pipeline (3) <- flows (4) <- cli (5).
A module may import modules of its own layer or lower ones, never higher ones; only ``flows`` imports
Prefect or Dask; a function-level import of a dmsfactory module is either a lazy loader
(``__getattr__`` of a package, for optional heavy dependencies) or listed in ``KNOWN_FUNCTION_IMPORTS``
below (a heavy dependency or the CLI's per-command import, each with a comment at the import); a
function-level import of a heavy third-party package (``HEAVY_PACKAGES``) has a comment on its line;
every module has its line in docs/architecture.md, and the document lists no module that does not exist.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dmsfactory"
DOC = ROOT / "docs" / "architecture.md"

LAYERS = ("domain", "record", "stages", "pipeline", "flows", "cli")
DOMAIN = {"dmsfactory.errors", "dmsfactory.conditions", "dmsfactory.taxonomy", "dmsfactory.geometry",
          "dmsfactory.landmarks", "dmsfactory.seeds", "dmsfactory.fileio", "dmsfactory.env", "dmsfactory.quiet", "dmsfactory.interrupt"}
RECORD = {"dmsfactory", "dmsfactory.sample", "dmsfactory.plan_entry", "dmsfactory.spec",
          "dmsfactory.generators.diffusion.templates"}  # + every ``<package>.config`` module (see layer_of)
PIPELINE = {"dmsfactory.pipeline", "dmsfactory.preflight", "dmsfactory.summary", "dmsfactory.preload",
            "dmsfactory.workerserver"}
HEAVY_ORCHESTRATION = ("prefect", "prefect_dask", "dask", "distributed")

# Function-level imports of dmsfactory modules that exist today (importer -> imported), outside lazy
# ``__getattr__`` loaders. Each is a known exception with a comment on its import line saying why it
# cannot be at the top: the imported module loads a heavy dependency the importer does not otherwise
# need, or the import is the CLI's per-command one. Every other cheap import is at the top (issue 22
# moved 59). Remove entries as the imports move; never add one without such a comment at the import.
KNOWN_FUNCTION_IMPORTS: dict[str, set[str]] = {
    # heavy: torch (privacy.analyze, privacy.leakage), albumentations (augment.ops); the modules below are
    # cheap without them
    "dmsfactory.privacy.stage": {"dmsfactory.augment.ops", "dmsfactory.privacy.analyze", "dmsfactory.privacy.leakage",
                                 "dmsfactory.privacy.presence"},
    "dmsfactory.training.data": {"dmsfactory.datasets"},
    # heavy: albumentations + torch (``augment.AugmentStage`` loads augment.stage)
    "dmsfactory.pipeline": {"dmsfactory.augment"},
    # heavy: torch + diffusers (the diffusion backend); the generators registry loads a backend only when a
    # spec chooses it: its ``__init__`` runs before every ``dmsfactory.generators.*`` module, the spec's
    # config models among them, so even the procedural renderer (scipy, cv2) is not imported there
    "dmsfactory.anonymize.diffusion": {"dmsfactory.generators.diffusion"},
    "dmsfactory.generators": {"dmsfactory.generators.diffusion", "dmsfactory.generators.procedural"},
    # heavy: torch (the training stage; the transfer report's models, protocol and analysis), so that
    # ``dmsfactory transfer`` checks its inputs, and the real/synthetic crop readers run, without torch
    "dmsfactory.flows.train": {"dmsfactory.training"},
    "dmsfactory.transfer.real": {"dmsfactory.transfer.analysis"},
    "dmsfactory.transfer.report": {"dmsfactory.transfer.protocol"},
    "dmsfactory.transfer.run": {"dmsfactory.datasets.reader", "dmsfactory.transfer.analysis",
                                "dmsfactory.transfer.models", "dmsfactory.transfer.protocol"},
    "dmsfactory.transfer.synth": {"dmsfactory.transfer.analysis"},
    # the planner and spec (through labelers.audit) load the procedural renderer (numba, scipy: ~0.5 s),
    # which the anonymiser and the transfer report, users of labelers.verify without a spec, never need
    "dmsfactory.labelers.verify": {"dmsfactory.labelers.audit"},
    # the CLI starts fast: each command imports what it runs (``dmsfactory --help`` builds every parser)
    "dmsfactory.cli": {"dmsfactory.transfer.cli", "dmsfactory.anonymize.config", "dmsfactory.anonymize.keys", "dmsfactory.anonymize.recover",
                       "dmsfactory.anonymize.run", "dmsfactory.datasets.openlabel", "dmsfactory.datasets.preview",
                       "dmsfactory.datasets.remote", "dmsfactory.flows.factory", "dmsfactory.flows.interrupt",
                       "dmsfactory.interrupt", "dmsfactory.pipeline", "dmsfactory.plan", "dmsfactory.preflight",
                       "dmsfactory.privacy.leakcheck", "dmsfactory.quiet", "dmsfactory.spec", "dmsfactory.summary",
                       "dmsfactory.training"},
    "dmsfactory.transfer.cli": {"dmsfactory.transfer.run"},
}

# Third-party packages whose function-level imports must say why on their line (``# heavy: torch``,
# ``# optional: faiss-cpu``). Restricted to these because src/dmsfactory holds over a hundred
# function-level third-party imports in all, most of them cheap (cv2, yaml, tqdm) and late by habit.
HEAVY_PACKAGES = ("torch", "diffusers", "transformers", "dlib", "mediapipe", "albumentations", "faiss", "matplotlib",
                  "opacus", "prefect", "prefect_dask", "dask", "distributed", "webdataset", "sklearn", "scipy")


def module_name(p: Path) -> str:
    parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer_of(mod: str) -> str:
    if mod in DOMAIN:
        return "domain"
    if mod in RECORD or mod.endswith(".config"):
        return "record"
    if mod in PIPELINE:
        return "pipeline"
    if mod == "dmsfactory.flows" or mod.startswith("dmsfactory.flows."):
        return "flows"
    if mod == "dmsfactory.cli" or mod.endswith(".cli"):  # the command and a package's subcommand module
        return "cli"
    return "stages"


@lru_cache(maxsize=None)
def imports(path: Path) -> list[tuple[str, int, str | None]]:
    """(imported module, line, enclosing function name or None) for every import in ``path``."""
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out: list[tuple[str, int, str | None]] = []

    def visit(node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            f = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and func is None else func
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f)
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, func) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                # ``from pkg import sub`` names a submodule when one exists (resolved in first_party)
                out.extend((f"{target}.{a.name}", child.lineno, func) for a in child.names)
            visit(child, func)

    visit(ast.parse(path.read_text()), None)
    return out


def first_party(target: str, known: dict[str, Path]) -> str | None:
    """The dmsfactory module an import names (``a.b.c`` -> the longest existing prefix), else None."""
    if not target.startswith("dmsfactory"):
        return None
    parts = target.split(".")
    while parts:
        name = ".".join(parts)
        if name in known:
            return name
        parts.pop()
    return None


def test_no_import_points_up_a_layer():
    known = modules()
    bad = []
    for mod, path in known.items():
        for target, line, _ in imports(path):
            t = first_party(target, known)
            if t is None:
                continue
            if LAYERS.index(layer_of(t)) > LAYERS.index(layer_of(mod)):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} ({layer_of(mod)}) imports {t} ({layer_of(t)})")
    assert not bad, "imports against the layer order of docs/architecture.md:\n" + "\n".join(bad)


def test_only_flows_import_prefect_or_dask():
    bad = []
    for mod, path in modules().items():
        if layer_of(mod) in ("flows",):
            continue
        for target, line, _ in imports(path):
            if target.split(".")[0] in HEAVY_ORCHESTRATION:
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mod} imports {target}")
    assert not bad, "stages (and everything below flows) never import Prefect or Dask:\n" + "\n".join(bad)


def test_function_level_imports_are_lazy_loaders_or_known_exceptions():
    known = modules()
    found: dict[str, set[str]] = {}
    new = []
    for mod, path in known.items():
        for target, line, func in imports(path):
            t = first_party(target, known)
            if t is None or func is None or func == "__getattr__" or t == mod:
                continue
            found.setdefault(mod, set()).add(t)
            if t not in KNOWN_FUNCTION_IMPORTS.get(mod, set()):
                new.append(f"{path.relative_to(ROOT)}:{line}: {mod} imports {t} inside {func}()")
    assert not new, ("new function-level imports of dmsfactory modules (import at the top; if a cycle or a "
                     "heavy optional dependency forbids it, say so in a comment and list it in "
                     "KNOWN_FUNCTION_IMPORTS):\n" + "\n".join(new))
    stale = sorted(f"{m} -> {t}" for m, ts in KNOWN_FUNCTION_IMPORTS.items() for t in ts if t not in found.get(m, set()))
    assert not stale, "KNOWN_FUNCTION_IMPORTS lists imports that are gone (remove them):\n" + "\n".join(stale)


def test_function_level_imports_of_heavy_packages_say_why():
    """A function-level import of a heavy third-party package carries a comment on its line."""
    bare = []
    for mod, path in modules().items():
        lines = path.read_text().splitlines()
        for target, line, func in imports(path):
            top = target.split(".")[0]
            if func is None or top in sys.stdlib_module_names or top == "dmsfactory":
                continue
            if top in HEAVY_PACKAGES and "#" not in lines[line - 1]:
                bare.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
    assert not bare, ("function-level imports of heavy packages without a comment saying why (e.g. "
                      "'# heavy: torch', '# optional: faiss-cpu'):\n" + "\n".join(bare))


def test_domain_modules_import_nothing_above_domain_and_no_heavy_library():
    allowed_third_party = {"numpy"}
    for mod, path in modules().items():
        if layer_of(mod) != "domain":
            continue
        for target, line, _ in imports(path):
            top = target.split(".")[0]
            if top == "dmsfactory":
                assert layer_of(first_party(target, modules()) or target) == "domain", (mod, target, line)
            elif top not in sys.stdlib_module_names:
                assert top in allowed_third_party, f"{mod}:{line} imports {target}: the domain layer stays light"


def test_importing_the_spec_loads_no_stage_dependency():
    """The record layer (spec and every ``<package>.config``) must not drag stages in: no
    albumentations/torch/mediapipe/diffusers/dlib/Prefect when a spec is only parsed."""
    code = ("import sys, dmsfactory.spec; "
            "print(' '.join(m for m in ('albumentations', 'torch', 'mediapipe', 'diffusers', 'dlib', 'prefect', "
            "'webdataset', 'dmsfactory.augment.stage', 'dmsfactory.privacy.stage', 'dmsfactory.labelers.verify') "
            "if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if p)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "", f"import dmsfactory.spec loaded: {r.stdout.strip()}"


def test_architecture_doc_lists_every_module_once_with_its_layer():
    text = DOC.read_text()
    rows = re.findall(r"^\|\s*`(dmsfactory[\w.]*)`\s*\|\s*(\w+)\s*\|", text, flags=re.M)
    listed = [m for m, _ in rows]
    known = modules()
    missing = sorted(set(known) - set(listed))
    extra = sorted(set(listed) - set(known))
    dupes = sorted({m for m in listed if listed.count(m) > 1})
    assert not missing and not extra and not dupes, f"docs/architecture.md module table: missing {missing}, " \
        f"not in the code {extra}, listed twice {dupes}"
    wrong = [f"{m}: doc says {lay}, code rule says {layer_of(m)}" for m, lay in rows if lay != layer_of(m)]
    assert not wrong, "layer column disagrees with the rule in this test:\n" + "\n".join(wrong)


def test_readme_layout_table_names_every_subpackage():
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    subpackages = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))
    missing = [p for p in subpackages if f"src/dmsfactory/{p}/" not in layout]
    assert subpackages and not missing, f"README.md's Layout table misses {missing}"
