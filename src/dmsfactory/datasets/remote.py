"""Remote dataset output through fsspec: write shards locally, then upload them atomically.

``output.dir`` (or ``--out``) may be a URL: ``s3://bucket/prefix``, ``gs://…``, ``memory://…``,
``file:///abs/path`` or anything else fsspec knows (its backend package must be installed, e.g.
``s3fs`` for ``s3://``). A plain path (no ``scheme://``) is written in place and never goes through
this module.

How a remote run works (:class:`RemoteDataset`):

1. A local *staging* directory mirrors the remote dataset (default
   ``$DMSFACTORY_STAGING/<sha of url>`` or ``~/.cache/dmsfactory/staging/<sha of url>``). The shard
   writer (:mod:`dmsfactory.datasets.shards`) works there exactly as for a local run.
2. :meth:`RemoteDataset.pull` copies finished batches of the same spec (remote
   ``.progress/<shard>.json`` + the tars it names, verified by sha256) into staging, so the
   ordinary resume logic skips them. A remote record whose files are missing or differ is ignored
   and that batch is made again.
3. After a batch is written, :meth:`RemoteDataset.push_batch` uploads its tar(s) and then its
   progress record: a remote progress record therefore implies its shards are complete.
4. :meth:`RemoteDataset.push_final` uploads card, reports and finally ``manifest.json`` (the
   "dataset complete" marker) and deletes remote shards that are not in the plan.

Atomicity: object stores (s3, gcs, azure, memory) make an object visible only when its upload
completes, so a file is written directly. On file-like backends (file, sftp, smb, hdfs, …) a file
is written to ``<name>.partial-<random>`` and renamed into place. Every upload is checked by size.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from dmsfactory.datasets.shards import PROGRESS_DIR, QUARANTINE_DIR, sha256_file
from dmsfactory.errors import UserError

OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory", "oci", "r2"}
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
FINAL_FILES = ("README.md",)  # besides card/* and top-level *.json reports; manifest.json goes last


class RemoteOutputError(UserError, ValueError):
    """A remote output location that cannot be used as asked (message names the URL)."""


def is_url(location: str | os.PathLike) -> bool:
    """True for ``scheme://…`` locations (handled by fsspec), False for plain paths."""
    return bool(_URL.match(str(location)))


def default_staging(url: str) -> Path:
    base = os.environ.get("DMSFACTORY_STAGING") or str(Path.home() / ".cache" / "dmsfactory" / "staging")
    return Path(base) / hashlib.sha256(url.encode()).hexdigest()[:16]


