"""Results on an object store, without Ray: the writer through an outage, the lock, the storage helpers and
the pruning of Tune's storage. The store is moto's S3 server on 127.0.0.1 (tests/s3server.py)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from s3server import S3Server

from adgan.errors import ConfigError, DataError
from adgan.sweep import results as results_module
from adgan.sweep.callback import FINISHED, finish_checkpoint, prune_checkpoint
from adgan.sweep.lock import LOCK_FILE, ObjectStoreLock, results_lock
from adgan.sweep.results import ResultsStore, read_table
from adgan.sweep.storage import Location, local_copy, local_state_dir, location
from adgan.sweep.trial import StorageError, _restore

GROUP = {"sweep": "s", "group_id": "g", "model": "knn", "dataset": "d", "anomaly_class": 0,
         "loss_case": "default", "seed": 0, "family": "baseline", "class_name": "zero"}


def epoch(trial: str, n: int) -> dict:
    return {**GROUP, "trial_id": trial, "epoch": n, "val_auprc": 0.5, "losses": {"d": 1.0}}


def fail_fast(uri: str) -> Location:
    """``location(uri)`` whose S3 client tries once: pyarrow's default retries a refused connection for
    about 6 s, which the behaviour under test does not depend on."""
    loc = location(uri)
    fs = pafs.S3FileSystem(endpoint_override=loc.fs.__reduce__()[1][0]["endpoint_override"],
                           retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
    return Location(fs, loc.path, loc.uri)


def test_rows_written_during_an_outage_appear_after_it(
    s3: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = s3.bucket_uri("results/sweep")
    store = ResultsStore(fail_fast(uri))
    for n in range(1, 4):
        store.upsert("epochs", epoch("a", n))
    assert store.flush()
    with s3.outage():
        for n in range(4, 7):  # reported while the store is unreachable
            store.upsert("epochs", epoch("a", n))
        store.upsert("trials", {**GROUP, "trial_id": "a", "status": "completed"})
        assert not store.flush()  # not written, not lost
        assert not store.flush()  # backing off: not even tried again yet
    assert "results not written to" in capsys.readouterr().err
    store._retry_at = 0.0  # (the pause after a failure would otherwise end in 2 s)
    assert store.flush()
    assert "written to" in capsys.readouterr().err
    assert [r["epoch"] for r in read_table(uri, "epochs")] == [1, 2, 3, 4, 5, 6]
    assert [r["trial_id"] for r in read_table(uri, "trials")] == ["a"]
    assert ResultsStore(uri).table("epochs") == store.table("epochs")  # a resumed writer sees the same


def test_close_waits_out_a_short_outage(s3: S3Server) -> None:
    uri = s3.bucket_uri("results/sweep")
    store = ResultsStore(fail_fast(uri))
    store.upsert("epochs", epoch("a", 1))
    store.flush()
    store.upsert("epochs", epoch("a", 2))
    s3.relay.cut()
    timer = threading.Timer(1.0, s3.relay.restore)  # the store comes back while close() waits
    timer.start()
    try:
        store.close(timeout=120)
    finally:
        timer.join()
        s3.relay.restore()
    assert [r["epoch"] for r in read_table(uri, "epochs")] == [1, 2]
    assert not location(uri).child("epochs.parts").list_files()  # compacted into epochs.parquet


def test_close_gives_up_with_a_message_when_the_store_stays_away(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results_module, "RETRY_MAX_S", 0.5)
    uri = s3.bucket_uri("results/sweep")
    store = ResultsStore(fail_fast(uri))
    store.upsert("epochs", epoch("a", 1))
    with s3.outage(), pytest.raises(DataError, match="--resume"):
        store.close(timeout=3)


def test_object_store_lock(s3: S3Server) -> None:
    uri = s3.bucket_uri("results/sweep")
    loc = location(uri)
    assert isinstance(results_lock(uri), ObjectStoreLock)
    with ObjectStoreLock(loc, heartbeat_s=0.1) as lock:
        record = json.loads(loc.child(LOCK_FILE).read_text())
        assert record["host"] == socket.gethostname() and record["token"] == lock.token
        with pytest.raises(ConfigError, match="in use by another sweep"):  # this process is alive
            ObjectStoreLock(loc, heartbeat_s=0.1).acquire()
    assert not loc.child(LOCK_FILE).exists()  # released: the record is gone

    gone = {"host": socket.gethostname(), "pid": 2**22 + 17, "pid_start": 1, "started_at": "then"}
    loc.child(LOCK_FILE).write_text(json.dumps(gone))
    with ObjectStoreLock(loc, heartbeat_s=0.1):  # a holder on this host that is gone: taken over
        pass
    elsewhere = {"host": "another-machine", "pid": 1, "heartbeat_unix": time.time() - 5, "started_at": "now"}
    loc.child(LOCK_FILE).write_text(json.dumps(elsewhere))
    with pytest.raises(ConfigError, match="another machine.*last heartbeat was"):
        ObjectStoreLock(loc, heartbeat_s=0.1).acquire()
    loc.child(LOCK_FILE).write_text(json.dumps({**elsewhere, "heartbeat_unix": time.time() - 3600}))
    with ObjectStoreLock(loc, heartbeat_s=0.1):  # a heartbeat an hour old: that sweep is gone
        pass


def test_lock_heartbeat_keeps_the_record_fresh(s3: S3Server) -> None:
    loc = location(s3.bucket_uri("results/sweep"))
    with ObjectStoreLock(loc, heartbeat_s=0.2):
        first = json.loads(loc.child(LOCK_FILE).read_text())["heartbeat_unix"]
        time.sleep(1.0)
        assert json.loads(loc.child(LOCK_FILE).read_text())["heartbeat_unix"] > first


def test_locations_of_checkpoints_download_and_local_state(s3: S3Server, tmp_path: Path) -> None:
    uri = s3.bucket_uri("results/sweep")
    loc = location(uri)
    ckpt = loc.child("tune", "t1", "checkpoint_000001")
    ckpt.child("detector.json").write_text("{}")
    ckpt.child("sub", "x.bin").write_bytes(b"123")
    # A Tune checkpoint's path has no scheme; the tables record the URI the readers open again.
    assert loc.uri_of(ckpt.path) == ckpt.uri and ckpt.uri.startswith("s3://")
    assert location(ckpt.uri).files() == [("detector.json", 2), ("sub/x.bin", 3)]
    with local_copy(ckpt.uri) as local:
        assert (local / "detector.json").read_text() == "{}"
        assert (local / "sub" / "x.bin").read_bytes() == b"123"
    assert not local.exists()  # the temporary copy is gone
    with local_copy(tmp_path) as same:
        assert same == tmp_path
    assert local_state_dir(uri) == local_state_dir(uri + "/") != local_state_dir(uri + "x")
    assert loc.tune_storage == (loc.path, loc.fs) and location(tmp_path).tune_storage == (str(tmp_path), None)


def test_a_finished_trials_checkpoint_keeps_its_outcome_and_loses_its_state(
    s3: S3Server, tmp_path: Path
) -> None:
    """Pruning (adgan.sweep.callback): the outcome first, then the training state; a restarted trial finds
    the outcome and reports it again instead of training."""
    trial = location(s3.bucket_uri("tune/t1"))
    ckpt, older = trial.child("checkpoint_000002"), trial.child("checkpoint_000001")
    for name in ("detector.json", "state.pt", "train_state.pt", "metrics.jsonl"):
        ckpt.child(name).write_text(name)
        older.child(name).write_text(name)  # Tune keeps a trial's two newest checkpoints
    final = {"trial_id": "t1", "status": "completed", "best_val_auprc": 0.7, "epochs_run": 2}
    finish_checkpoint(ckpt.uri, final)
    assert [n for n, _ in ckpt.files()] == ["detector.json", FINISHED, "metrics.jsonl", "state.pt"]
    assert [n for n, _ in older.files()] == [FINISHED]  # a stale snapshot may name it: the outcome stays
    assert json.loads(older.child(FINISHED).read_text()) == final
    # A trial Tune restarted on its older checkpoint (a stale snapshot) ends naming that one: the newer
    # checkpoint, where its detector is, is left alone.
    newer = trial.child("checkpoint_000003")
    newer.child("detector.json").write_text("{}")
    finish_checkpoint(older.uri, final)
    assert [n for n, _ in newer.files()] == ["detector.json"]

    class Checkpoint:  # what Tune hands a restarted trial: a directory (here a copy of the store's)
        path = ckpt.path

        @contextlib.contextmanager
        def as_directory(self) -> Iterator[str]:
            with tempfile.TemporaryDirectory() as tmp:
                yield str(fail_fast(ckpt.uri).download(Path(tmp) / "c"))

    assert _restore(Checkpoint(), tmp_path / "out") == final
    prune_checkpoint(ckpt.uri)  # its group chose another trial
    assert [n for n, _ in ckpt.files()] == [FINISHED]
    untouched = location(s3.bucket_uri("tune/t2/checkpoint_000001"))
    untouched.child("train_state.pt").write_text("x")
    prune_checkpoint(untouched.uri)  # no recorded outcome: a trial that may still continue, left alone
    assert [n for n, _ in untouched.files()] == ["train_state.pt"]
    with s3.outage(), pytest.raises(StorageError):  # the store is away: Tune retries, not "errored"
        _restore(Checkpoint(), tmp_path / "out2")


def test_the_journal_a_resume_continues(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results on a store keep the Optuna journal on the driver's disk, copied to the store when a run ends
    (adgan.sweep.runner): a resume continues the longer of the two, and refuses when the last driver was
    killed on another machine (its journal is there)."""
    from adgan.sweep import provenance
    from adgan.sweep.runner import _journal_for_resume, _recorded_journal, _upload_journal, journal_path

    monkeypatch.setenv("ADGAN_HOME", str(tmp_path / "home"))
    results = location(s3.bucket_uri("results/sweep"))
    journal = journal_path(results)
    assert journal == local_state_dir(results.uri) / "optuna.journal" and journal.is_relative_to(tmp_path)
    assert journal_path(results, str(tmp_path / "j.journal")) == tmp_path / "j.journal"
    assert journal_path(location(tmp_path)) == tmp_path / "optuna.journal"  # local results: beside the tables

    def last_run(status: str, host: str) -> None:
        record = {"status": status, "host": host, "pid": 7, "journal": "/x/optuna.journal",
                  "started_unix": time.time() + 5}  # (started after this machine's journal was last written)
        provenance._write(results, [record])

    # A run on another machine that ended: its copy in the store is taken.
    (tmp_path / "elsewhere.journal").write_bytes(b"0123456789")
    _upload_journal(results, tmp_path / "elsewhere.journal")
    last_run("finished", "another-machine")
    _journal_for_resume(results, journal)
    assert journal.read_bytes() == b"0123456789"
    # This machine's journal grew past the copy (a journal only grows): it is kept.
    journal.write_bytes(b"0123456789-more")
    _journal_for_resume(results, journal)
    assert journal.read_bytes() == b"0123456789-more"
    # The last driver was killed here: its local journal is the one.
    last_run("running", socket.gethostname())
    _journal_for_resume(results, journal)
    # ... killed on another machine: refused, naming it, before anything starts.
    last_run("running", "another-machine")
    with pytest.raises(ConfigError, match="another-machine.*--optuna-storage"):
        _journal_for_resume(results, journal)
    # ... unless that file was copied here (written since the killed run started), or named.
    _journal_for_resume(results, journal, named=True)
    later = time.time() + 10
    os.utime(journal, (later, later))
    _journal_for_resume(results, journal)
    assert journal.read_bytes() == b"0123456789-more"
    # The journal this machine's last run named (--optuna-storage) is continued; when that file is gone,
    # the store's copy is there (the default path, which _journal_for_resume fills): no refusal.
    custom = tmp_path / "custom.journal"
    provenance._write(results, [{"status": "interrupted", "host": socket.gethostname(),
                                 "journal": str(custom)}])
    assert _recorded_journal(results, journal) == journal  # (gone)
    custom.write_bytes(b"x")
    assert _recorded_journal(results, journal) == custom
    # Local results keep no copy elsewhere: a journal named once and gone since is refused, naming it.
    local = location(tmp_path / "local")
    provenance._write(local, [{"status": "interrupted", "host": socket.gethostname(),
                               "journal": str(tmp_path / "gone.journal")}])
    with pytest.raises(ConfigError, match=r"gone.journal \(--optuna-storage\), which is gone"):
        _recorded_journal(local, journal_path(local))


