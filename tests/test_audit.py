"""Verification as an audit: the sample is stratified, sized by formula, reproducible, and the
verify stage checks exactly it (without acting on disagreements)."""

import math
from collections import Counter

import numpy as np
import pytest

from dmsfactory.labelers.audit import allocate, audit_mode, audit_selection, cochran_n, key_hash, wilson_fpc
from dmsfactory.spec import parse_spec


def _spec(tiny, **over):
    d = dict(tiny)
    d.update({"identities": {"count": 60, "images_per_identity": 10, "mixup_fraction": 0.0},
              "augment": {"enabled": True, "views_per_image": 1}, "verify": {"enabled": True}})
    for k, v in over.items():
        d[k] = v
    return parse_spec(d)


def test_sample_size_formula():
    # Cochran: n0 = 1.96^2 * 0.25 / 0.02^2 = 2401; finite population n = n0 N / (n0 + N - 1)
    assert cochran_n(0.02, 0.95, 10**9) == 2401
    assert cochran_n(0.02, 0.95, 800) == math.ceil(2401.0 * 800 / (2401.0 + 799)) == 601
    assert cochran_n(0.02, 0.95, 800, measurable=0.5) == math.ceil(4802.0 * 800 / (4802 + 799))
    assert cochran_n(0.02, 0.95, 50) <= 50 and cochran_n(0.05, 0.95, 10**6) == 384  # z = 1.95996, not 1.96


def test_wilson_with_finite_population_correction():
    assert wilson_fpc(80, 100, 100) == (0.8, 0.8)  # a census has no sampling error
    lo, hi = wilson_fpc(80, 100, 10**9)
    assert lo == pytest.approx(0.7111, abs=1e-3) and hi == pytest.approx(0.8666, abs=1e-3)  # plain Wilson
    lo2, hi2 = wilson_fpc(80, 100, 200)
    assert lo < lo2 < 0.8 < hi2 < hi  # half the population sampled: narrower
    assert wilson_fpc(0, 0, 10) is None


def test_allocation_is_proportional_and_exact():
    sizes = {("a", "x", "c1"): 500, ("b", "x", "c1"): 300, ("b", "y", "c2"): 7, ("c", "y", "c2"): 0}
    al = allocate(sizes, 120)
    assert sum(al.values()) == 120
    for h, n in sizes.items():
        assert abs(al[h] - 120 * n / 807) < 1 and al[h] <= n


def test_audit_sample_is_stratified_sized_and_reproducible(tiny_spec_dict):
    from dmsfactory.augment.config import image_keys
    from dmsfactory.labelers import audit as A
    from dmsfactory.planindex import plan_index

    spec = _spec(tiny_spec_dict)
    assert audit_mode(spec) == "audit"  # procedural labels are exact: audit by default
    sel = audit_selection(spec)
    N = 60 * 10 * 2  # renders x (source + one augmented view)
    assert sel.population == N and sel.target == cochran_n(0.02, 0.95, N, 0.4)
    # which images are checked: count per stratum equals the proportional allocation
    idx = plan_index(spec)
    picked: Counter = Counter()
    sizes: Counter = Counter()
    for i in range(len(idx)):
        h = idx.stratum(i)
        for k in image_keys(idx.key(i), spec.augment):
            sizes[h] += 1
            picked[h] += sel.selected(k, h)
    assert sum(picked.values()) == sel.target
    al = allocate(dict(sizes), sel.target)
    assert dict(picked) == {h: al[h] for h in sizes}
    assert len(sizes) > 10  # lighting x accessory x class strata, not one pool
    # reproducible: a fresh build (another process would do the same) selects the same images
    A._SELECTION.clear()
    again = audit_selection(spec)
    assert again.strata == sel.strata
    # the draw is a pure function of (seed, key): no batch, worker or --limit enters it
    assert key_hash(spec.seed, idx.key(0)) == key_hash(spec.seed, idx.key(0))
    # another seed draws another sample of the same sizes
    other = audit_selection(_spec(tiny_spec_dict, seed=8))
    assert other.target == sel.target and other.strata != sel.strata
    # verify.rate 1.0 restores checking every image; an explicit rate < 1 sizes by that rate
    assert audit_mode(_spec(tiny_spec_dict, verify={"enabled": True, "rate": 1.0})) == "all"
    half = audit_selection(_spec(tiny_spec_dict, verify={"enabled": True, "rate": 0.25}))
    assert half.target == math.ceil(0.25 * N)


def test_verify_stage_checks_the_audit_sample_only_and_never_acts(tiny_spec_dict):
    from dmsfactory.generators.procedural import ProceduralGenerator
    from dmsfactory.labelers.params import LabelStage
    from dmsfactory.labelers.verify import VerifyStage
    from dmsfactory.plan import make_plan
    from dmsfactory.sample import run_stages

    spec = _spec(tiny_spec_dict, image={"size": 128}, verify={"enabled": True, "rate": 0.3, "policy": {"face": "quarantine", "eyes": "quarantine"}})
    sel = audit_selection(spec)
    entries = make_plan(spec)[:40]
    gen = ProceduralGenerator(spec.procedural)
    samples = run_stages([LabelStage()], gen.generate(entries))
    vs = VerifyStage(spec.verify, audit=sel)
    out = vs.process(samples)
    for s in out:
        p = s.params
        chosen = sel.selected(s.key, (p["lighting"], p["accessory"], p["class"]))
        has = any(v["stage"] == "verify" for v in s.verdicts)
        assert has == chosen, s.key
        assert not s.quarantined  # an audit records disagreements; the policy does not act on a sample
    assert 0 < sum(any(v["stage"] == "verify" for v in s.verdicts) for s in out) < len(out)
    sec = vs.finalize(None, [s.to_json() for s in out])
    assert sec.data["mode"] == "audit" and sec.data["audit"]["audited_images"] == sel.target
    for c in sec.data["by_check"].values():
        if c["agreement"] is not None:
            assert c["interval"][0] <= c["agreement"] <= c["interval"][1]
    assert "95% interval" in sec.markdown and "stratified by lighting x accessory x class" in sec.markdown
    assert np.isfinite(sec.data["by_check"]["face"]["half_width"])
