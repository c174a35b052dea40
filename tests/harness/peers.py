"""`make bench-peers`: aimesh next to the AI gateways people run today, same run, same upstream.

Systems: the fake upstream called directly (the baseline every "added" figure is against), plain
Envoy, Envoy with a no-op Wasm filter, Envoy with each aimesh filter alone, the full chain as
`make run` configures it, LiteLLM proxy and Portkey gateway. Every gateway gets one worker and
core 0; wrk, the TTFT client and the fake upstream get core 1. All systems run at once so the
concurrency-1 latency is measured in interleaved rounds (each round visits every system), which
spreads machine noise evenly instead of charging it to whichever ran during a hiccup.

Environment: PEERS_ROUNDS (default 5), PEERS_SECONDS (per round, default 2),
PEERS_SAT_SECONDS (default 5), PEERS_TTFT_N (default 50), PEERS_ONLY (comma list of names),
PEERS_PROFILE=0 to leave out the CPU profile (`harness.profile`, `harness.bench_host`).
"""
from __future__ import annotations

import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import bench, config, demo, paths, procs

ROUNDS = int(os.environ.get("PEERS_ROUNDS", "5"))
SECONDS = int(os.environ.get("PEERS_SECONDS", "2"))
SAT_SECONDS = int(os.environ.get("PEERS_SAT_SECONDS", "5"))
TTFT_N = int(os.environ.get("PEERS_TTFT_N", "50"))
PEERS = paths.REPO / ".peers"
LITELLM_VERSION = "1.106.10"
PORTKEY_VERSION = "1.15.2"
GATEWAY_CPU, LOAD_CPU = bench.ENVOY_CPU, bench.LOAD_CPU
KEY = "sk-aimesh-bench-" + "0" * 48


