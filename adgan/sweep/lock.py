"""The lock of a results directory, held by one ``adgan sweep`` for its whole lifetime.

Two sweeps writing one results directory would each rewrite the Parquet files from their own memory, so
the second silently drops the first one's rows, and Tune's ``tune/`` directory would mix both. The lock
is an OS lock (``fcntl.flock``) on ``<results>/<sweep>/sweep.lock``, held on an open descriptor: the
kernel releases it when the process ends, however it ends (SIGKILL included), so a crashed sweep never
leaves a lock that blocks forever. The file also holds who took it (host, PID, the PID's start time,
start time of the sweep, command line) for the messages:

- a live holder (the lock is taken, or the recorded process on this host still runs): refused, naming it;
- a holder that is gone (the lock is free but the file names a process): taken over, with a message;
- a holder on another host whose lock this host does not see (e.g. NFS mounted without locking):
  refused, since this host cannot tell whether it still runs; the message says how to remove the file.

When a sweep ends normally the file is emptied before the lock is released. The descriptor is
close-on-exec and never passed to child processes, so Ray's processes cannot keep a lock alive after the
driver dies (a child forked without ``exec`` would; adgan's driver forks none).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError

LOCK_FILE = "sweep.lock"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, ``/proc/<pid>/stat`` field 22), or
    None when there is no such process. A PID with another start time is another process (PID reuse)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
    except OSError:
        return None
    if fields[0] == b"Z":  # exited, not yet reaped
        return None
    return int(fields[19])


def process_alive(pid: Any, start: Any) -> bool:
    """Whether the process ``pid`` started at ``start`` (see :func:`process_start`) still runs here."""
    return isinstance(pid, int) and pid > 0 and process_start(pid) == start


def describe(holder: dict[str, Any]) -> str:
    """``holder`` (a lock file's record) in words."""
    what = f"PID {holder.get('pid')} on {holder.get('host')}, started {holder.get('started_at')}"
    command = holder.get("command")
    return f"{what} ({command})" if command else what


class ResultsLock:
    """``with ResultsLock(results_dir):`` holds the lock of ``results_dir`` (created when missing).

    Raises:
        ConfigError: On entering, when another sweep holds the directory (see the module docstring).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.path = self.dir / LOCK_FILE
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        self._created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._in_use(_read(fd)) from None
            previous = _read(fd)
            if previous:
                self._check_gone(previous)
                gone = describe(previous)
                print(f"adgan: {self.dir}: taking over the lock of a sweep that is gone ({gone})",
                      file=sys.stderr)
            _write(fd, _holder())
        except BaseException:
            os.close(fd)  # releases the lock, if it was taken
            self._remove_if_new()
            raise
        self._fd = fd

    def _check_gone(self, previous: dict[str, Any]) -> None:
        """The lock was free, but the file names a holder: make sure it is gone before taking over."""
        if previous.get("unreadable"):
            return  # not a record adgan wrote: nothing to check
        if previous.get("host") != socket.gethostname():
            raise ConfigError(
                f"{self.dir} is locked by a sweep on another machine ({describe(previous)}) and this machine "
                f"cannot tell whether it still runs; if it does not, remove {self.path}"
            )
        if process_alive(previous.get("pid"), previous.get("pid_start")):
            # Alive, yet the lock was free: the lock file was removed and recreated under the running sweep.
            raise self._in_use(previous)

    def _in_use(self, holder: dict[str, Any]) -> ConfigError:
        who = describe(holder) if holder else "a process that has not yet written its name"
        return ConfigError(
            f"{self.dir} is in use by another sweep ({who}); wait for it to end (or stop it), or give this "
            "one another --results"
        )

    def release(self) -> None:
        """Empty the lock file, then release the lock (the file stays: removing it would let a process that
        opened it just before lock a file no longer in the directory)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd = None
        self._remove_if_new()

    def _remove_if_new(self) -> None:
        """A directory this lock created that holds nothing but the lock file goes again (a refused sweep
        leaves no trace)."""
        if self._created and {p.name for p in self.dir.iterdir()} <= {LOCK_FILE}:
            self.path.unlink(missing_ok=True)
            self.dir.rmdir()
            self._created = False

    def __enter__(self) -> ResultsLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": process_start(os.getpid()),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    }


def _read(fd: int) -> dict[str, Any]:
    """The record in the lock file (empty when there is none or it is unreadable)."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode(errors="replace").strip()
    try:
        record = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"unreadable": True, "command": f"unreadable lock file: {text[:80]!r}"}
    return record if isinstance(record, dict) else {}


def _write(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record, indent=2) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
