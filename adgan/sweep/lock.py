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

**Results on an object store** (``s3://``, ``gs://``) have no OS lock: :class:`ObjectStoreLock` keeps the
same record in the object ``<results>/<sweep>/sweep.lock``, refreshed by the holder every
``HEARTBEAT_S`` seconds, and deleted when the sweep ends. A second sweep reads it before it starts: a
holder on this host is checked as above (alive: refused; gone: taken over); a holder on another host is
refused while its heartbeat is younger than ``STALE_S`` (it is alive, or died less than that ago: the
message says how long to wait) and taken over after. What it cannot do is what ``flock`` does: an object
store has no atomic "create if absent" that pyarrow exposes, so two sweeps started within the same second or
so could both believe they hold it (each re-reads the object after writing it, which catches most of that
race, and a holder whose record was overwritten says so at its next heartbeat). The kernel-backed
guarantee holds for local and NFS results only; on an object store the lock catches the usual mistake (a
second sweep on a running one, a resume while the driver still runs) with a clear message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from adgan.errors import ConfigError
from adgan.sweep.storage import Location, location

LOCK_FILE = "sweep.lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # flock's errors where locks are not supported
HEARTBEAT_S = 30.0  # how often the holder of an object-store lock rewrites it
STALE_S = 150.0  # an object-store lock whose holder on another host wrote nothing for this long is stale


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

    def __init__(self, directory: str | os.PathLike[str], name: str = LOCK_FILE, what: str = "sweep",
                 elsewhere: str = "--results") -> None:
        """``name``: the lock file's; ``what``: the kind of holder messages name (``adgan train`` locks its
        run folder as ``training run``); ``elsewhere``: the option that gives another directory."""
        self.dir = Path(directory)
        self.path = self.dir / name
        self.what, self.elsewhere = what, elsewhere
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
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
                # A file system without locks (NFS mounted without lockd, some FUSE mounts): the record
                # below still names the holder, but nothing stops a second process.
                print(f"adgan: warning: {self.dir}: this file system cannot lock files ({exc.strerror}); "
                      f"running without the lock: start no second {self.what} on this folder",
                      file=sys.stderr)
            previous = _read(fd)
            if previous:
                self._check_gone(previous)
                gone = describe(previous)
                print(f"adgan: {self.dir}: taking over the lock of a {self.what} that is gone ({gone})",
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
                f"{self.dir} is locked by a {self.what} on another machine ({describe(previous)}) and this "
                f"machine cannot tell whether it still runs; if it does not, remove {self.path}"
            )
        if process_alive(previous.get("pid"), previous.get("pid_start")):
            # Alive, yet the lock was free: the lock file was removed and recreated under the running sweep.
            raise self._in_use(previous)

    def _in_use(self, holder: dict[str, Any]) -> ConfigError:
        who = describe(holder) if holder else "a process that has not yet written its name"
        return ConfigError(
            f"{self.dir} is in use by another {self.what} ({who}); wait for it to end (or stop it), or give "
            f"this one another {self.elsewhere}"
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
        if self._created and {p.name for p in self.dir.iterdir()} <= {self.path.name}:
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


class ObjectStoreLock:
    """``with ObjectStoreLock(location):`` holds the lock of results on an object store (see the module
    docstring): a record refreshed by a heartbeat thread, checked by the next sweep before it starts.

    Raises:
        ConfigError: On entering, when another sweep holds the results (see the module docstring).
    """

    def __init__(
        self, directory: Location, *, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S
    ) -> None:
        self.dir = directory
        self.obj = directory.child(LOCK_FILE)
        self.heartbeat_s, self.stale_s = heartbeat_s, stale_s
        self.token = secrets.token_hex(8)
        self._record: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        previous = self._read()
        if previous:
            self._check_gone(previous)
            gone = describe(previous)
            print(f"adgan: {self.dir.uri}: taking over the lock of a sweep that is gone ({gone})",
                  file=sys.stderr)
        self._record = {**_holder(), "token": self.token, "heartbeat_unix": time.time()}
        self.obj.write_text(json.dumps(self._record, indent=2) + "\n")
        # Two sweeps that both found the lock free: the later write wins, and the earlier writer sees it.
        time.sleep(min(1.0, self.heartbeat_s))
        now = self._read()
        if now.get("token") != self.token:
            raise self._in_use(now)
        self._thread = threading.Thread(target=self._beat, name="adgan-lock-heartbeat", daemon=True)
        self._thread.start()

    def _check_gone(self, previous: dict[str, Any]) -> None:
        if previous.get("unreadable"):
            return
        if previous.get("host") == socket.gethostname():
            if process_alive(previous.get("pid"), previous.get("pid_start")):
                raise self._in_use(previous)
            return
        beat = previous.get("heartbeat_unix")
        age = time.time() - (beat if isinstance(beat, int | float) else (self.obj.mtime() or 0.0))
        if age < self.stale_s:
            raise ConfigError(
                f"{self.dir.uri} is in use by a sweep on another machine ({describe(previous)}), whose last "
                f"heartbeat was {age:.0f} s ago; wait for it to end (or stop it). If it is gone, its lock is "
                f"taken over once its heartbeat is {self.stale_s:.0f} s old, or remove {self.obj.uri}"
            )

    def _in_use(self, holder: dict[str, Any]) -> ConfigError:
        who = describe(holder) if holder else "a process that has not yet written its name"
        return ConfigError(
            f"{self.dir.uri} is in use by another sweep ({who}); wait for it to end (or stop it), or give "
            "this one another --results"
        )

    def _read(self) -> dict[str, Any]:
        try:
            text = self.obj.read_text().strip()
        except FileNotFoundError:
            return {}
        try:
            record = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return {"unreadable": True, "command": f"unreadable lock object: {text[:80]!r}"}
        return record if isinstance(record, dict) else {}

    def _beat(self) -> None:
        """Refresh the record (its heartbeat) until released; say so once if another sweep took it over."""
        warned = False
        while not self._stop.wait(self.heartbeat_s):
            try:
                now = self._read()
                if now.get("token") not in (None, self.token) and not warned:
                    warned = True
                    print(f"adgan: warning: {self.dir.uri}: another sweep took over this sweep's lock "
                          f"({describe(now)}); two sweeps now write these results", file=sys.stderr)
                if now.get("token") in (None, self.token):
                    self._record["heartbeat_unix"] = time.time()
                    self.obj.write_text(json.dumps(self._record, indent=2) + "\n")
            except Exception:  # noqa: BLE001 (a store unreachable for a while: the next beat tries again)
                continue

    def release(self) -> None:
        """Stop the heartbeat and delete the record, if it is still this sweep's."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        with contextlib.suppress(Exception):
            if self._read().get("token") == self.token:
                self.obj.delete()

    def __enter__(self) -> ObjectStoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def results_lock(directory: str | os.PathLike[str] | Location) -> ResultsLock | ObjectStoreLock:
    """The lock of a results directory: the OS lock for a local (or NFS) path, the record-and-heartbeat
    lock on an object store (see the module docstring)."""
    loc = directory if isinstance(directory, Location) else location(directory)
    return ResultsLock(loc.path) if loc.is_local else ObjectStoreLock(loc)