@dataclass
class System:
    name: str
    does: str
    url: str = ""
    headers: dict = field(default_factory=dict)
    pids: list = field(default_factory=list)
    stop: object = None
    p50s: list = field(default_factory=list)
    p99s: list = field(default_factory=list)
    rps: float = 0.0
    sat_p99: float = 0.0
    ttft_ms: float = 0.0
    rss_idle_mb: float = 0.0
    rss_load_mb: float = 0.0
    errors: int = 0


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the processes and all their descendants."""
    seen, todo, total = set(), list(pids), 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            todo.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


def wait_http(url: str, timeout: float = 120, headers: dict | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            host, port = url.split("//")[1].split("/")[0].split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=2)
            c.request("POST", "/v1/chat/completions", body=bench.chat_body(),
                      headers={"content-type": "application/json", **(headers or {})})
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer 200 in {timeout}s")


def start_envoy(name: str, does: str, cfg: dict) -> System:
    e = procs.Envoy(cfg, concurrency=1, cpus=GATEWAY_CPU, log_level="warn")
    return System(name, does, e.url, {"authorization": f"Bearer {KEY}"}, [e.proc.pid], e.stop)


def start_litellm(mock_port: int, tmp: Path) -> System:
    cfg = tmp / "litellm.yaml"
    cfg.write_text(json.dumps({
        "model_list": [{"model_name": bench.MODEL, "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "unused"}}],
        "general_settings": {"master_key": KEY},
    }))
    port = procs.free_port()
    log = open(tmp / "litellm.log", "wb")
    p = subprocess.Popen(["taskset", "-c", GATEWAY_CPU, str(PEERS / "litellm" / "bin" / "litellm"),
                          "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                         stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LITELLM_LOG": "ERROR"})
    url = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {KEY}"}
    wait_http(url, headers=headers)
    return System(f"LiteLLM {LITELLM_VERSION}", "master-key check, model alias routed to one OpenAI-compatible backend",
                  url, headers, [p.pid], lambda: (p.terminate(), p.wait()))


def start_portkey(mock_port: int, tmp: Path) -> System:
    port = procs.free_port()
    entry = PEERS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    log = open(tmp / "portkey.log", "wb")
    p = subprocess.Popen(["taskset", "-c", GATEWAY_CPU, "node", str(entry), f"--port={port}"],
                         stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    # The open-source Portkey gateway has no virtual keys: it forwards the caller's key.
    headers = {"authorization": "Bearer unused", "x-portkey-provider": "openai",
               "x-portkey-custom-host": f"http://127.0.0.1:{mock_port}/v1"}
    wait_http(url, headers=headers)
    return System(f"Portkey {PORTKEY_VERSION}", "route to one model by custom-host header (no key check: not in OSS)",
                  url, headers, [p.pid], lambda: (p.terminate(), p.wait()))


ONE_FILTER = "aimesh one-filter chain"
NATIVE = "aimesh native chain"


def systems(mock: procs.MockLLM, tmp: Path) -> list[System]:
    only = [s.strip() for s in os.environ.get("PEERS_ONLY", "").split(",") if s.strip()]
    cfgs = demo.filter_configs(KEY, unlimited=True)
    cluster = config.cluster("local-mock", mock.port)
    plans = [
        ("envoy (no filters)", "proxy only", lambda: config.gateway([], [cluster])),
        ("envoy + no-op wasm", "one Wasm filter that does nothing", lambda: config.gateway(
            [config.wasm_filter("probe", {}, wasm_path=str(paths.PROBE_WASM))], [cluster])),
    ]
    plans += [(f"envoy + {f}", f"aimesh {f} alone", (lambda f=f: config.gateway(
        [config.wasm_filter(f, cfgs[f])], [cluster]))) for f in paths.FILTERS]
    plans.append(("aimesh full chain", "all five filters as `make run` configures them (limits never reached)",
                  lambda: demo.demo_config(KEY, mock.port, unlimited=True, chain=False)))
    plans.append((ONE_FILTER, "the same five filters as stages of one filter (aimesh_chain.wasm)",
                  lambda: demo.build_config("chain", KEY, mock.port)))
    plans.append((NATIVE, "the same five stages as an Envoy dynamic module (libaimesh.so, no VM)",
                  lambda: demo.build_config("native", KEY, mock.port)))
    out = [System("upstream direct", "baseline: the fake upstream itself", mock.url, {}, [mock.proc.pid])]
    for name, does, make in plans:
        if not only or name in only:
            out.append(start_envoy(name, does, make()))
    if not only or any(o.startswith("LiteLLM") for o in only):
        out.append(start_litellm(mock.port, tmp))
    if not only or any(o.startswith("Portkey") for o in only):
        out.append(start_portkey(mock.port, tmp))
    return out


def lua(tmp: Path, s: System) -> Path:
    p = tmp / f"{abs(hash(s.name))}.lua"
    body = bench.chat_body().replace("]]", "] ]")
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body}]]", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in s.headers.items()]
    p.write_text("\n".join(lines) + "\n")
    return p


def ttft_ms(s: System) -> float:
    """Median time to the first streamed content byte over TTFT_N sequential requests."""
    host, port = s.url.split("//")[1].split(":")
    body = json.loads(bench.chat_body())
    body.update(stream=True)
    raw = json.dumps(body)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    samples = []
    for _ in range(TTFT_N + 3):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=raw,
                     headers={"content-type": "application/json", **s.headers})
        r = conn.getresponse()
        buf = b""
        while b"content" not in buf:
            chunk = r.read1(65536)
            if not chunk:
                break
            buf += chunk
        samples.append((time.perf_counter() - t0) * 1000)
        r.read()
    return statistics.median(samples[3:])


def run() -> list[System]:
    if LOAD_CPU:
        os.sched_setaffinity(0, {int(LOAD_CPU)})
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        mock = procs.MockLLM("bench", record=False, cpus=LOAD_CPU)
        started: list[System] = []
        try:
            started = systems(mock, tmp)
            scripts = {s.name: lua(tmp, s) for s in started}
            for s in started:
                s.rss_idle_mb = rss_mb(s.pids)
                bench.wrk(s.url + "/v1/chat/completions", scripts[s.name], 1)  # warm-up
            for r in range(ROUNDS):
                for s in started:
                    p50, p99, _, errors = bench.wrk(s.url + "/v1/chat/completions", scripts[s.name], 1,
                                                    seconds=SECONDS)
                    s.p50s.append(p50)
                    s.p99s.append(p99)
                    s.errors += errors
                print(f"  round {r + 1}/{ROUNDS} done", file=sys.stderr, flush=True)
            for s in started:
                proc = subprocess.Popen((["taskset", "-c", LOAD_CPU] if LOAD_CPU else []) + ["wrk", "-t1", f"-c{bench.SATURATION_CONNECTIONS}", f"-d{SAT_SECONDS}s",
                                         "--latency", "-s", str(scripts[s.name]), s.url + "/v1/chat/completions"],
                                        stdout=subprocess.PIPE, text=True)
                time.sleep(SAT_SECONDS / 2)
                s.rss_load_mb = rss_mb(s.pids)
                out = proc.communicate()[0]
                _, s.sat_p99, s.rps, errors = bench.parse_wrk(out)
                s.errors += errors
                s.ttft_ms = ttft_ms(s)
                print(f"  measured {s.name}", file=sys.stderr, flush=True)
        finally:
            for s in started:
                if s.stop and s.name != "upstream direct":
                    s.stop()
            mock.stop()
        return started


def versions() -> dict[str, str]:
    envoy = subprocess.run([str(paths.ENVOY), "--version"], capture_output=True, text=True).stdout.split("version:")[-1].strip()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {"machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "envoy": envoy, "litellm": LITELLM_VERSION, "portkey": f"{PORTKEY_VERSION} (node {node})",
            "python": platform.python_version()}


def report(results: list[System]) -> str:
    base = results[0]
    base_p50, base_p99 = statistics.median(base.p50s), statistics.median(base.p99s)
    plain = next((s for s in results if s.name == "envoy (no filters)"), None)
    lines = ["# Benchmarks", "", "Produced by `make bench-peers` (tests/harness/peers.py); do not edit by hand.", ""]
    lines += [f"- {k}: {v}" for k, v in versions().items()]
    lines += [f"- method: 1 KB chat request; concurrency 1 for {ROUNDS} interleaved rounds of {SECONDS}s "
              f"(median of rounds); saturation: {bench.SATURATION_CONNECTIONS} connections for {SAT_SECONDS}s; "
              f"TTFT: median of {TTFT_N} streamed requests; gateways on core {GATEWAY_CPU} with one worker, "
              f"load and upstream on core {LOAD_CPU}.", "",
              "| system | what it does | added p50 (µs) | added p99 (µs) | req/s at saturation | p99 at saturation (ms) "
              "| added TTFT (ms) | RSS idle / load (MB) | req/s vs plain Envoy | errors |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results:
        p50, p99 = statistics.median(s.p50s), statistics.median(s.p99s)
        added50 = "–" if s is base else f"{p50 - base_p50:+.0f}"
        added99 = "–" if s is base else f"{p99 - base_p99:+.0f}"
        ttft = "–" if s is base else f"{s.ttft_ms - base.ttft_ms:+.2f}"
        ratio = f"{s.rps / plain.rps:.2f}" if plain else "–"
        lines.append(f"| {s.name} | {s.does} | {added50} | {added99} | {s.rps:.0f} | {s.sat_p99 / 1000:.2f} | "
                     f"{ttft} | {s.rss_idle_mb:.0f} / {s.rss_load_mb:.0f} | {ratio} | {s.errors} |")
    chain = next((s for s in results if s.name == "aimesh full chain"), None)
    if chain:
        lines += ["", "Full chain against the others (throughput ratio at saturation):", ""]
        for s in results:
            if s is not chain and s is not base:
                lines.append(f"- {chain.name} / {s.name}: {chain.rps / s.rps:.2f}x")
    return "\n".join(lines) + "\n"


def floors(results: list[System]) -> str:
    """The issue's floors for the full chain (both builds), checked against this run."""
    by = {s.name: s for s in results}
    plain = by.get("envoy (no filters)")
    builds = [by[n] for n in ("aimesh full chain", ONE_FILTER) if n in by]
    if not builds or not plain:
        return ""
    lines = ["", "## Floors (issue 10), this run", "",
             "| build | floor | measured | required | met |", "|---|---|---:|---:|---|"]
    for chain in builds:
        rows = [("throughput vs plain Envoy", chain.rps / plain.rps, 0.5, "≥ 0.5×")]
        for peer, floor in ((f"LiteLLM {LITELLM_VERSION}", 50), (f"Portkey {PORTKEY_VERSION}", 6)):
            if peer in by:
                rows.append((f"throughput vs {peer}", chain.rps / by[peer].rps, floor, f"≥ {floor}×"))
        for name, value, floor, text in rows:
            lines.append(f"| {chain.name} | {name} | {value:.2f}× | {text} | {'yes' if value >= floor else 'no'} |")
        added = statistics.median(chain.p50s) - statistics.median(plain.p50s)
        lines.append(f"| {chain.name} | added p50 over plain Envoy (c=1) | {added:+.0f} µs | < 100 µs | "
                     f"{'yes' if added < 100 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    results = run()
    text = report(results) + floors(results)
    if os.environ.get("PEERS_PROFILE", "1") != "0":
        from . import bench_host, profile, stage_times  # where the chain's time goes (a profile)
        text += "\n## Where the full chain's time goes\n\n" + profile.run()
        text += "\n" + stage_times.run() + "\n"
        text += "\n" + bench_host.run()
    print(text)
    (paths.REPO / "docs" / "benchmarks.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
