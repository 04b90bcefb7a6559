"""An S3-compatible object store on 127.0.0.1 for tests: moto's standalone server, behind a TCP relay that a
test can cut to make the store unreachable for a while (and restore on the same port).

Test infrastructure (not part of the adgan package). Nothing listens on any other address: moto is started
with ``-H 127.0.0.1`` on a free port, the relay listens on another free port of 127.0.0.1 and forwards to it.
Clients (the test, the sweeps it starts, their Ray workers) reach the store through the relay, named by the
standard ``AWS_ENDPOINT_URL``; credentials are dummy values in the standard ``AWS_*`` variables.

Why a relay rather than stopping moto: moto keeps its buckets in memory only (its server has no persistence
option), so a restarted moto would come back empty. Cutting the relay closes its listening socket and every
open connection, which is what a client sees of a store that went away (connection refused); moto itself and
its objects stay.

Example::

    with S3Server() as s3:
        env = os.environ | s3.env
        uri = s3.bucket_uri("results")
        ... run something against uri with env ...
        with s3.outage():
            ... the store refuses connections here ...
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class Relay:
    """A TCP relay ``127.0.0.1:port -> 127.0.0.1:target`` in a thread; ``cut`` refuses connections (and drops
    the open ones) until ``restore``, on the same port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        """Listen again (on the same port)."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((LOOPBACK, self.port))
            listener.listen(64)
            self._listener = listener
            self._stop.clear()
            self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
            self._thread.start()

    def cut(self) -> None:
        """Stop listening and close every open connection: clients get 'connection refused' or a reset."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        self._stop.set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((LOOPBACK, self.target), timeout=10)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        try:
            # (inside the try: an outage may close the sockets before this thread registers them)
            sel.register(a, selectors.EVENT_READ, b)
            sel.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in sel.select(timeout=1.0):
                    data = key.fileobj.recv(1 << 16)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                if self._stop.is_set() and a not in self._conns:
                    return
        except (OSError, ValueError):
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns -= {a, b}

    def close(self) -> None:
        self.cut()


class S3Server:
    """moto's S3 server on 127.0.0.1 behind a :class:`Relay`; see the module docstring."""

    def __init__(self) -> None:
        self.moto_port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.relay: Relay | None = None
        self.env: dict[str, str] = {}

    def start(self, timeout: float = 60.0) -> S3Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((LOOPBACK, self.moto_port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start (rc={self.proc.poll()})") from None
                time.sleep(0.1)
        self.relay = Relay(self.moto_port)
        self.env = {
            "AWS_ACCESS_KEY_ID": "dummy-key-id-3c9e",  # dummy credentials: moto accepts any
            "AWS_SECRET_ACCESS_KEY": "dummy-secret-7f3a",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{self.relay.port}",
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups (169.254.169.254)
        }
        return self

    def client(self):  # noqa: ANN201 (a boto3 client; boto3 is a test dependency only)
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.env["AWS_ENDPOINT_URL"], region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def bucket_uri(self, prefix: str = "") -> str:
        """A new bucket (``s3://adgan-<random>/<prefix>``)."""
        name = f"adgan-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}/{prefix}".rstrip("/")

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The store is unreachable inside the block (connections refused), reachable again after it."""
        assert self.relay is not None
        self.relay.cut()
        try:
            yield
        finally:
            self.relay.restore()

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def aws_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process's environment inside the block (pyarrow reads it when it opens a store)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
