"""``results_writer.py`` at a sweep's real pace: the same replay of trial reports through the real callback
and writer, on a simulated clock that advances ``1 / --rate`` seconds per reported epoch.

    python benchmarks/results_writer_paced.py --trials 1000 5000 15000 [--rate 10] [--whole-file] [--s3]

Why: the driver flushes the tables at most every 2 s of wall time, and ``results_writer.py`` replays a
sweep of hours in seconds, so it flushes a few times per run, each flush holding tens of thousands of rows
(a few large writes, whatever the writer). In a sweep, reports arrive at some rate (the 1,000-group kNN
sweep of benchmarks/README.md settled about 10 epochs per second on 2 cores; a cluster of 32 GAN trials of
6-second epochs, about 5) and each 2-second flush holds that many rows: thousands of small writes. Here
the writer's and the callback's clock (``time.monotonic`` in ``adgan.sweep.results`` and
``adgan.sweep.callback``) is simulated, everything else (CPU time measured, files written) is real.
Columns as in ``results_writer.py``, plus the number of flushes.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from typing import Any

import results_writer as base  # benchmarks/ is on sys.path when run as a script

from adgan.sweep import callback as callback_module
from adgan.sweep import results as results_module


class SimulatedTime:
    """The ``time`` module with ``monotonic`` replaced by a clock the replay advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[1000, 5000, 15000])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--rate", type=float, default=10.0, help="reported epochs per simulated second")
    parser.add_argument("--whole-file", action="store_true", help="the previous writer")
    parser.add_argument("--s3", action="store_true", help="S3 on loopback (moto) instead of the disk")
    args = parser.parse_args()
    clock = SimulatedTime()
    results_module.time = clock  # type: ignore[assignment]
    callback_module.time = clock  # type: ignore[assignment]
    base.time = clock  # type: ignore[assignment]  (WholeFileStore's clock; replay's process_time stays real)
    flushes = [0]
    store_cls = base.WholeFileStore if args.whole_file else results_module.ResultsStore

    class Counting(store_cls):  # type: ignore[valid-type, misc]
        def flush(self, *, min_interval: float = 0.0) -> bool:
            before = self._changes and any(self._changes.values())
            done = super().flush(min_interval=min_interval)
            if before and not any(self._changes.values()):
                flushes[0] += 1
            return bool(done)

    callback_module.ResultsStore = Counting  # type: ignore[misc]
    original = callback_module.SweepCallback.on_trial_result

    def on_trial_result(self: Any, *a: Any, **k: Any) -> None:
        clock.now += 1.0 / args.rate  # one more reported epoch
        original(self, *a, **k)

    callback_module.SweepCallback.on_trial_result = on_trial_result  # type: ignore[method-assign]
    storage = "S3 (moto, loopback)" if args.s3 else "disk"
    writer = "whole-file" if args.whole_file else "parts"
    print(f"# writer {writer}; storage {storage}; {args.rate:g} reported epochs per simulated second (a "
          "flush at most every 2 simulated seconds)")
    print("| trials | epochs | CPU ms/epoch first tenth | last tenth | all | close s | flushes | files "
          "| MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(base.moto_server()) if args.s3 else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="adgan-writer-"))
        for n in args.trials:
            flushes[0] = 0
            results = f"{root}/run-{n}"
            r = base.replay(base.spec_for(n, args.epochs), results, args.epochs)
            files, size = base._bytes_written(results)
            print(f"| {r['trials']} | {args.epochs} | {1000 * r['first_tenth']:.3f} | "
                  f"{1000 * r['last_tenth']:.3f} | {1000 * r['all']:.3f} | {r['close_s']:.2f} | "
                  f"{flushes[0]} | {files} | {size / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