class RemoteDataset:
    """A dataset directory at an fsspec URL, mirrored by a local staging directory."""

    def __init__(self, url: str, staging: str | Path | None = None, storage_options: dict[str, Any] | None = None):
        if not is_url(url):
            raise RemoteOutputError(f"output.dir: {url!r} is not a URL (expected scheme://…, e.g. s3://bucket/prefix)")
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise RemoteOutputError(f"output.dir: cannot open {url!r} with fsspec: {e}") from None
        self.root = self.root.rstrip("/")
        protos = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        self.atomic_put = any(p in OBJECT_STORES for p in protos)
        self.staging = Path(staging) if staging else default_staging(self.url)

    # ---- paths ----
    def rpath(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def url_of(self, rel: str = "") -> str:
        return f"{self.url}/{rel}" if rel else self.url

    def _exists(self, rel: str) -> bool:
        try:
            return self.fs.exists(self.rpath(rel))
        except OSError:
            return False

    def _read_json(self, rel: str) -> Any | None:
        try:
            with self.fs.open(self.rpath(rel), "rb") as f:
                return json.loads(f.read())
        except (FileNotFoundError, OSError, ValueError):
            return None

    def _list(self, rel_dir: str, suffix: str) -> list[str]:
        """Relative paths of files directly under ``rel_dir`` ending in ``suffix``."""
        try:
            names = self.fs.ls(self.rpath(rel_dir), detail=False)
        except (FileNotFoundError, OSError):
            return []
        out = []
        for n in names:
            base = str(n).rstrip("/").rsplit("/", 1)[-1]
            if base.endswith(suffix) and ".partial" not in base:
                out.append(f"{rel_dir}/{base}" if rel_dir else base)
        return sorted(out)

    # ---- transfer ----
    def put(self, local: Path, rel: str) -> None:
        """Upload one file so that readers see either nothing/the old file or the complete new one."""
        size = local.stat().st_size
        dest = self.rpath(rel)
        parent = dest.rsplit("/", 1)[0]
        try:
            self.fs.makedirs(parent, exist_ok=True)
        except (OSError, NotImplementedError):  # object stores have no directories
            pass
        if self.atomic_put:
            self.fs.put_file(str(local), dest)
        else:
            tmp = f"{dest}.partial-{uuid.uuid4().hex[:8]}"
            self.fs.put_file(str(local), tmp)
            try:
                self.fs.mv(tmp, dest)
            except Exception:
                try:
                    self.fs.rm(tmp)
                finally:
                    raise
        got = self.fs.size(dest)
        if got != size:
            raise OSError(f"upload of {local.name} to {self.url_of(rel)} has {got} bytes, expected {size}")

    def get(self, rel: str, local: Path, sha256: str | None = None) -> bool:
        """Download one file via a ``.partial`` file; with ``sha256`` keep it only if it matches."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".partial")
        try:
            self.fs.get_file(self.rpath(rel), str(tmp))
        except (FileNotFoundError, OSError):
            tmp.unlink(missing_ok=True)
            return False
        if sha256 is not None and sha256_file(tmp) != sha256:
            tmp.unlink()
            return False
        os.replace(tmp, local)
        return True

    # ---- dataset-level operations ----
    def check_spec(self, spec_hash: str, overwrite: bool) -> None:
        """Refuse to mix two specs' datasets at one URL (unless ``overwrite``)."""
        m = self._read_json("manifest.json")
        old = (m or {}).get("spec_hash")
        if old and old != spec_hash and not overwrite:
            raise RemoteOutputError(
                f"{self.url} holds a dataset of another spec (hash {old[:10]}); pick a new output URL or pass --overwrite"
            )

    def clear(self) -> int:
        """Delete remote shards, quarantine shards, progress records, cached results and manifest."""
        rels = self._list("", ".tar") + self._list(QUARANTINE_DIR, ".tar") + self._list(PROGRESS_DIR, ".json")
        rels += self._list(".prefect-results", "")
        if self._exists("manifest.json"):
            rels.append("manifest.json")
        for rel in rels:
            self.fs.rm(self.rpath(rel))
        return len(rels)

    def _fetch_record(self, rec: dict[str, Any]) -> bool:
        """Make the files of one batch record present and intact in staging; False if impossible."""
        for part in ("shard", "quarantine"):
            info = rec.get(part)
            if not info:
                continue
            local = self.staging / info["path"]
            if local.is_file() and sha256_file(local) == info["sha256"]:
                continue
            if not self.get(info["path"], local, sha256=info["sha256"]):
                return False
        return True

    def pull(self, spec_hash: str) -> list[str]:
        """Copy the remote's finished batches of ``spec_hash`` into staging; returns their names."""
        self.staging.mkdir(parents=True, exist_ok=True)
        got = []
        for rel in self._list(PROGRESS_DIR, ".json"):
            rec = self._read_json(rel)
            if not isinstance(rec, dict) or rec.get("spec_hash") != spec_hash or "name" not in rec:
                continue
            if not self._fetch_record(rec):
                continue
            p = self.staging / PROGRESS_DIR / f"{rec['name']}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".json.partial")
            tmp.write_text(json.dumps(rec, sort_keys=True))
            os.replace(tmp, p)
            got.append(rec["name"])
        return got

    def pull_records(self, records: list[dict[str, Any]]) -> None:
        """Before finalising: fetch batches another machine wrote (multi-node runs)."""
        for rec in records:
            if not self._fetch_record(rec):
                raise RemoteOutputError(f"{self.url}: batch {rec.get('name')} is missing or corrupt remotely")

    def push_batch(self, rec: dict[str, Any]) -> bool:
        """Upload one finished batch (tars, then its progress record). False if it was already there."""
        name = rec["name"]
        prel = f"{PROGRESS_DIR}/{name}.json"
        local_prog = self.staging / prel
        if not local_prog.is_file():
            raise RemoteOutputError(f"batch {name}: no progress record in staging {self.staging}")
        remote_rec = self._read_json(prel)
        parts = [rec[p] for p in ("shard", "quarantine") if rec.get(p)]
        if remote_rec is not None and _same_files(remote_rec, rec):
            if all(self._exists(i["path"]) and self.fs.size(self.rpath(i["path"])) == i["bytes"] for i in parts):
                return False
        for info in parts:
            self.put(self.staging / info["path"], info["path"])
        # a part that this batch no longer has (e.g. quarantine now empty) must not linger remotely
        for part, sub in (("shard", ""), ("quarantine", QUARANTINE_DIR)):
            if not rec.get(part):
                rel = f"{sub}/{name}.tar" if sub else f"{name}.tar"
                if self._exists(rel):
                    self.fs.rm(self.rpath(rel))
        self.put(local_prog, prel)
        return True

    def push_final(self, names: set[str]) -> list[str]:
        """Upload card + reports, delete remote batches not in ``names``, then upload manifest.json."""
        for rel in self._list("", ".tar") + self._list(QUARANTINE_DIR, ".tar") + self._list(PROGRESS_DIR, ".json"):
            stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
            if stem not in names:
                self.fs.rm(self.rpath(rel))
        uploaded = []
        files = [p for p in self.staging.glob("card/**/*") if p.is_file()]
        files += [self.staging / f for f in FINAL_FILES if (self.staging / f).is_file()]
        files += [p for p in self.staging.glob("*.json") if p.name != "manifest.json"]
        for p in sorted(files):
            rel = p.relative_to(self.staging).as_posix()
            self.put(p, rel)
            uploaded.append(rel)
        self.put(self.staging / "manifest.json", "manifest.json")
        uploaded.append("manifest.json")
        return uploaded


def _same_files(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for part in ("shard", "quarantine"):
        x, y = a.get(part), b.get(part)
        if (x is None) != (y is None):
            return False
        if x is not None and (x.get("sha256") != y.get("sha256") or x.get("path") != y.get("path")):
            return False
    return a.get("spec_hash") == b.get("spec_hash") and a.get("planned_keys") == b.get("planned_keys")


def upload_dataset(local_dir: str | Path, url: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """Upload a finished local dataset directory to ``url`` (shards first, manifest last)."""
    local_dir = Path(local_dir)
    if not (local_dir / "manifest.json").is_file():
        raise RemoteOutputError(f"{local_dir}: no manifest.json — not a finished dmsfactory dataset")
    rd = RemoteDataset(url, staging=local_dir, storage_options=storage_options)
    names = set()
    for p in sorted((local_dir / PROGRESS_DIR).glob("*.json")):
        rec = json.loads(p.read_text())
        rd.push_batch(rec)
        names.add(rec["name"])
    rd.push_final(names)
    return sorted(names)
