"""PATE: RDP accountant vs closed form and dp-accounting, q̃ bound, data-dependent bound, aggregation."""

import math

import numpy as np
import pytest

from dmsfactory.privacy.pate import PATEAccountant, aggregate, calibrate_sigma, gnmax, vote_histogram
from dmsfactory.privacy.rdp import (
    DEFAULT_ORDERS,
    RDPAccountant,
    gaussian_composition_epsilon_closed_form,
    gnmax_log_q,
    gnmax_rdp_data_dependent,
    gnmax_rdp_data_independent,
    rdp_to_epsilon,
)


@pytest.mark.parametrize("sigma,queries,delta", [(40.0, 500, 1e-5), (10.0, 100, 1e-6), (100.0, 2000, 1e-5)])
def test_data_independent_epsilon_equals_closed_form(sigma, queries, delta):
    # total RDP c·λ with c = Q/σ²; classic conversion minimised over real λ: c + 2 sqrt(c log(1/δ))
    c = queries / sigma**2
    closed = gaussian_composition_epsilon_closed_form(c, delta)
    lam = np.linspace(1.0001, 2000, 2_000_001)
    eps, _ = rdp_to_epsilon(lam, gnmax_rdp_data_independent(lam, sigma) * queries, delta, "classic")
    assert eps == pytest.approx(closed, rel=1e-6)
    # on the default grid the accountant can only be a little above the continuous optimum
    acc = RDPAccountant()
    acc.add(gnmax_rdp_data_independent(DEFAULT_ORDERS, sigma), queries)
    assert closed <= acc.get_epsilon(delta, "classic") <= closed * 1.02


@pytest.mark.parametrize("sigma,queries,delta", [(40.0, 500, 1e-5), (10.0, 100, 1e-6), (150.0, 3000, 1e-5)])
def test_data_independent_matches_dp_accounting(sigma, queries, delta):
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    ref = RdpAccountant(orders=list(DEFAULT_ORDERS))
    # GNMax's vote histogram has L2 sensitivity √2: a Gaussian with noise multiplier σ/√2
    ref.compose(dp_accounting.GaussianDpEvent(noise_multiplier=sigma / math.sqrt(2)), queries)
    acc = PATEAccountant(sigma=sigma)
    for _ in range(queries):
        acc.charge_answer(np.array([3, 3, 3, 3]))  # tied votes: data-dependent = data-independent
    assert acc.epsilon(delta) == pytest.approx(ref.get_epsilon(delta), rel=1e-9)
    assert acc.epsilon_data_dependent(delta) == pytest.approx(acc.epsilon(delta), rel=1e-9)


def test_log_q_is_the_erfc_union_bound_and_bounds_the_error_rate():
    votes = np.array([30, 22, 5, 1])
    sigma = 6.0
    q = sum(0.5 * math.erfc((30 - v) / (2 * sigma)) for v in (22, 5, 1))
    assert math.exp(gnmax_log_q(votes, sigma)) == pytest.approx(q, rel=1e-9)
    rng = np.random.default_rng(0)
    wrong = np.mean(gnmax(np.tile(votes, (200_000, 1)), sigma, rng) != 0)
    assert wrong <= q  # union bound holds ...
    assert wrong >= 0.5 * q  # ... and is not vacuous here
    assert gnmax_log_q(np.array([5, 5, 0]), 1.0) == 0.0 or gnmax_log_q(np.array([5, 5, 0]), 1.0) > -1


def test_leaked_labels_unanimous_teachers_cost_little():
    """Teachers that agree (e.g. all saw the label) make the data-dependent cost tiny."""
    sigma, delta, q = 40.0, 1e-5, 500
    unanimous = np.array([250, 0, 0, 0, 0, 0])
    split = np.array([50, 50, 50, 50, 25, 25])
    a_un, a_split = PATEAccountant(sigma=sigma), PATEAccountant(sigma=sigma)
    for _ in range(q):
        a_un.charge_answer(unanimous)
        a_split.charge_answer(split)
    indep = a_un.epsilon(delta)
    assert a_un.epsilon(delta) == pytest.approx(a_split.epsilon(delta))
    assert a_un.epsilon_data_dependent(delta) < 0.15 * indep
    assert a_split.epsilon_data_dependent(delta) == pytest.approx(indep)


def test_data_dependent_bound_properties():
    sigma = 20.0
    prev = None
    for gap in (0, 20, 40, 80, 120, 200):
        lq = gnmax_log_q(np.array([100 + gap, 100, 0]), sigma)
        dep = gnmax_rdp_data_dependent(DEFAULT_ORDERS, sigma, lq)
        indep = gnmax_rdp_data_independent(DEFAULT_ORDERS, sigma)
        assert np.all(dep <= indep + 1e-12) and np.all(dep >= 0)
        if prev is not None:
            assert np.all(dep <= prev + 1e-12)  # a clearer winner never costs more
        prev = dep
    assert prev[10] < 0.01 * gnmax_rdp_data_independent(DEFAULT_ORDERS, sigma)[10]
    with pytest.raises(ValueError):
        gnmax_rdp_data_dependent(DEFAULT_ORDERS, sigma, 0.5)


def test_vote_histogram_and_plurality():
    preds = np.array([[0, 1, 2], [0, 1, 1], [2, 1, 1]])
    v = vote_histogram(preds, 3)
    assert v.tolist() == [[2, 0, 1], [0, 3, 0], [0, 2, 1]]
    assert gnmax(v, 0.0, np.random.default_rng(0)).tolist() == [0, 1, 1]
    with pytest.raises(ValueError):
        vote_histogram(np.array([[3]]), 3)


def test_calibrated_sigma_reaches_budget_and_aggregation_stops():
    delta = 1e-5
    sigma = calibrate_sigma(2.0, delta, 100)
    acc = RDPAccountant()
    acc.add(gnmax_rdp_data_independent(DEFAULT_ORDERS, sigma), 100)
    assert acc.get_epsilon(delta) == pytest.approx(2.0, rel=1e-3)
    assert acc.get_epsilon(delta) <= 2.0
    votes = np.tile(np.array([int(6 * sigma), 0, 0]), (300, 1))
    res = aggregate(votes, sigma=sigma, delta=delta, budget_epsilon=2.0, rng=np.random.default_rng(0))
    assert res.stopped_at == 100 and res.answered.sum() == 100
    assert res.epsilon <= 2.0 and res.ledger[-1]["stopped"] == "budget"
    for e in res.ledger:
        for k in ("accountant", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon"):
            assert k in e
    assert (res.labels[:100] == 0).mean() > 0.9


def test_confident_gnmax_skips_unsure_queries_and_charges_checks():
    delta = 1e-5
    votes = np.array([[50, 0, 0]] * 50 + [[17, 17, 16]] * 50)
    res = aggregate(votes, sigma=5.0, delta=delta, budget_epsilon=100.0, rng=np.random.default_rng(1),
                    threshold=40.0, sigma_threshold=2.0)
    assert res.answered[:50].all() and not res.answered[50:].any()
    plain = PATEAccountant(sigma=5.0)
    for _ in range(50):
        plain.charge_answer(votes[0])
    assert res.epsilon > plain.epsilon(delta)  # the 100 threshold checks cost something
    with pytest.raises(ValueError, match="threshold"):
        aggregate(votes, sigma=5.0, delta=delta, budget_epsilon=1.0, rng=np.random.default_rng(0), threshold=3.0)
