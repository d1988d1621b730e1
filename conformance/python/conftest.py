"""Fixtures of the Python conformance suite.

One `switchboard dev` per test session, on free loopback ports; tokens are minted here
with the HS256 secret it prints (the suite never depends on the admin API). Every wait
has a timeout: a misbehaving server fails a test, it never hangs the run.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import socketio

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("SWITCHBOARD_BIN") or HERE / ".." / ".." / "target" / "debug" / "switchboard").resolve()

TENANT = "demo"
NS = f"/{TENANT}"
KID = "demo-hs256"
ALL_CAPS = {"*": ["subscribe", "publish", "presence"]}
TRANSPORTS = ["websocket", "polling"]
WAIT = float(os.environ.get("CONFORMANCE_WAIT_S", "5"))

_counter = itertools.count(1)


def unique(prefix: str = "u") -> str:
    """A name no other test of this run uses (users, rooms)."""
    return f"{prefix}-py{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


_UNSET = object()


class Server:
    def __init__(self, proc: subprocess.Popen, fields: dict[str, str], stderr_tail: list[str]):
        self.proc = proc
        self.url = fields["socket.io"]
        m = re.match(r"^(https?://[^/]+)", self.url)
        assert m, self.url
        self.origin = m.group(1)
        sm = re.search(r"secret=(\S+)", fields["demo key"])
        assert sm, fields["demo key"]
        self.secret = sm.group(1)
        self.client_token = fields["client token"]
        self._stderr_tail = stderr_tail

    def logs(self) -> str:
        return "".join(self._stderr_tail)

    def token(self, key: str | None = None, kid: str | None = KID, algorithm: str = "HS256", **claims: Any) -> str:
        """A signed token for tenant `demo`: a unique sub, exp in 10 minutes, all rights on
        all rooms, unless overridden. A claim given as None is left out."""
        body: dict[str, Any] = {"aud": TENANT, "sub": unique("user"), "exp": int(time.time()) + 600, "caps": ALL_CAPS}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(body, key if key is not None else self.secret, algorithm=algorithm, headers=headers)


class Client:
    """A socketio.Client on `/demo` that records every event it receives."""

    def __init__(self, server: Server, ns: str = NS):
        self.server = server
        self.ns = ns
        self.sio = socketio.Client(reconnection=False, request_timeout=WAIT)
        self.events: "queue.Queue[tuple[str, tuple]]" = queue.Queue()
        self.seen: list[tuple[str, tuple]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.connect_errors: list[Any] = []
        self.disconnects: list[Any] = []

        def catch_all(event, *args):
            with self._cond:
                self.seen.append((event, args))
                self._cond.notify_all()

        def on_connect_error(data=None):
            with self._cond:
                self.connect_errors.append(data)
                self._cond.notify_all()

        def on_disconnect(*args):
            with self._cond:
                self.disconnects.append(args)
                self._cond.notify_all()

        self.sio.on("*", catch_all, namespace=ns)
        self.sio.on("connect_error", on_connect_error, namespace=ns)
        self.sio.on("disconnect", on_disconnect, namespace=ns)

    def connect(self, transport: str = "websocket", auth: Any = None, headers: dict | None = None, query: str = "") -> None:
        self.sio.connect(
            self.server.origin + query,
            namespaces=[self.ns],
            auth=auth,
            headers=headers or {},
            transports=[transport],
            wait_timeout=WAIT,
        )

    def wait_for(self, pred, what: str, timeout: float = WAIT):
        """The first recorded (event, args) satisfying pred, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.seen:
                    if pred(*item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; seen {self.seen[:10]!r}")
                self._cond.wait(left)

    def event(self, name: str, timeout: float = WAIT, where=lambda *a: True):
        """The args of the first `name` event whose args satisfy `where`."""
        return self.wait_for(lambda e, a: e == name and where(*a), f"event {name!r}", timeout)[1]

    def received(self, name: str) -> list[tuple]:
        with self._cond:
            return [a for e, a in self.seen if e == name]

    def session(self, timeout: float = WAIT) -> dict:
        return self.event("session", timeout)[0]

    def call(self, event: str, data: Any = _UNSET, timeout: float = WAIT) -> Any:
        if data is _UNSET:
            return self.sio.call(event, namespace=self.ns, timeout=timeout)
        return self.sio.call(event, data, namespace=self.ns, timeout=timeout)

    def emit(self, event: str, data: Any) -> None:
        self.sio.emit(event, data, namespace=self.ns)

    def close(self, timeout: float = 3.0) -> None:
        """Disconnects, making sure the server hears it.

        python-engineio's polling writer can exit without sending the DISCONNECT/CLOSE
        packets when a POST is still in flight at disconnect time (a client-side race); the
        client then waits for the server's next ping (25 s) and the server only notices at
        its ping timeout. Waiting for in-flight packets first avoids that; the disconnect
        itself is bounded so that a teardown never hangs a run.
        """
        eio = self.sio.eio
        q = getattr(eio, "queue", None)
        deadline = time.monotonic() + timeout
        while q is not None and eio.state == "connected" and q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

        def run():
            try:
                self.sio.disconnect()
            except Exception:
                pass

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(max(deadline - time.monotonic(), 0.5))


@pytest.fixture(scope="session")
def server():
    if not BIN.exists():
        pytest.fail(f"switchboard binary not found at {BIN}: build it with `cargo build -p switchboard` or set SWITCHBOARD_BIN")
    admin_token = "conformance-" + secrets.token_hex(12)
    env = dict(os.environ, SWITCHBOARD_LOG_FORMAT="text", NO_COLOR="1")
    proc = subprocess.Popen(
        [str(BIN), "dev", "--edge-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--admin-token", admin_token],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()
    stderr_tail: list[str] = []

    def read_stdout():
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)
        lines.put(None)

    def read_stderr():
        for line in proc.stderr:  # type: ignore[union-attr]
            if os.environ.get("SWITCHBOARD_TEST_LOGS"):
                print(line, end="")
            stderr_tail.append(line)
            del stderr_tail[:-400]

    threading.Thread(target=read_stdout, daemon=True).start()
    threading.Thread(target=read_stderr, daemon=True).start()

    fields: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while not all(k in fields for k in ("socket.io", "demo key", "client token")):
        left = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(left, 0.01))
        except queue.Empty:
            line = ""
        if line is None or left <= 0:
            proc.kill()
            pytest.fail("no banner from `switchboard dev` within 30 s; stderr:\n" + "".join(stderr_tail))
        m = re.match(r"^([a-zA-Z .-]+):\s*(.+)$", (line or "").strip())
        if m:
            fields[m.group(1).strip().lower()] = m.group(2).strip()

    srv = Server(proc, fields, stderr_tail)
    try:
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def clients(server):
    """Makes clients and disconnects them all after the test."""
    made: list[Client] = []

    def make(ns: str = NS) -> Client:
        c = Client(server, ns)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def connected(server, clients):
    """Connects a client with a fresh token (claims merged) and waits for its `session`."""

    def make(transport: str = "websocket", **claims: Any) -> Client:
        c = clients()
        c.sub = claims.get("sub") or unique("user")
        claims["sub"] = c.sub
        c.connect(transport, auth={"token": server.token(**claims)})
        c.session()
        return c

    return make
