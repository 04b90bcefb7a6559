"""Driver cost of recording results: synthetic trial reports replayed through the real callback and writer.

    python benchmarks/results_writer.py --trials 1000 5000 15000 [--epochs 25] [--whole-file] [--s3]

No training and no Ray: ``SweepCallback`` (the driver-side Tune callback) receives each trial's start, one
report per epoch (the fields a trial reports), and its completion, exactly as Tune would call it, with
``on_step_end`` (the periodic flush and progress line) after every reported epoch. The spec is kNN on
``synthetic-images`` (5 classes x seeds, 2 trials per group); a finished group has no checkpoint, so
the driver's test evaluation is skipped (its cost is the same per group whatever the writer).

Printed per run: driver CPU seconds per reported epoch over the first and the last tenth of the trials
(flat means the cost does not grow with the results already written), over all of them, the final
``close`` (compaction) time, files and bytes written. ``--whole-file`` replays through the previous
writer, which rewrote each whole table at every flush; ``--s3`` writes to an S3-compatible server started
on 127.0.0.1 (moto) instead of the local disk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402

from adgan.sweep import callback as callback_module  # noqa: E402
from adgan.sweep.grouped import GROUP_KEY  # noqa: E402
from adgan.sweep.results import TABLES, ResultsStore, _parquet_bytes, schema_of  # noqa: E402
from adgan.sweep.spec import parse_spec  # noqa: E402


class WholeFileStore(ResultsStore):
    """The writer before append-only parts: every flush rewrites each changed table whole from memory."""

    def flush(self, *, min_interval: float = 0.0) -> None:
        changed = [n for n in TABLES if self._changes[n]]
        if not changed or time.monotonic() - self._last_flush < min_interval:
            return
        for name in changed:
            table = pa.Table.from_pylist(self.table(name), schema=schema_of(name, self.params))
            self._table_loc(name).write_bytes(_parquet_bytes(table, name))
            self._changes[name] = {}
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()


def spec_for(trials: int, epochs: int) -> Any:
    groups = trials // 2
    raw = {
        "name": "writer-bench", "dataset": {"name": "synthetic-images"}, "classes": "all",
        "seeds": list(range(max(1, groups // 5))),
        "models": {"knn": {"search": {"k": {"type": "int", "low": 1, "high": 20}}}},
        "budget": {"trials_per_group": 2, "max_epochs": epochs, "grace_period": 1, "reduction_factor": 2},
    }
    return parse_spec(raw, "<bench>")


def replay(spec: Any, results: str, epochs: int) -> dict[str, float]:
    """Feed every trial of ``spec`` through the callback; CPU seconds per epoch by tenth of the trials."""
    cb = callback_module.SweepCallback(spec, results, progress_every=30.0)
    cb.setup()
    group_ids = list(cb.groups)
    n_trials = 2 * len(group_ids)
    tenth = max(1, n_trials // 10)
    cpu_first = cpu_last = 0.0
    t_start = time.process_time()
    k = 0
    for gid in group_ids:
        for j in range(2):
            trial_id = f"{k:08x}"
            group = cb.groups[gid]
            config = {"model": "knn", "dataset": "synthetic-images", "anomaly_class": group.anomaly_class,
                      "seed": group.seed, "k": 1 + j, GROUP_KEY: gid}
            trial = SimpleNamespace(trial_id=trial_id, config=config, status="RUNNING", checkpoint=None)
            t0 = time.process_time()
            cb.on_trial_start(0, [trial], trial)
            for e in range(1, epochs + 1):
                result = {"trial_id": trial_id, "epoch": e, "val_auprc": 0.5 + e / 1000, "val_auroc": 0.6,
                          "val_auprc_trapz": 0.5, "best_val_auprc": 0.5 + e / 1000, "is_best": True,
                          "epoch_seconds": 1.0, "eval_seconds": 0.1, "samples_per_s": 100.0,
                          "loss_d": 0.1, "loss_g": 0.2, "node_ip": "127.0.0.1", "timestamp": time.time(),
                          "time_total_s": float(e)}
                if e == epochs:
                    result.update(status="completed", message="", epochs_run=epochs)
                cb.on_trial_result(0, [trial], trial, result)
                cb.on_step_end(0, [trial])
            cb.on_trial_complete(0, [trial], trial)
            spent = time.process_time() - t0
            if k < tenth:
                cpu_first += spent
            elif k >= n_trials - tenth:
                cpu_last += spent
            k += 1
    total = time.process_time() - t_start
    t0 = time.perf_counter()
    assert cb.store is not None
    cb.store.close()
    close_s = time.perf_counter() - t0
    per_epoch = tenth * epochs
    return {"trials": n_trials, "first_tenth": cpu_first / per_epoch, "last_tenth": cpu_last / per_epoch,
            "all": total / (n_trials * epochs), "close_s": close_s, "wall_s": 0.0}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1 and a bucket; yields the bucket's URI."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3

        os.environ.update({k: env[k] for k in env if k.startswith("AWS_")})
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        for _ in range(100):
            try:
                client.create_bucket(Bucket="adgan-bench")
                break
            except Exception:  # noqa: BLE001 (the server is still starting)
                time.sleep(0.1)
        yield "s3://adgan-bench"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _bytes_written(results: str) -> tuple[int, int]:
    from adgan.sweep.storage import location

    loc = location(results)
    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True))
    files = [i for i in infos if i.type.name == "File"]
    return len(files), sum(i.size for i in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000, 15000])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--whole-file", action="store_true",
                        help="the previous writer (whole-table rewrites)")
    parser.add_argument("--s3", action="store_true", help="write to S3 on loopback (moto) instead of disk")
    args = parser.parse_args()
    if args.whole_file:
        callback_module.ResultsStore = WholeFileStore  # type: ignore[misc]
    flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("flags")), [])
    storage = "S3 (moto, loopback)" if args.s3 else "disk"
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{' '.join(f for f in flags if f.startswith(('avx', 'amx')))}; writer "
          f"{'whole-file' if args.whole_file else 'parts'}; storage {storage}")
    print("| trials | epochs | CPU ms/epoch first tenth | last tenth | all | close s | files | MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(moto_server()) if args.s3 else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="adgan-writer-"))
        for n in args.trials:
            results = f"{root}/run-{n}"
            r = replay(spec_for(n, args.epochs), results, args.epochs)
            files, size = _bytes_written(results)
            print(f"| {r['trials']} | {args.epochs} | {1000 * r['first_tenth']:.3f} | "
                  f"{1000 * r['last_tenth']:.3f} | {1000 * r['all']:.3f} | {r['close_s']:.2f} | {files} | "
                  f"{size / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
