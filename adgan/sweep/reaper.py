"""A local Ray started by ``adgan sweep`` leaves nothing behind when its driver dies.

What Ray 2.60 does by itself: ``ray.init`` starts the GCS, raylet, dashboard, monitor and log monitor
as children of the driver with ``PR_SET_PDEATHSIG``, so they die with it; but the raylet's own children,
the dashboard agent and the runtime-env agent (one listening on 127.0.0.1), only notice their raylet is
gone by polling, and were measured alive 60-120 s after a SIGKILLed driver.

What adgan adds, for a local Ray only (``--address`` clusters are not ours to stop):

- a way to recognise that Ray's processes, two in fact, since neither alone is reliable:
  a marker in the environment every process of that Ray inherits (``ADGAN_LOCAL_RAY=<token>``, set just
  around ``ray.init``), and files of the Ray session's directory (``session_...`` in Ray's temp dir) held open
  for writing, as every Ray process holds its logs. The marker alone fails: a process that renames itself
  (``ray::DashboardAgent``) overwrites part of its environment as ``/proc`` shows it, and which variables
  survive varies from run to run (measured: the marker gone in about half the runs). Writers of the
  session's files never include a user reading the logs (``tail -f`` opens them read-only);
- a watchdog process (``python -m adgan.sweep.reaper``, in a session of its own so that signals to the
  driver's terminal or process group spare it) blocked reading a pipe whose only writer is the driver
  (which tells it the session directory once Ray is up): the read returns when the driver's end closes,
  which the kernel does however the driver ends. The watchdog then SIGKILLs every process of that Ray and
  exits: nothing polls while the sweep runs;
- a record per local Ray in ``~/.adgan/local-ray/`` (``$ADGAN_HOME/local-ray``): host, driver PID and
  start time, marker, session directory. A new sweep first stops the processes of every record of this
  host whose driver is gone (the watchdog itself may have been killed, e.g. by a kill of the whole session).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adgan.sweep.lock import process_alive, process_start

MARKER = "ADGAN_LOCAL_RAY"
NORMAL_END = b"done"  # written by a driver that stopped its Ray itself


def state_dir() -> Path:
    """Where the records of local Rays live: ``$ADGAN_HOME/local-ray`` (default ``~/.adgan``)."""
    return Path(os.environ.get("ADGAN_HOME") or Path.home() / ".adgan") / "local-ray"


def ray_processes(token: str, session_dir: str | None = None, driver: int | None = None) -> list[int]:
    """PIDs of the live processes of one local Ray: those whose environment holds ``MARKER=token``, or that
    hold a file of ``session_dir`` open for writing; never this process nor the ``driver`` (which holds its
    own Ray logs open, and is still alive when it ends normally)."""
    needle = f"{MARKER}={token}".encode()
    prefix = session_dir.rstrip("/") + "/" if session_dir else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in (os.getpid(), driver):
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                ours = needle in f.read().split(b"\0")
            ours = ours or (prefix is not None and _writes_under(pid, prefix))
        except OSError:  # gone meanwhile, or another user's
            continue
        if ours and process_start(pid) is not None:
            found.append(pid)
    return found


def _writes_under(pid: int, prefix: str) -> bool:
    """Whether process ``pid`` holds a file under ``prefix`` open for writing."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
        except (OSError, StopIteration, ValueError):
            continue
        if flags & (os.O_WRONLY | os.O_RDWR):
            return True
    return False


def kill_ray(token: str, session_dir: str | None = None, driver: int | None = None) -> int:
    """SIGKILL every process of one local Ray (:func:`ray_processes`); returns how many. Repeated until
    none is left, since a process may fork while the others are killed (a raylet starting a worker)."""
    killed: set[int] = set()
    for _ in range(20):
        pids = ray_processes(token, session_dir, driver)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.1)  # let the kernel deliver before looking again
    return len(killed)


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def clean_leftovers() -> None:
    """Stop what the local Rays of dead drivers on this host left behind, saying so."""
    folder = state_dir()
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if record.get("host") != socket.gethostname():
            continue  # another machine sharing this home directory: not ours to judge
        if process_alive(record.get("driver_pid"), record.get("driver_start")):
            continue
        killed = kill_ray(str(record.get("token")), record.get("session_dir"), record.get("driver_pid"))
        path.unlink(missing_ok=True)
        if killed:
            print(
                f"adgan: stopped {_processes(killed)} of a local Ray left by a sweep whose driver died "
                f"(PID {record.get('driver_pid')}, started {record.get('started_at')})",
                file=sys.stderr,
            )


class LocalRayGuard:
    """Around ``ray.init`` of a local Ray: ``start()`` before, ``ray_started()`` right after, ``stop()``
    after ``ray.shutdown()``. See the module docstring."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self.record_path = state_dir() / f"{self.token}.json"
        self._pipe: int | None = None
        self._watchdog: subprocess.Popen | None = None

    def start(self) -> None:
        clean_leftovers()
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "host": socket.gethostname(),
            "token": self.token,
            "driver_pid": os.getpid(),
            "driver_start": process_start(os.getpid()),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.record_path.write_text(json.dumps(record, indent=2))
        read_end, self._pipe = os.pipe()  # both close-on-exec: only the watchdog gets the read end
        # The watchdog imports this module from wherever this process found it.
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")]))}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "adgan.sweep.reaper", str(read_end), self.token, str(self.record_path),
             str(os.getpid())],
            pass_fds=(read_end,),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        os.close(read_end)
        os.environ[MARKER] = self.token

    def ray_started(self, session_dir: str | None) -> None:
        """Ray's processes are up and marked, and their session directory is known (record and watchdog
        learn it): what this process starts from now on is not Ray's."""
        os.environ.pop(MARKER, None)
        if session_dir is None or self._pipe is None:
            return
        record = json.loads(self.record_path.read_text())
        self.record_path.write_text(json.dumps({**record, "session_dir": session_dir}, indent=2))
        os.write(self._pipe, f"session {session_dir}\n".encode())

    def stop(self) -> None:
        os.environ.pop(MARKER, None)
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._pipe, NORMAL_END + b"\n")
            os.close(self._pipe)
            self._pipe = None
        if self._watchdog is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=60)  # it stops what Ray left (usually nothing) and exits
            self._watchdog = None


def _watch(fd: int, token: str, record_path: str, driver: int) -> None:
    """The watchdog: block until the driver's end of the pipe closes, then stop that Ray's processes."""
    said = b""
    while chunk := os.read(fd, 4096):
        said += chunk
    lines = said.decode(errors="replace").splitlines()
    session_dir = next((line[8:] for line in lines if line.startswith("session ")), None)
    killed = kill_ray(token, session_dir, driver)
    Path(record_path).unlink(missing_ok=True)
    if killed and NORMAL_END.decode() not in lines:
        print(
            f"adgan: the sweep driver (PID {driver}) died; "
            f"stopped {_processes(killed)} of its local Ray",
            file=sys.stderr,
        )


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of the pipe ends the watchdog
    _watch(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))
