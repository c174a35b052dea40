"""A real Prometheus (Debian's `prometheus`) scraping an Envoy's admin `/stats/prometheus`, and
its HTTP query API, for the test that every panel of the Grafana dashboard returns data.

Prometheus cannot bind port 0 and report it, so it gets a port free a moment ago and is retried
on another one if that was taken in between. Its config and TSDB live in the process's own temp
dir; nothing touches /etc/prometheus or a system service.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

from . import procs

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class Prometheus(procs._Proc):
    """Scrapes `target` (`host:port` of an Envoy admin) every `interval`."""

    name = "prometheus"

    def __init__(self, target: str, interval: str = "1s", timeout: float = 30.0) -> None:
        super().__init__()
        self.target = target
        for _ in range(3):
            self.port = procs.free_port()
            if self._start(interval, timeout):
                break
            self.stop()
        else:
            raise RuntimeError(f"prometheus did not start:\n{self.log()[-4000:]}")
        self.url = f"http://127.0.0.1:{self.port}"

    def _start(self, interval: str, timeout: float) -> bool:
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{"job_name": "envoy", "metrics_path": "/stats/prometheus",
                                "static_configs": [{"targets": [self.target]}]}],
        }))
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=log, start_new_session=True)
        procs._LIVE.append(self)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def query(self, expr: str) -> list[dict]:
        """The instant vector of `expr` now (`/api/v1/query`): `[{"metric": {...}, "value": [t, "v"]}]`."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def scrapes(self) -> int:
        """Successful scrapes of the target so far (the `up` series' sample count over 10 min)."""
        r = self.query('count_over_time(up{job="envoy"}[10m])')
        return int(float(r[0]["value"][1])) if r else 0

    def wait_scrapes(self, n: int, timeout: float = 30.0) -> None:
        """Until `n` more scrapes than now have happened (so samples taken after now are in)."""
        want = self.scrapes() + n
        deadline = time.time() + timeout
        while self.scrapes() < want:
            if time.time() > deadline:
                raise TimeoutError(f"prometheus scraped fewer than {want} times:\n{self.log()[-2000:]}")
            time.sleep(0.25)
