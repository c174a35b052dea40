"""Fleet-wide limits: a Redis of the test's own and the `aimesh-limits` service in front of it.

`Redis()` starts `redis-server` on a free port with persistence off (`port=` restarts one on
the same port); `Limits(redis)` starts the service and reports its URL, which goes into
gateway.yaml's `limits.service`. `fleet_limits(limits, rules)` is gateway.yaml's long-form
`limits` section.
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request

from . import paths, procs

LIMITS = paths.TOOLS_DIR / "aimesh-limits"


def redis_server() -> str:
    path = shutil.which("redis-server")
    if not path:
        raise RuntimeError("redis-server missing: `make redis-tools` installs Debian's")
    return path


class Redis(procs._Proc):
    """`redis-server` on 127.0.0.1, no persistence: what a restart loses is what a Redis
    without persistence would."""

    name = "redis"

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        self.port = port or procs.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.start()

    def start(self) -> None:
        """Starts (or, after `stop`, restarts) the server on its port; empty, as a Redis without
        persistence comes back."""
        cmd = [redis_server(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
               "--appendonly", "no", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        procs._LIVE.append(self)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log()}")
            try:
                if self.command("PING") == "+PONG":
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server not ready:\n{self.log()}")

    def command(self, *args: str) -> str:
        """One command in RESP; the first line of the answer (`:12`, `$-1`, `+OK`), or the bulk
        string's value."""
        wire = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(wire.encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head.startswith(b"$") and head != b"$-1":
                n = int(head[1:])
                while len(rest) < n + 2:
                    rest += s.recv(65536)
                return rest[:n].decode()
            return head.decode()

    def get_int(self, key: str) -> int:
        v = self.command("GET", key)
        return 0 if v == "$-1" else int(v)


class Limits(procs._Proc):
    """The `aimesh-limits` service on a free port, in front of `redis`."""

    name = "limits"

    def __init__(self, redis: Redis, *, redis_timeout_ms: int = 100) -> None:
        super().__init__()
        cmd = [str(LIMITS), "--listen", "127.0.0.1:0", "--redis", redis.url,
               "--redis-timeout-ms", str(redis_timeout_ms)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"),
                                     start_new_session=True)
        procs._LIVE.append(self)
        line = self.proc.stdout.readline().decode() if self.proc.stdout else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"aimesh-limits did not start: {line!r} {self.log()}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Until `/healthz` says Redis answers (after a Redis restart)."""
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/healthz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"aimesh-limits never reached Redis:\n{self.log()[-2000:]}")
            time.sleep(0.05)


def fleet_limits(limits: Limits, rules: list[dict], *, timeout: str = "500ms",
                 failure: dict | None = None) -> dict:
    """gateway.yaml's `limits` counted on Redis through `limits`."""
    out: dict = {"store": "redis", "service": limits.url, "timeout": timeout, "rules": rules}
    if failure:
        out["failure"] = failure
    return out
