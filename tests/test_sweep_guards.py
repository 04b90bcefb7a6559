"""The guards around a sweep, without Ray: the results-directory lock, the check that some node can run a
trial, the clean-up of a dead driver's local Ray, the dry-run plan and the progress line.

Every wait here is on an event (a line from a child process, a child's exit) or, for a process that is
not our child, on its state in /proc with a generous deadline; nothing sleeps to let something happen.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_hold import until

from adgan.errors import ConfigError
from adgan.sweep.capacity import NodeType, bootstrap_node_types, effective_gpu, refusal
from adgan.sweep.lock import LOCK_FILE, ResultsLock, process_start
from adgan.sweep.reaper import MARKER, clean_leftovers, ray_processes

ROOT = Path(__file__).resolve().parent.parent
HOLD = """
import sys
from adgan.sweep.lock import ResultsLock
ResultsLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()
"""


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_is_refused_and_a_dead_one_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results" / "smoke"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(results)], env=_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"  # the lock is held from here on
        with pytest.raises(ConfigError) as info:
            ResultsLock(results).acquire()
        msg = str(info.value)
        host = socket.gethostname()
        assert msg.startswith(f"{results} is in use by another sweep (PID {holder.pid} on {host}"), msg
        assert "another --results" in msg
    finally:
        holder.stdin.close()  # the holder ends without releasing: killed, as far as the lock file knows
        holder.wait(timeout=60)
    with ResultsLock(results) as lock:
        assert f"taking over the lock of a sweep that is gone (PID {holder.pid} on" in capsys.readouterr().err
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert (results / LOCK_FILE).read_text() == ""  # released: emptied, and the directory stays


def test_a_file_system_without_locks_runs_unlocked_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """NFS without lockd answers flock with ENOLCK: the sweep (or training run) goes on, warned, instead of
    a traceback; the holder's record is still written and read."""
    import errno

    from adgan.sweep import lock

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    with lock.ResultsLock(tmp_path / "run", name=".adgan-train.lock", what="training run", elsewhere="--out"):
        assert json.loads((tmp_path / "run" / ".adgan-train.lock").read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "this file system cannot lock files (No locks available); running without the lock: start no " \
           "second training run on this folder" in err


def test_a_stale_record_of_this_host_is_taken_over_one_of_another_host_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path.joinpath(LOCK_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": _dead_pid(), "pid_start": 1, "started_at": "then"}))
    with ResultsLock(tmp_path):
        pass
    assert "taking over the lock of a sweep that is gone" in capsys.readouterr().err
    tmp_path.joinpath(LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1, "started_at": "then"}))
    with pytest.raises(ConfigError, match=rf"on another machine .* remove {tmp_path / LOCK_FILE}"):
        ResultsLock(tmp_path).acquire()
    # A live process of this host named in a file whose lock is free (the file was recreated under it).
    tmp_path.joinpath(LOCK_FILE).write_text(json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": process_start(os.getpid())}))
    with pytest.raises(ConfigError, match=f"in use by another sweep \\(PID {os.getpid()}"):
        ResultsLock(tmp_path).acquire()


def test_a_refused_start_leaves_no_directory(tmp_path: Path) -> None:
    new = tmp_path / "results" / "new"
    with pytest.raises(ConfigError), ResultsLock(new):
        raise ConfigError("refused after the lock was taken")
    assert not new.exists()


def test_a_trial_no_node_can_hold_is_refused() -> None:
    want = {"CPU": 64, "GPU": 0}
    two = [{"CPU": 2.0, "memory": 1e9}]
    assert refusal(want, two, []) == (
        "a trial asks for 64 CPUs and 0 GPUs, but the largest node has 2 CPUs, 0 GPUs"
    )
    assert refusal({"CPU": 1, "GPU": 0}, two, []) is None
    assert refusal(want, two, [NodeType("big", {"CPU": 96.0})]) is None  # the autoscaler may add one
    assert refusal(want, two, [NodeType("g5", None)]) is None  # resources detected at start: may fit
    msg = refusal({"CPU": 1, "GPU": 1}, two, [NodeType("cpu-worker", {"CPU": 8.0})])
    assert msg.endswith("and no node type the autoscaler may add fits (cpu-worker: 8 CPUs, 0 GPUs)"), msg


def test_a_gpu_sweep_waits_for_the_gpu_node_an_autoscaler_is_adding(capsys: pytest.CaptureFixture) -> None:
    """Right after `make cluster-up` the head is up and the GPU worker still pulling its image: a sweep asking
    for GPUs waits for it instead of running every trial on the workers' CPUs; where no GPU can come (a
    local Ray, a cluster of CPU node types) it runs on CPU and says so; where one was declared but never
    joined, it refuses."""
    gpu_worker = NodeType("gpu-worker", {"CPU": 4.0, "GPU": 1.0})
    cpu_worker = NodeType("cpu-worker", {"CPU": 8.0})
    polls = iter([0.0, 0.0, 0.0, 1.0])  # the cluster's GPUs at each look: the worker joins at the fourth
    asked: list[bool] = []  # the autoscaler asked for a GPU node while waiting, the request then withdrawn
    assert effective_gpu(0.25, lambda: next(polls), [gpu_worker], local=False, name="s", poll_s=0,
                         ask=asked.append) == 0.25
    assert asked == [True, False]
    err = capsys.readouterr().err
    assert ("no node with a GPU has joined yet; waiting up to 900 s for one of the node types the "
            "autoscaler may add (gpu-worker); --gpu 0 runs on CPU instead") in err
    assert "a node with a GPU joined" in err
    detected = NodeType("any-worker", None)  # resources left to detection: may be CPU only, not waited for
    for local, types in ((True, [gpu_worker]), (False, [cpu_worker]), (False, []), (False, [detected])):
        assert effective_gpu(0.25, lambda: 0.0, types, local=local, name="s") == 0.0
        assert "but the cluster has none: running on CPU" in capsys.readouterr().err
    assert effective_gpu(0.0, lambda: 0.0, [gpu_worker], local=False, name="s") == 0.0  # none asked
    never = r"s: trials ask for 0.25 GPU each, but no node with a GPU joined the cluster within 0 s although"
    with pytest.raises(ConfigError, match=never + r" its autoscaler may add one \(gpu-worker\)"):
        effective_gpu(0.25, lambda: 0.0, [gpu_worker], local=False, name="s", wait_s=0, ask=asked.append)
    assert asked == [True, False, True, False]


def test_node_types_of_the_cluster_launcher_config(tmp_path: Path) -> None:
    """``~/ray_bootstrap_config.yaml`` as ``ray up`` writes it from cluster/aws-gpu.yaml: the GPU worker
    type declares its instance type's resources (left to detection they are unknown), the head is no worker
    type."""
    config = yaml.safe_load((ROOT / "cluster" / "aws-gpu.yaml").read_text())
    path = tmp_path / "bootstrap.yaml"
    path.write_text(yaml.safe_dump(config))
    assert bootstrap_node_types(path) == [NodeType("gpu-worker", {"CPU": 4.0, "GPU": 1.0})]
    config["available_node_types"]["gpu-worker"]["resources"] = {}  # left to detection: unknown
    path.write_text(yaml.safe_dump(config))
    assert bootstrap_node_types(path) == [NodeType("gpu-worker", None)]
    assert bootstrap_node_types(tmp_path / "missing.yaml") == []


def test_the_cli_refuses_more_cpus_than_the_local_ray_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from adgan.cli import main

    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["resources"] = {"cpus": 64}
    spec = tmp_path / "big.yaml"
    spec.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(spec), "--cpus", "2", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{spec}: resources: a trial asks for 64 CPUs, but the local Ray has 2" in err
    assert not (tmp_path / "r").exists()
    sys_ray = sys.modules.get("ray")
    assert sys_ray is None or not sys_ray.is_initialized()


def test_a_setting_the_data_cannot_take_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PCA searched up to as many components as the data has features (8): the dry run and the sweep
    both refuse it at the search key, before Ray starts (the sweep used to run and error those trials)."""
    from adgan.cli import main

    spec = tmp_path / "tab.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "tabpca", "dataset": "synthetic-tabular", "classes": [0], "seeds": [0],
        "models": {"pca": {"search": {"n_components": {"type": "int", "low": 2, "high": 8}}}, "knn": {}},
        "budget": {"trials_per_group": 2, "max_epochs": 1, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "gpu": 0}}))
    expected = (f"{spec}: models.pca.search.n_components: pca: n_components 8 >= the 8 input features; "
                "expected fewer components than features")
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(spec), "--cpus", "1", "--no-wandb", "--results", str(tmp_path / "r"),
                     *extra]) == 2
        assert expected in capsys.readouterr().err
    sys_ray = sys.modules.get("ray")
    assert sys_ray is None or not sys_ray.is_initialized()
    spec.write_text(spec.read_text().replace("high: 8", "high: 7"))
    assert main(["sweep", str(spec), "--cpus", "1", "--results", str(tmp_path / "r2"), "--dry-run"]) == 0


def test_a_class_too_small_to_split_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A declared class of 2 images (min_per_class lowered to take it) cannot give its validation part an
    anomaly: the dry run and the sweep refuse it, naming the class, instead of every trial erroring."""
    from adgan.cli import main
    from adgan.data.fakes import write_image_folders

    root = write_image_folders(tmp_path / "parts")
    for extra in sorted((root / "ring").iterdir())[2:]:
        extra.unlink()
    decl = tmp_path / "parts.yaml"
    decl.write_text(yaml.safe_dump({"name": "parts-small", "format": "image-folder", "root": str(root),
                                    "channels": 1, "min_per_class": 2}))
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "small", "dataset": {"declare": str(decl)}, "classes": "all", "seeds": [0],
        "models": {"knn": {}},
        "budget": {"trials_per_group": 1, "max_epochs": 1, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "gpu": 0}}))
    for extra in (["--dry-run"], []):
        assert main(["sweep", str(spec), "--cpus", "1", "--no-wandb", "--results", str(tmp_path / "r"),
                     *extra]) == 2
        err = capsys.readouterr().err
        assert f"{spec}: class 2 (ring), seed 0: " in err and "too few samples to split" in err, err
    sys_ray = sys.modules.get("ray")
    assert sys_ray is None or not sys_ray.is_initialized()


