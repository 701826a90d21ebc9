"""Deterministic seeds from names: every random draw of the factory starts here.

``seed("identity", spec_seed, i)`` is the first 63 bits of sha256 of the parts joined by ``/``, so a
draw depends on what it is for and never on the order in which other draws happen. Moved here from
``plan.py`` (issue 22) so that the clip planner and driver models need not import the planner's
private helpers.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def seed(*parts: Any) -> int:
    h = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(seed(*parts))
