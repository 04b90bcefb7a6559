"""Reading an offline W&B run back without a server: its ``run-<id>.wandb`` transaction log.

W&B 0.31 has no Python reader of its own (``wandb.Api`` is online-only, ``wandb.sdk.internal.datastore``
is gone, and an offline run writes no ``wandb-summary.json``). The file is a LevelDB-style log: a 7-byte
header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC32, length, type: 1 full, 2 first, 3 middle, 4 last); a record is one ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> Iterator[Any]:
    """The protobuf records of one ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path}: not a W&B 0.x transaction log"
    pos, buf = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def _value(item: Any) -> tuple[tuple[str, ...], Any]:
    key = tuple(item.nested_key) if item.nested_key else (item.key,)
    return key, json.loads(item.value_json)


def _set(tree: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for k in key[:-1]:
        tree = tree.setdefault(k, {})
    tree[key[-1]] = value


@dataclass
class OfflineRun:
    """What an offline run recorded: config, tags, group and name, history rows, summary, artifacts."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)  # wandb_internal_pb2.ArtifactRecord
    finished: bool = False
    files: list[str] = field(default_factory=list)


def read_run(run_dir: Path) -> OfflineRun:
    """Replay one offline run directory (``offline-run-*``) into an :class:`OfflineRun`."""
    (log,) = run_dir.glob("*.wandb")
    out = OfflineRun(run_dir)
    for rec in records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.run_id, out.name, out.group, out.job_type = r.run_id, r.display_name, r.run_group, r.job_type
            out.tags = list(r.tags)
            for item in r.config.update:
                _set(out.config, *_value(item))
        elif kind == "config":
            for item in rec.config.update:
                _set(out.config, *_value(item))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _set(row, *_value(item))
            out.history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _set(out.summary, *_value(item))
        elif kind == "artifact":
            out.artifacts.append(rec.artifact)
        elif kind == "files":
            out.files += [f.path for f in rec.files.files]
        elif kind == "exit":
            out.finished = True
    return out


def read_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under a ``wandb/`` directory."""
    return [read_run(d) for d in sorted(wandb_dir.glob("offline-run-*"))]
