"""Verification as an audit: a seeded, stratified sample of the written images (docs/verify.md).

A renderer's labels are exact by construction, so checking them from pixels measures *realism*
(how well detectors we did not write read the renders), not label correctness. For such backends the
verify stage checks a sample of the images that is large enough to pin every agreement rate down to
``audit_margin`` at ``audit_confidence``; ``verify.rate: 1.0`` checks every image (and applies the
keep/relabel/quarantine policy, which an audit never does: a sample's fate must not depend on whether
it was drawn).

* **Population**: every image the plan will write: each planned render (its source image, when
  augmentation keeps originals) and its augmented views (:func:`dmsfactory.augment.config.image_keys`),
  over the **full** plan (:mod:`dmsfactory.planindex`), so ``--limit``, batches and worker processes
  all see the same selection.
* **Strata**: lighting x accessory x class of the render (its augmented views share them).
* **Size**: Cochran's ``n0 = z^2 p (1 - p) / e^2`` with the worst case ``p = 0.5`` (``e`` =
  ``audit_margin``, ``z`` the two-sided normal quantile of ``audit_confidence``: 2401 for +-2 % at
  95 %), divided by ``audit_measurable`` (the share of audited images on which the least measurable
  check gives agree/disagree rather than undetectable: every rate should get ``n0`` measured
  images), then the finite-population correction ``n = n0 N / (n0 + N - 1)`` (Cochran 1977, eq. 4.2).
  An explicit ``rate`` in (0, 1) gives ``n = ceil(rate N)`` instead.
* **Allocation**: proportional to stratum size by largest remainder (exact counts per stratum).
* **Selection**: in each stratum the ``n_h`` images with the smallest ``sha256(seed, key)``: a simple
  random sample without replacement per stratum, reproducible from the spec alone. An image is
  checked iff its hash is at most its stratum's threshold.
* **Interval** (:func:`wilson_fpc`): for a rate measured on ``n`` units of an estimated measurable
  population ``N`` (``n`` times the population/audited image ratio), the Wilson score interval with
  ``n`` replaced by ``n / f``, ``f = (N - n) / (N - 1)`` the finite-population correction; a census
  (``f = 0``) has zero width. Proportional allocation makes the sample self-weighting, so the
  pooled rate is the stratified estimate up to rounding of the allocation.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from dmsfactory.augment.config import image_keys
from dmsfactory.generators import backend_traits
from dmsfactory.planindex import plan_index
from dmsfactory.spec import PerSpecCache

Stratum = tuple[str, str, str]  # lighting, accessory, class


def cochran_n(margin: float, confidence: float, population: int, measurable: float = 1.0) -> int:
    """Sample size for a +-``margin`` interval at ``confidence`` on a proportion (worst case p = 0.5),
    inflated by 1 / ``measurable`` and corrected for a finite ``population``."""
    if population <= 0:
        return 0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n0 = z * z * 0.25 / (margin * margin) / measurable
    return min(population, math.ceil(n0 * population / (n0 + population - 1)))


def wilson_fpc(agree: int, n: int, population: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """95 % (``confidence``) Wilson score interval of ``agree / n`` with the finite-population
    correction (see the module docstring); None when ``n`` is 0."""
    if n <= 0:
        return None
    p = agree / n
    big_n = max(float(population), float(n))
    f = (big_n - n) / (big_n - 1) if big_n > 1 else 0.0
    if f <= 0:
        return (p, p)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    ne = n / f
    den = 1 + z * z / ne
    centre = (p + z * z / (2 * ne)) / den
    half = z / den * math.sqrt(p * (1 - p) / ne + z * z / (4 * ne * ne))
    return (max(0.0, centre - half), min(1.0, centre + half))


def key_hash(seed: int, key: str) -> int:
    """The audit's draw for one image: the first 8 bytes of sha256("seed:key")."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()[:8], "little")


