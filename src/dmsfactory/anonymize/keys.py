"""Keyed recovery: the original pixels of every changed region, encrypted with AES-256-GCM.

Key file (``dmsfactory keygen KEYFILE``; the user keeps it, it is never written to the output)::

    dmsfactory-anonymize-key v1
    <64 hex digits: 32 random bytes from os.urandom>

Record container (``DIR/recovery/<unit>.rec``): a sequence of records, each
``uint32 length (big endian) | record``; a record is

    b"DMR1" | key id (8 bytes) | nonce (12 bytes, fresh from os.urandom per record) |
    uint32 header length | header (UTF-8 JSON) | AES-GCM ciphertext + 16-byte tag

The header (frame key, frame shape, changed regions, sha256 of the original and of the anonymised
frame, compression) is the GCM associated data: changing any byte of a record (header, nonce, key
id or ciphertext) makes decryption fail. The plaintext is zlib-compressed raw uint8 pixels of the
regions, in header order. The key id is ``HMAC-SHA256(key, "dmsfactory-anonymize-key-id")[:8]``: a
different key is recognised before decrypting (``WrongKeyError``); a record that fails
authentication under the right key id is ``TamperedRecordError``.

Random nonces (96 bits) are safe for about 2^32 records per key (NIST SP 800-38D); they also make
the record files differ between two runs of the same input, which is why records live beside the
shards, not in them (the shards stay byte-identical run to run).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np

KEY_HEADER = "dmsfactory-anonymize-key v1"
MAGIC = b"DMR1"
_KEY_ID_LABEL = b"dmsfactory-anonymize-key-id"


class RecoveryError(Exception):
    """Base of every recovery failure; the CLI prints it (with its class name) and exits 2."""

    user_error = True

    def __str__(self) -> str:
        return f"{type(self).__name__}: {super().__str__()}"


class KeyFileError(RecoveryError):
    """The key file is missing, unreadable or not a dmsfactory key."""


class WrongKeyError(RecoveryError):
    """The records were made with a different key."""


class TamperedRecordError(RecoveryError):
    """A record failed authentication (modified, truncated or corrupted)."""


class RecoveryMismatchError(RecoveryError):
    """The anonymised frame or the restored frame does not match the hashes in its record."""


def key_id(key: bytes) -> bytes:
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:8]


def generate_key_file(path: str | Path, overwrite: bool = False) -> Path:
    """Write a new 256-bit key to ``path`` (mode 0600); refuses to replace an existing file."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise KeyFileError(f"{p}: exists; a key file is never overwritten (records made with it would become "
                           "unrecoverable). Choose another path.")
    p.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(str(p), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{KEY_HEADER}\n{key.hex()}\n")
    return p


def load_key(path: str | Path) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise KeyFileError(f"{p}: key file not found; create one with `dmsfactory keygen {p}` and keep it safe")
    try:
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{p}: cannot read the key file ({e})") from None
    if len(lines) != 2 or lines[0] != KEY_HEADER:
        raise KeyFileError(f"{p}: not a dmsfactory key file (expected the line '{KEY_HEADER}' and 64 hex digits)")
    try:
        key = bytes.fromhex(lines[1])
    except ValueError:
        raise KeyFileError(f"{p}: the key line is not hexadecimal") from None
    if len(key) != 32:
        raise KeyFileError(f"{p}: the key must be 32 bytes (64 hex digits), got {len(key)}")
    return key


def frame_hash(img: np.ndarray) -> str:
    a = np.ascontiguousarray(img)
    h = hashlib.sha256()
    h.update(repr((a.shape, str(a.dtype))).encode())
    h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class Record:
    header: dict[str, Any]
    regions: list[np.ndarray]
    extra: list[bytes] | None = None  # further secret blobs (the diffusion route's keys), header order


def seal(key: bytes, frame_key: str, original: np.ndarray, anonymised: np.ndarray,
         regions: list[tuple[int, int, int, int]], extra: dict[str, Any] | None = None,
         blobs: list[bytes] | None = None) -> bytes:
    """One encrypted record holding ``original``'s pixels in ``regions`` (x0, y0, x1, y1) and, encrypted
    after them, any ``blobs`` (e.g. the diffusion route's noise map + embedding)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    h, w = original.shape[:2]
    regs = []
    payload = io.BytesIO()
    for x0, y0, x1, y1 in regions:
        x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
        if x1 <= x0 or y1 <= y0:
            continue
        payload.write(np.ascontiguousarray(original[y0:y1, x0:x1]).tobytes())
        regs.append([x0, y0, x1, y1])
    for b in blobs or []:
        payload.write(b)
    header = {"frame": frame_key, "shape": list(original.shape), "dtype": str(original.dtype), "regions": regs,
              "sha256_original": frame_hash(original), "sha256_anonymised": frame_hash(anonymised),
              "compression": "zlib", "blobs": [len(b) for b in blobs or []], **(extra or {})}
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    nonce = os.urandom(12)
    kid = key_id(key)
    aad = MAGIC + kid + nonce + struct.pack(">I", len(hb)) + hb
    ct = AESGCM(key).encrypt(nonce, zlib.compress(payload.getvalue(), 6), aad)
    return aad + ct


def open_record(key: bytes, blob: bytes, where: str = "record") -> Record:
    """Authenticate and decrypt one record; named errors on a wrong key or any modification."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(blob) < 28 + 16 or blob[:4] != MAGIC:
        raise TamperedRecordError(f"{where}: not a dmsfactory recovery record (bad magic or truncated)")
    kid, nonce = blob[4:12], blob[12:24]
    (hl,) = struct.unpack(">I", blob[24:28])
    if 28 + hl + 16 > len(blob):
        raise TamperedRecordError(f"{where}: header length {hl} runs past the record (truncated or modified)")
    if not hmac.compare_digest(kid, key_id(key)):
        raise WrongKeyError(f"{where}: made with a different key (key id {kid.hex()}, this key's is "
                            f"{key_id(key).hex()}); nothing was restored")
    aad = blob[: 28 + hl]
    try:
        plain = AESGCM(key).decrypt(nonce, blob[28 + hl:], aad)
    except InvalidTag:
        raise TamperedRecordError(f"{where}: failed authentication (AES-GCM tag): the record was modified or "
                                  "corrupted; nothing was restored") from None
    header = json.loads(blob[28: 28 + hl])
    raw = zlib.decompress(plain)
    c = int(header["shape"][2]) if len(header["shape"]) > 2 else 1
    regions, off = [], 0
    for x0, y0, x1, y1 in header["regions"]:
        n = (y1 - y0) * (x1 - x0) * c
        a = np.frombuffer(raw[off: off + n], np.dtype(header["dtype"]))
        if a.size != n:
            raise TamperedRecordError(f"{where}: payload shorter than its regions")
        regions.append(a.reshape(y1 - y0, x1 - x0, c) if c > 1 else a.reshape(y1 - y0, x1 - x0))
        off += n
    extra = []
    for n in header.get("blobs", []):
        extra.append(raw[off: off + n])
        off += n
    return Record(header, regions, extra)


def restore(record: Record, anonymised: np.ndarray, where: str = "frame") -> np.ndarray:
    """The original frame from the anonymised one and its decrypted record (hash-checked)."""
    hd = record.header
    if list(anonymised.shape) != list(hd["shape"]):
        raise RecoveryMismatchError(f"{where}: anonymised frame has shape {anonymised.shape}, its record says {hd['shape']}")
    if frame_hash(anonymised) != hd["sha256_anonymised"]:
        raise RecoveryMismatchError(f"{where}: the anonymised frame differs from the one this record was made for "
                                    "(re-encoded or edited after anonymisation?)")
    out = anonymised.copy()
    for (x0, y0, x1, y1), px in zip(hd["regions"], record.regions):
        out[y0:y1, x0:x1] = px
    if frame_hash(out) != hd["sha256_original"]:
        raise RecoveryMismatchError(f"{where}: restored frame does not hash to the original's sha256")
    return out


class RecordWriter:
    """Appends length-prefixed records to ``path.partial``; :meth:`commit` renames it atomically."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".partial")
        self._f: BinaryIO | None = open(self.tmp, "wb")
        self.count = 0

    def write(self, blob: bytes) -> None:
        assert self._f is not None
        self._f.write(struct.pack(">I", len(blob)))
        self._f.write(blob)
        self.count += 1

    def commit(self) -> Path:
        assert self._f is not None
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        if self.tmp.exists():
            self.tmp.unlink()


def read_records(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(index, record bytes) of a record file; a truncated file is a TamperedRecordError."""
    p = Path(path)
    data = p.read_bytes()
    off = i = 0
    while off < len(data):
        if off + 4 > len(data):
            raise TamperedRecordError(f"{p}: truncated after record {i}")
        (n,) = struct.unpack(">I", data[off: off + 4])
        off += 4
        if off + n > len(data):
            raise TamperedRecordError(f"{p}: record {i} truncated ({len(data) - off} of {n} bytes)")
        yield i, data[off: off + n]
        off += n
        i += 1