def test_a_uri_with_options_is_refused_with_what_to_do_instead() -> None:
    # Every file of a sweep is addressed as <URI>/<path> (the tables record checkpoints so), which options
    # after '?' would break: refused, naming the environment variable that does the job.
    with pytest.raises(DataError, match=r"after '\?'.*AWS_ENDPOINT_URL"):
        location("s3://bucket/sweeps?endpoint_override=127.0.0.1:9000")


def test_an_object_store_error_says_what_to_check(
    s3: S3Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pyarrow's S3 messages name no remedy (or one adgan cannot take): a missing bucket, a store that does
    not answer and refused credentials each get what to check."""
    from adgan.cli import main
    from adgan.errors import with_store_hint

    assert main(["sweep", "smoke", "--cpus", "2", "--no-wandb", "--results", "s3://nosuchbucket/x"]) == 2
    err = capsys.readouterr().err
    assert "Bucket 'nosuchbucket' not found" in err and "allow_bucket_creation" not in err, err
    assert "(no bucket 'nosuchbucket' on this store: create it first, adgan creates none" in err, err
    offline = ("When getting information for key 'sweeps/smoke/spec.json' in bucket 'b': AWS Error "
               "NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Couldn't connect to server")
    assert with_store_hint(offline).endswith("(the object store does not answer for s3://b/sweeps/smoke/"
                                             "spec.json: is it up, and is AWS_ENDPOINT_URL its address?)")
    denied = "s3://b/sw/smoke/sweep.lock: cannot read (AWS Error ACCESS_DENIED during HeadObject operation)"
    assert "(the store refused these credentials: check AWS_ACCESS_KEY_ID" in with_store_hint(denied)
    assert with_store_hint("x.csv: not found") == "x.csv: not found"
