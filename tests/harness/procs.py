"""Processes under test: the fake upstream (`mock-llm`) and Envoy.

Both bind port 0 and report the port they got, so tests never race for fixed ports. Every
process started here is registered so the pytest hook can print its log when a test fails and
kill it when the test ends.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from . import paths

_LIVE: list["_Proc"] = []


def live() -> list["_Proc"]:
    """Processes started and not yet stopped."""
    return list(_LIVE)


class _Proc:
    name = "proc"

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"aimesh-{self.name}-"))
        self.log_path = self.dir / "log.txt"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _LIVE:
            _LIVE.remove(self)

    def kill(self) -> None:
        """SIGKILL, for crash tests."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    """A port free now, for programs that cannot bind port 0 and report it (peers in benchmarks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_prefix(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


class MockLLM(_Proc):
    """The fake OpenAI upstream. `records()` returns what it received, one dict per request."""

    name = "mock"

    def __init__(self, upstream_id: str = "mock", *, record: bool = True, cpus: str | None = None,
                 models: list[str] | None = None) -> None:
        super().__init__()
        self.id = upstream_id
        self.record_path = self.dir / "record.jsonl" if record else None
        cmd = _cpu_prefix(cpus) + [str(paths.MOCK_LLM), "--id", upstream_id, "--port", "0"]
        if self.record_path:
            cmd += ["--record", str(self.record_path)]
        if models:
            cmd += ["--models", ",".join(models)]
        log = open(self.log_path, "wb")
        # Own session: a terminal Ctrl-C reaches the parent, which stops children in order.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        _LIVE.append(self)
        line = self.proc.stdout.readline().decode() if self.proc.stdout else ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"mock-llm did not start: {line!r} {self.log()}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict]:
        if not self.record_path or not self.record_path.exists():
            return []
        return [json.loads(l) for l in self.record_path.read_text().splitlines() if l.strip()]

    def clear(self) -> None:
        if self.record_path and self.record_path.exists():
            self.record_path.write_text("")

    def served(self) -> dict:
        """Totals of what this upstream served: requests, prompt/completion tokens it reported,
        and replies that carried no usage."""
        return json.loads(urllib.request.urlopen(f"{self.url}/__mock/stats", timeout=5).read())

    def set_defaults(self, **controls) -> None:
        """Process-wide behaviour (status, latency_ms, health_status, ...), see controls.rs."""
        req = urllib.request.Request(f"{self.url}/__mock/defaults", data=json.dumps(controls).encode(),
                                     method="PUT")
        urllib.request.urlopen(req, timeout=5).read()


# Envoy writes file access logs (the audit log) every 10 s or per 64 KiB by default: audit lines
# showed up seconds late. Every 100 ms, they are there before anyone looks.
FILE_FLUSH_MS = 100


# Where Envoy finds the native build's libaimesh.so (`dynamic_modules` filter, module `aimesh`).
NATIVE_ENV = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(paths.NATIVE_DIR)}


class Envoy(_Proc):
    """Envoy started from a config dict; `port` is its first listener's bound port."""

    name = "envoy"

    def __init__(self, config: dict, *, concurrency: int = 2, log_level: str = "info",
                 cpus: str | None = None, extra_args: list[str] | None = None,
                 env: dict | None = None, timeout: float = 90.0) -> None:
        super().__init__()
        self.config = config
        self.config_path = self.dir / "envoy.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        admin_path = self.dir / "admin.txt"
        cmd = _cpu_prefix(cpus) + [
            str(paths.ENVOY), "-c", str(self.config_path),
            "--concurrency", str(concurrency),
            "--use-dynamic-base-id", "--base-id-path", str(self.dir / "base-id"),
            "--admin-address-path", str(admin_path),
            "-l", log_level, "--log-path", str(self.log_path),
            "--file-flush-interval-msec", str(FILE_FLUSH_MS),
        ] + (extra_args or [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                     env={**os.environ, **NATIVE_ENV, **(env or {})}, start_new_session=True)
        _LIVE.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}:\n{self.log()[-6000:]}")
            if admin_path.exists() and admin_path.read_text().strip():
                self.admin = "http://" + admin_path.read_text().strip()
                try:
                    if urllib.request.urlopen(f"{self.admin}/ready", timeout=1).status == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"envoy not ready in {timeout}s:\n{self.log()[-6000:]}")
        self.ports = self._listener_ports()
        # None: an Envoy that got no listener (tests of a control plane that refused it).
        self.port = next(iter(self.ports.values()), None)
        self.url = f"http://127.0.0.1:{self.port}"

    def _listener_ports(self) -> dict[str, int]:
        data = json.loads(self.admin_get("/listeners?format=json"))
        return {l["name"]: l["local_address"]["socket_address"]["port_value"]
                for l in data.get("listener_statuses", [])}

    def admin_get(self, path: str) -> str:
        return urllib.request.urlopen(f"{self.admin}{path}", timeout=5).read().decode()

    def stats(self, filter_: str = "") -> dict[str, int]:
        """Counters and gauges as a dict (histograms are left out)."""
        out: dict[str, int] = {}
        q = f"/stats?filter={filter_}" if filter_ else "/stats"
        for line in self.admin_get(q).splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def wait_stat(self, name: str, predicate, timeout: float = 5.0) -> int:
        """Polls a stat until `predicate(value)` holds; returns the last value."""
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            value = self.stats(name).get(name)
            if value is not None and predicate(value):
                return value
            time.sleep(0.05)
        raise AssertionError(f"stat {name} = {value} did not reach the expected value")