def test_a_setting_one_class_of_a_table_cannot_take_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table's categories are learnt from each split's training rows, so its width differs by class:
    PCA with 3 components fits the classes whose normals hold every category value (4 features), not the
    one whose normals lack one (3): refused naming that class, not every trial of it erroring on Ray (the
    first class's width alone was checked before)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from adgan.cli import main

    n = 300
    rng = np.random.default_rng(0)
    label = np.array(["a", "b", "c"] * (n // 3))
    proto = np.where(rng.random(n) < 0.5, "tcp", "udp").astype(object)
    proto[label == "c"] = "gre"  # only class c holds "gre": in the normals unless c is the anomaly
    pcsv.write_csv(pa.table({"x": rng.normal(size=n), "proto": proto.astype(str), "label": label}),
                   tmp_path / "t.csv")
    decl = tmp_path / "t.yaml"
    decl.write_text(yaml.safe_dump({"name": "t-widths", "format": "table", "path": str(tmp_path / "t.csv"),
                                    "label_column": "label", "categorical": ["proto"]}))
    spec = tmp_path / "widths.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "widths", "dataset": {"declare": str(decl), "options": {"scale": False}}, "classes": "all",
        "seeds": [0], "models": {"pca": {"fixed": {"n_components": 3}}},
        "budget": {"trials_per_group": 1, "max_epochs": 1, "grace_period": 1, "reduction_factor": 2},
        "resources": {"cpus": 1, "gpu": 0}}))
    assert main(["sweep", str(spec), "--cpus", "1", "--no-wandb", "--results", str(tmp_path / "r"),
                 "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "n_components" in err and "(the training rows of class 2 (c), seed 0, give 3 features)" in err, err


def _sleeper(token: str) -> subprocess.Popen:
    """A process carrying the marker of a local Ray (as Ray's processes do), returned once it runs (until
    its exec completes, /proc shows no environment to find the marker in)."""
    sleep = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"]
    proc = subprocess.Popen(sleep, env=_env(**{MARKER: token}), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def test_a_new_sweep_stops_what_a_dead_drivers_ray_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ADGAN_HOME", str(tmp_path))
    records = tmp_path / "local-ray"
    records.mkdir()
    orphan, kept = _sleeper("deaddriver"), _sleeper("livedriver")
    try:
        host = socket.gethostname()
        records.joinpath("deaddriver.json").write_text(json.dumps(
            {"host": host, "token": "deaddriver", "driver_pid": _dead_pid(), "driver_start": 1,
             "started_at": "then"}))
        records.joinpath("livedriver.json").write_text(json.dumps(
            {"host": host, "token": "livedriver", "driver_pid": os.getpid(),
             "driver_start": process_start(os.getpid())}))
        assert ray_processes("deaddriver") == [orphan.pid]
        clean_leftovers()
        assert orphan.wait(timeout=60) == -signal.SIGKILL
        err = capsys.readouterr().err
        assert "stopped 1 process of a local Ray left by a sweep whose driver died" in err
        assert not records.joinpath("deaddriver.json").exists()
        assert kept.poll() is None and records.joinpath("livedriver.json").exists()  # its driver lives
    finally:
        for proc in (orphan, kept):
            proc.kill()
            proc.wait(timeout=60)


def test_a_rays_processes_are_its_session_files_writers(tmp_path: Path) -> None:
    """A renamed Ray process may lose its environment marker: writing a file of the Ray session's directory
    also marks it; a reader of those files (``tail -f`` of a log) is never taken for one."""
    session = tmp_path / "session_x"
    (session / "logs").mkdir(parents=True)
    log = session / "logs" / "agent.log"
    log.write_text("")
    hold = "import sys, time; f = open(sys.argv[1], sys.argv[2]); print('open', flush=True); time.sleep(600)"
    writer, reader = (subprocess.Popen([sys.executable, "-c", hold, str(log), mode], stdout=subprocess.PIPE,
                                       text=True) for mode in ("a", "r"))
    try:
        assert writer.stdout.readline() == reader.stdout.readline() == "open\n"
        assert ray_processes("no-such-token", str(session)) == [writer.pid]
        # The driver holds its own Ray logs open: never taken (it is alive when it ends normally).
        assert ray_processes("no-such-token", str(session), driver=writer.pid) == []
        assert ray_processes("no-such-token", str(tmp_path / "session_y")) == []
    finally:
        for proc in (writer, reader):
            proc.kill()
            proc.wait(timeout=60)


DRIVER = """
import subprocess, sys
from adgan.sweep.reaper import LocalRayGuard
guard = LocalRayGuard()
guard.start()
# as ray.init's would be; running once it says so (until its exec completes, /proc shows no environment)
child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)"],
                         stdout=subprocess.PIPE, text=True)
child.stdout.readline()
guard.ray_started(None)
print(child.pid, guard.token, flush=True)
sys.stdin.read()
"""


def test_the_watchdog_stops_the_marked_processes_when_the_driver_is_killed(tmp_path: Path) -> None:
    log = tmp_path / "driver.log"
    with open(log, "w") as err:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], env=_env(ADGAN_HOME=str(tmp_path)),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                  start_new_session=True)
    child, token = driver.stdout.readline().split()
    try:
        assert ray_processes(token) == [int(child)]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        said = f"the sweep driver (PID {driver.pid}) died; stopped 1 process of its local Ray"
        assert until(lambda: said in log.read_text()), log.read_text()  # printed last, when done
        assert process_start(int(child)) is None and not (tmp_path / "local-ray" / f"{token}.json").exists()
    finally:
        if process_start(int(child)) is not None:
            os.kill(int(child), signal.SIGKILL)


def test_a_normal_end_stops_the_watchdog_quietly(tmp_path: Path) -> None:
    driver = subprocess.run(
        [sys.executable, "-c", "from adgan.sweep.reaper import LocalRayGuard\n"
         "g = LocalRayGuard(); g.start(); g.ray_started(None); g.stop(); print(g._watchdog)"],
        env=_env(ADGAN_HOME=str(tmp_path)), capture_output=True, text=True, timeout=120,
    )
    assert driver.returncode == 0 and driver.stdout.strip() == "None" and driver.stderr == "", driver.stderr
    assert list((tmp_path / "local-ray").iterdir()) == []


GROUP = {"sweep": "smoke", "dataset": "synthetic-images", "anomaly_class": 0, "seed": 0}
GAN, KNN = "synthetic-images/c0/ganomaly/fm/s0", "synthetic-images/c0/knn/default/s0"


def _trial(tid: str, gid: str, **row: object) -> dict:
    model, case = gid.split("/")[2:4]
    return {**GROUP, "group_id": gid, "model": model, "loss_case": case, "trial_id": tid, **row}


def test_asha_expected_epochs() -> None:
    from adgan.sweep.plan import asha_epochs

    assert asha_epochs(3, 1, 2) == 1 + 1 / 2 + 1 / 4  # rungs at epochs 1 and 2, as Ray places them
    assert asha_epochs(4, 4, 3) == 4  # grace = max: nothing stopped
    assert asha_epochs(25, 8, 3) == 8 + (24 - 8) / 3 + (25 - 24) / 9


def test_dry_run_prints_the_plan_without_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from adgan.cli import main

    assert main(["sweep", "smoke", "--dry-run", "--cpus", "2", "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    for line in ("plan of sweep 'smoke'", "groups       2 (1 class x 2 model/loss cases x 1 seed)",
                 "trials       8 (up to 4 per group",
                 "epochs       up to 3 per trial of a model trained in epochs, 1 per one-step fit (knn) (",
                 "per trial    1 CPU, 0 GPUs", "at once      2 trials (this machine: 2 CPUs)",
                 "(calibrated: one epoch of each model in this process)", "estimate     wall "):
        assert line in out, out
    ray = sys.modules.get("ray")
    assert (ray is None or not ray.is_initialized()) and not (tmp_path / "r").exists()
    # Trials larger than the machine: no estimate of a sweep that would be refused.
    spec = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    spec["resources"] = {"cpus": 64, "gpu": 0}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(tmp_path / "big.yaml"), "--dry-run", "--cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "at once      0 trials" in out and "estimate     none: no trial fits here" in out, out
    assert "estimate     wall" not in out


def test_dry_run_estimates_from_an_earlier_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An earlier results directory of the same sweep and budget gives each model's seconds per epoch (fit
    and scoring over epochs run), per-trial set-up (wall beyond them) and the epochs its trials actually ran
    (ASHA's real stopping: here every trial ran all 3)."""
    from adgan.cli import main
    from adgan.sweep.records import write_spec_record
    from adgan.sweep.results import ResultsStore
    from adgan.sweep.spec import load_spec
    from adgan.sweep.storage import location

    results = tmp_path / "smoke"
    store = ResultsStore(results)
    for i in range(2):
        store.upsert("trials", _trial(f"g{i}", GAN, fit_seconds=5.0, score_seconds=1.0, epochs_run=3,
                                      wall_seconds=10.0, status="completed"))
        store.upsert("trials", _trial(f"k{i}", KNN, fit_seconds=1.0, score_seconds=0.0, epochs_run=1,
                                      wall_seconds=2.0, status="completed"))
    store.flush()
    write_spec_record(load_spec("smoke"), location(str(results)), 0.0)
    (results / "dataset.json").write_text(json.dumps({"dataset": "synthetic-images"}))
    (results / "tune").mkdir()
    assert main(["sweep", "smoke", "--dry-run", "--cpus", "2", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ganomaly 2.00 s/epoch + 4.0 s set-up; knn 1.00 s/epoch + 1.0 s set-up (measured by the earlier " \
        f"run in {results})" in out, out
    # 4 GAN trials of 4 + 3 x 2 s (the epochs they ran) and 4 kNN trials of 2 s on 2 slots, plus 40 s of
    # start-up: what no trial stopped would give too.
    assert "estimate     wall 1m04s with ASHA, at most 1m04s; 0.01 CPU-hours (at most 0.01), 0.00 GPU" in out
    # ... and the sweep itself would not start there: said.
    assert f"note         {results} already holds sweep 'smoke': `adgan sweep` would refuse to start" in out
    # Another spec under the same name (wider networks): the earlier run's times do not apply.
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["models"]["ganomaly"]["fixed"]["base_filters"] = 64
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(tmp_path / "wide.yaml"), "--dry-run", "--cpus", "2", "--results",
                 str(tmp_path)]) == 0
    assert "(calibrated: one epoch of each model in this process)" in capsys.readouterr().out


def test_progress_line_for_the_whole_sweep(tmp_path: Path) -> None:
    from adgan.sweep.callback import SweepCallback
    from adgan.sweep.spec import load_spec

    callback = SweepCallback(load_spec("smoke"), str(tmp_path))
    callback.setup()
    assert callback.store is not None
    # One GAN trial stopped by ASHA after epoch 1 (2 epochs it will never run), one at epoch 2 in flight.
    for tid, epoch in (("a", 1), ("b", 1), ("b", 2)):
        callback.store.upsert("epochs", _trial(tid, GAN, epoch=epoch, val_auprc=0.5))
    callback.store.upsert("trials", _trial("a", GAN, epochs_run=1, max_epochs=3, status="stopped early"))
    first, groups = callback.progress([]).splitlines()
    assert first == ("[smoke] sweep [######--------------] 31%: epochs 3 run + 2 skipped of 16 at most; "
                     "trials 1/8 finished; elapsed 0s, ETA -")
    assert groups.startswith("[smoke] groups done 0/2")
    callback.store.upsert("epochs", _trial("b", GAN, epoch=3, val_auprc=0.5))
    assert "epochs 4 run + 2 skipped of 16 at most" in callback.progress([])


def test_end_summary_gives_wall_time_and_resource_hours(tmp_path: Path) -> None:
    from adgan.sweep.plan import cost_summary
    from adgan.sweep.results import ResultsStore

    (tmp_path / "runs.json").write_text(json.dumps([{"status": "finished", "wall_seconds": 100.0},
                                                     {"status": "finished", "wall_seconds": 50.0}]))
    (tmp_path / "spec.json").write_text(json.dumps({"effective_resources": {"cpus": 1.0, "gpu": 0.5}}))
    store = ResultsStore(tmp_path)
    for tid in ("a", "b"):
        store.upsert("trials", _trial(tid, GAN, wall_seconds=1800.0, status="completed"))
    store.flush()
    assert cost_summary(tmp_path) == ("wall 50s (2m30s over 2 runs of this directory); trials reserved "
                                      "1.00 CPU-hours and 0.50 GPU-hours (2 trials)")
    # A killed driver's run has no end: its time is said to be missing from the total, not dropped silently.
    (tmp_path / "runs.json").write_text(json.dumps([{"status": "killed", "started_unix": 1.0},
                                                     {"status": "finished", "wall_seconds": 16.0}]))
    assert cost_summary(tmp_path).startswith("wall 16s (1 killed run whose time is not recorded); ")
    (tmp_path / "runs.json").write_text(json.dumps([{"status": "finished", "wall_seconds": 100.0},
                                                     {"status": "killed"}, {"status": "killed"},
                                                     {"status": "finished", "wall_seconds": 50.0}]))
    assert cost_summary(tmp_path).startswith("wall 50s (2m30s over 2 runs of this directory, plus 2 killed "
                                             "runs whose time is not recorded); ")
