"""Checkpoints that are either complete and verified or refused.

A checkpoint file is the ``torch.save`` payload followed by a trailer: a magic marker and the SHA-256 of the
payload. It is written to a temporary file in the same folder, flushed and fsynced, then renamed over the
target (atomic on POSIX). A file cut short by a kill, a full disk or a copy error fails the trailer check and
raises :class:`CheckpointError` naming the file; it never loads as a valid (and silently wrong) model.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

MAGIC = b"SGCKPT01"
TRAILER = len(MAGIC) + 32


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt; the message names the file."""


def save_checkpoint(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` atomically with a checksum trailer."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.write(MAGIC)
        fh.write(hashlib.sha256(data).digest())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    raw = path.read_bytes()
    if len(raw) < TRAILER or raw[-TRAILER:-32] != MAGIC:
        raise CheckpointError(f"{path}: incomplete or not a stream-guard checkpoint (no end marker)")
    data, digest = raw[:-TRAILER], raw[-32:]
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt or was cut short)")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: checkpoint payload unreadable ({exc})") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: checkpoint payload is not a dict")
    return payload
