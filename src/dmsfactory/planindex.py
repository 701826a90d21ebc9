"""The full plan as an index: identities and per-index conditions, plan entries made on demand.

Two checks look beyond the batch they run in: the privacy gate judges an *identity* on views chosen
from all of its planned images (:mod:`dmsfactory.privacy.identity`), and the verification audit draws
a stratified sample over every planned image (:mod:`dmsfactory.labelers.audit`). Both must give the
same answer whichever batch, worker process or ``--limit`` asks, so both read this index of the
**full** plan, never a ``--limit`` preview. Building it is the cheap part of :func:`make_plan`
(identities and the stratified condition lists); an entry is made only when asked for, so a worker
process does not hold or build the whole plan (50,000 entries take ~10 s and ~90 MB).
"""

from __future__ import annotations

from typing import Any

from dmsfactory.plan import (
    ShardJob,
    condition,
    entry_key,
    make_entry,
    make_identities,
    plan_conditions,
    plan_indices,
    renders_per_shard,
)
from dmsfactory.spec import DatasetSpec, PerSpecCache


class PlanIndex:
    def __init__(self, spec: DatasetSpec):
        self.spec = spec
        self.spec_hash = spec.content_hash()
        self.idents = make_identities(spec)
        self.depth = spec.identities.images_per_identity
        self.conds = plan_conditions(spec, self.idents)  # columns: a few pointers per index
        self._by_id = {ident.id: i for i, ident in enumerate(self.idents)}

    def __len__(self) -> int:
        return len(self.idents) * self.depth

    def key(self, index: int) -> str:
        return entry_key(self.spec_hash, index)

    def entry(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"plan index {index} outside 0..{len(self) - 1}")
        return make_entry(self.spec, self.spec_hash, index, self.idents[index // self.depth], condition(self.conds, index))

    def identity_indices(self, identity: str) -> range:
        i = self._by_id.get(identity)
        if i is None:
            raise KeyError(f"identity {identity!r} is not in the plan of spec {self.spec_hash[:10]}")
        return range(i * self.depth, (i + 1) * self.depth)

    def identity_entries(self, identity: str) -> list[dict[str, Any]]:
        return [self.entry(i) for i in self.identity_indices(identity)]

    def stratum(self, index: int) -> tuple[str, str, str]:
        """(lighting, accessory, class) of a plan index: the verification audit's strata."""
        c = self.conds
        return c["lighting"][index], c["accessory"][index], c["class"][index]

    def split(self, index: int) -> str:
        return self.idents[index // self.depth].split


_INDEX = PerSpecCache(PlanIndex)


def plan_index(spec: DatasetSpec) -> PlanIndex:
    """The process-wide index of ``spec``'s full plan (built once per process and spec)."""
    return _INDEX(spec)


class LazyEntries:
    """A batch's plan entries, made when iterated (in the worker that renders them): the flow process
    holds indices, not the plan (50,000 entries are ~90 MB). Pickles as (spec, indices)."""

    def __init__(self, spec: DatasetSpec, indices: tuple[int, ...]):
        self.spec = spec
        self.indices = tuple(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        idx = plan_index(self.spec)
        return (idx.entry(i) for i in self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return plan_index(self.spec).entry(self.indices[i])

    def keys(self) -> list[str]:
        h = self.spec.content_hash()
        return [entry_key(h, i) for i in self.indices]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LazyEntries) and other.indices == self.indices and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.indices)


def lazy_shard_jobs(spec: DatasetSpec, limit: int | None = None) -> list[ShardJob]:
    """:func:`dmsfactory.plan.shard_jobs` of the (limited) plan, with lazy entries: the same batches,
    names and keys, without building the plan."""
    idx = plan_index(spec)
    size = renders_per_shard(spec)
    jobs = []
    wanted = plan_indices(spec, limit, idx.idents, idx.conds)
    for split in ("train", "val", "test"):
        ids = [i for i in wanted if idx.split(i) == split]
        for s in range(0, len(ids), size):
            jobs.append(ShardJob(split, s // size, LazyEntries(spec, tuple(ids[s : s + size]))))
    return jobs
