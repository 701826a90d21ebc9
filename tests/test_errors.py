"""One error hierarchy (dmsfactory.errors): every exception we define derives from DmsFactoryError;
user errors reach the CLI as exit 2 with one line each and no traceback; stages' on_error policy."""

import ast
import importlib
from pathlib import Path

import pytest

from dmsfactory import cli
from dmsfactory.errors import DmsFactoryError, UserError
from dmsfactory.generators.procedural import ProceduralGenerator
from dmsfactory.generators.procedural.generator import example_plan_entry
from dmsfactory.labelers.params import LabelStage
from dmsfactory.sample import FaceSample
from dmsfactory.spec import SpecError, parse_spec

SRC = Path(__file__).resolve().parents[1] / "src" / "dmsfactory"


def _defined_exceptions():
    """(module, class name) of every class in src/dmsfactory whose bases name an Error/Exception."""
    for p in sorted(SRC.rglob("*.py")):
        mod = "dmsfactory." + ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef):
                names = [ast.unparse(b) for b in node.bases]
                if any(n.endswith(("Error", "Exception", "Mismatch", "Gap", "NotAvailable")) for n in names):
                    yield mod, node.name


def test_every_exception_class_derives_from_dmsfactory_error():
    found = list(_defined_exceptions())
    assert len(found) >= 20, found  # the scan itself works (23 classes when this test was written)
    bad = []
    for mod, name in found:
        cls = getattr(importlib.import_module(mod), name)
        if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, DmsFactoryError):
            bad.append(f"{mod}.{name}")
    assert not bad, f"exceptions outside the hierarchy (derive them from dmsfactory.errors): {bad}"


def test_old_bases_are_kept_for_existing_except_clauses():
    from dmsfactory.generators.diffusion.generator import ModelNotAvailable
    from dmsfactory.generators.procedural.render import PlanEntryError
    from dmsfactory.privacy.leakage import GalleryError

    assert issubclass(GalleryError, ValueError) and issubclass(GalleryError, UserError)
    assert issubclass(PlanEntryError, ValueError) and not issubclass(PlanEntryError, UserError)
    assert issubclass(ModelNotAvailable, RuntimeError) and issubclass(ModelNotAvailable, UserError)


def test_cli_prints_a_user_error_as_one_line_exit_2(tmp_path, capsys):
    key = tmp_path / "missing.key"
    rc = cli.main(["recover", str(tmp_path), "--key", str(key), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


def test_cli_lets_a_programming_error_through(monkeypatch):
    def boom(a):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(cli, "cmd_validate", boom)
    with pytest.raises(KeyError):
        cli.main(["validate", "x.yaml"])


def test_spec_error_lines_name_the_field(tiny_spec_dict):
    tiny_spec_dict["run"] = {"on_error": "ignore"}
    with pytest.raises(SpecError) as ei:
        parse_spec(tiny_spec_dict, "s.yaml")
    assert isinstance(ei.value, UserError)
    assert ei.value.lines == ["s.yaml: run.on_error: 'ignore' is not allowed; allowed values: quarantine, raise"]


def test_generator_error_policy_quarantines_by_default_and_raises_on_request():
    bad = example_plan_entry(lighting="moonlight")
    (s,) = ProceduralGenerator().generate([bad])
    assert s.quarantined and "lighting" in s.quarantine_reasons[0]
    with pytest.raises(ValueError, match="lighting"):
        ProceduralGenerator(on_error="raise").generate([bad])
    with pytest.raises(ValueError, match="allowed values: quarantine, raise"):
        ProceduralGenerator(on_error="ignore")


def test_label_stage_error_policy():
    def broken():
        return FaceSample(key="k", index=0, params={"class": "alert"})

    (s,) = LabelStage().process([broken()])
    assert s.quarantined and s.quarantine_reasons[0].startswith("label: cannot derive labels")
    with pytest.raises(KeyError):
        LabelStage(on_error="raise").process([broken()])


def test_spec_run_on_error_reaches_the_stages_and_not_the_hash(tiny_spec_dict):
    from dmsfactory.generators import get_generator
    from dmsfactory.pipeline import build_stages

    a = parse_spec(tiny_spec_dict)
    b = parse_spec({**tiny_spec_dict, "run": {"on_error": "raise"}})
    assert a.content_hash() == b.content_hash()
    assert get_generator(b).on_error == "raise" and build_stages(b)[0].on_error == "raise"
    assert get_generator(a).on_error == "quarantine"


def test_is_quarantined_reads_samples_and_documents_alike():
    from dmsfactory.sample import is_quarantined

    s = FaceSample(key="k", index=0, params={})
    s.add_verdict("verify", "eyes", "disagree")
    assert not is_quarantined(s) and not is_quarantined(s.to_json()) and not is_quarantined({"verdicts": None})
    s.quarantine("privacy", "leak", check="leakage")
    assert is_quarantined(s) and is_quarantined(s.to_json()) and s.quarantined
    assert is_quarantined(s.to_json(), check="leakage") and not is_quarantined(s.to_json(), check="presence")
