"""Shards, identity-disjoint splits, manifest, dataset card, readers.

The package is ``dmsfactory.datasets`` (never a top-level ``datasets``, which would shadow
Hugging Face ``datasets``)."""

from dmsfactory.datasets.reader import iter_records, load_manifest, open_shards, shard_paths

__all__ = ["open_shards", "iter_records", "load_manifest", "shard_paths"]