def allocate(sizes: dict[Stratum, int], n: int) -> dict[Stratum, int]:
    """Proportional allocation of ``n`` by largest remainder; never more than a stratum holds."""
    total = sum(sizes.values())
    if total == 0 or n <= 0:
        return {h: 0 for h in sizes}
    keys = sorted(sizes)
    quota = {h: n * sizes[h] / total for h in keys}
    out = {h: min(sizes[h], int(math.floor(quota[h]))) for h in keys}
    rest = n - sum(out.values())
    for h in sorted(keys, key=lambda h: (-(quota[h] - math.floor(quota[h])), h)):
        if rest <= 0:
            break
        if out[h] < sizes[h]:
            out[h] += 1
            rest -= 1
    return out


@dataclass
class AuditSelection:
    """Which images the verify stage checks (built by :func:`audit_selection` from the full plan)."""

    seed: int
    target: int  # n
    population: int  # N images
    strata: dict[Stratum, dict[str, int]]  # stratum -> {"images": N_h, "audited": n_h, "threshold": hash}
    design: dict[str, Any] = field(default_factory=dict)

    def selected(self, key: str, stratum: Stratum) -> bool:
        s = self.strata.get(stratum)
        if s is None or s["audited"] == 0:
            return False
        return key_hash(self.seed, key) <= s["threshold"]

    def summary(self) -> dict[str, Any]:
        return {
            **self.design,
            "population_images": self.population,
            "audited_images": self.target,
            "strata": len(self.strata),
            "per_stratum": {" / ".join(h): {k: v for k, v in s.items() if k != "threshold"}
                            for h, s in sorted(self.strata.items())},
        }


def audit_mode(spec: Any) -> str:
    """``"audit"`` or ``"all"`` for a spec: ``verify.rate`` 1.0 checks all; None (default) audits the
    backends whose labels are exact by construction (:data:`dmsfactory.generators.TRAITS`)."""
    rate = spec.verify.rate
    if rate is None:
        return "audit" if backend_traits(spec.backend)["exact_labels"] else "all"
    return "all" if rate >= 1.0 else "audit"


def _build(spec: Any) -> AuditSelection:
    cfg = spec.verify
    idx = plan_index(spec)
    aug = spec.augment if spec.augment.enabled else None
    seed = int(spec.seed)
    by_stratum: dict[Stratum, list[int]] = {}
    for i in range(len(idx)):
        h = idx.stratum(i)
        lst = by_stratum.setdefault(h, [])
        for k in image_keys(idx.key(i), aug):
            lst.append(key_hash(seed, k))
    sizes = {h: len(v) for h, v in by_stratum.items()}
    population = sum(sizes.values())
    if cfg.rate is not None and cfg.rate < 1.0:
        n = min(population, math.ceil(cfg.rate * population))
        design = {"mode": "audit", "rule": f"rate {cfg.rate:g} of the images"}
    else:
        n = cochran_n(cfg.audit_margin, cfg.audit_confidence, population, cfg.audit_measurable)
        design = {
            "mode": "audit",
            "rule": (f"+-{cfg.audit_margin:g} at {cfg.audit_confidence:g} on every agreement rate: Cochran n0 = z^2 0.25 / e^2 "
                     f"/ audit_measurable ({cfg.audit_measurable:g}), finite-population corrected"),
        }
    design.update(margin=cfg.audit_margin, confidence=cfg.audit_confidence, measurable=cfg.audit_measurable,
                  strata_by="lighting x accessory x class", seed=seed,
                  interval="Wilson score with finite-population correction (labelers/audit.py)")
    alloc = allocate(sizes, n)
    strata: dict[Stratum, dict[str, int]] = {}
    for h, hashes in by_stratum.items():
        k = alloc[h]
        thr = -1
        if k > 0:
            a = np.array(hashes, np.uint64)
            thr = int(np.partition(a, k - 1)[k - 1])
        strata[h] = {"images": sizes[h], "audited": k, "threshold": thr}
    return AuditSelection(seed, n, population, strata, design)


_SELECTION = PerSpecCache(_build)


def audit_selection(spec: Any) -> AuditSelection:
    """The spec's audit sample (built once per process and spec; a pure function of the spec)."""
    return _SELECTION(spec)
