"""DP-SGD: ledger vs Opacus' accountant, budget stop, delta checks, determinism."""

import json

import pytest
import torch
from torch import nn

from dmsfactory.privacy.dp import PrivacyLedger, default_delta, dp_sgd_fit, epsilon_after

torch.set_num_threads(1)


def _data(n=200, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long()
    return torch.utils.data.TensorDataset(x, y)


def _loss(m, batch):
    x, y = batch
    if len(x) == 0:
        return sum((p * 0).sum() for p in m.parameters())
    return nn.functional.cross_entropy(m(x), y)


def _fit(tmp_path=None, seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ds = _data()
    ledger = PrivacyLedger(tmp_path / "ledger.json" if tmp_path else None, method="dp_sgd")
    args = dict(batch_size=20, epochs=3, target_epsilon=2.0, delta=1e-4, max_grad_norm=1.0, seed=seed)
    args.update(kw)
    m, info = dp_sgd_fit(model, opt, ds, _loss, ledger=ledger, **args)
    return m, info, ledger


def test_ledger_matches_opacus_and_dp_accounting(tmp_path):
    from opacus.accountants import RDPAccountant
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    _, info, ledger = _fit(tmp_path)
    doc = json.loads((tmp_path / "ledger.json").read_text())
    entries = doc["entries"]
    assert len(entries) == 3
    for e in entries:
        for k in ("accountant", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon"):
            assert k in e, k
        assert e["accountant"] == "rdp"
        assert e["delta"] == 1e-4
    # steps after epoch k = k / sample_rate (Poisson: one epoch = 1/q steps)
    q = entries[0]["sample_rate"]
    assert q == pytest.approx(0.1)
    assert [e["steps"] for e in entries] == [10, 20, 30]
    eps = [e["epsilon"] for e in entries]
    assert eps[0] < eps[1] < eps[2] <= 2.0
    assert eps[2] > 1.9  # make_private_with_epsilon calibrates σ so that 3 epochs reach the target
    for e in entries:
        ref = RDPAccountant()
        ref.history = [(e["noise_multiplier"], e["sample_rate"], e["steps"])]
        assert e["epsilon"] == pytest.approx(ref.get_epsilon(1e-4), rel=1e-9)
        # an independent implementation (Google dp-accounting) agrees to < 1 %
        g = RdpAccountant()
        g.compose(dp_accounting.PoissonSampledDpEvent(e["sample_rate"], dp_accounting.GaussianDpEvent(e["noise_multiplier"])), e["steps"])
        assert e["epsilon"] == pytest.approx(g.get_epsilon(1e-4), rel=1e-2)


def test_training_stops_at_budget(tmp_path):
    from opacus.accountants import RDPAccountant

    # σ = 1.0, q = 0.1: ε after 1 epoch (10 steps) ≈ 1.5, after 2 epochs ≈ 2.3 (δ=1e-4); budget 2.0 -> 1 epoch
    ref = RDPAccountant()
    ref.history = [(1.0, 0.1, 10)]
    e1 = ref.get_epsilon(1e-4)
    ref.history = [(1.0, 0.1, 20)]
    e2 = ref.get_epsilon(1e-4)
    budget = (e1 + e2) / 2
    _, info, ledger = _fit(tmp_path, epochs=10, noise_multiplier=1.0, target_epsilon=budget)
    assert info["epochs"] == 1 and info["steps"] == 10
    assert info["epsilon"] <= budget
    assert info["stopped"]["reason"] == "budget" and info["stopped"]["epsilon_if_continued"] > budget
    last = json.loads((tmp_path / "ledger.json").read_text())["entries"][-1]
    assert last["stopped"] == "budget" and last["epsilon"] == pytest.approx(e1, rel=1e-9)
    # a budget too small for even one epoch: no step is taken, ε stays 0
    _, info0, _ = _fit(None, epochs=5, noise_multiplier=1.0, target_epsilon=0.05)
    assert info0["steps"] == 0 and info0["epsilon"] == 0.0


def test_epsilon_after_does_not_touch_accountant():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(1.1, 0.05, 40)]
    before = list(acc.history)
    e = epsilon_after(acc, 1e-5, 1.1, 0.05, 20)
    assert acc.history == before
    ref = RDPAccountant()
    ref.history = [(1.1, 0.05, 60)]
    assert e == pytest.approx(ref.get_epsilon(1e-5))


def test_delta_must_be_below_one_over_n():
    with pytest.raises(ValueError, match="train.delta"):
        _fit(None, delta=1 / 150)
    assert default_delta(200) == pytest.approx(1 / 2000)
    with pytest.raises(ValueError, match="empty"):
        default_delta(0)


def test_dp_sgd_is_deterministic_and_clips():
    m1, i1, _ = _fit(None, seed=3)
    m2, i2, _ = _fit(None, seed=3)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    m3, _, _ = _fit(None, seed=4)
    assert any(not torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))
    assert i1["noise_multiplier"] > 0.5
    # the returned model is a plain module (no Opacus wrapper, no grad_sample left behind)
    assert not hasattr(m1, "_module")
    assert all(not hasattr(p, "grad_sample") for p in m1.parameters())
