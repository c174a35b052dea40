"""Fixtures for the real-Envoy tests. Logs of every process a failed test started are printed."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import audit, demo, paths, procs  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for p in procs.live():
            report.sections.append((f"{p.name} log ({p.log_path})", p.log()[-20000:]))


@pytest.fixture(autouse=True)
def _stop_processes():
    """Whatever a test starts is killed when it ends, pass or fail."""
    before = set(map(id, procs.live()))
    yield
    for p in procs.live():
        if id(p) not in before:
            p.stop()


@pytest.fixture(autouse=True)
def _audit_lines_match_the_schema():
    """Every audit-log line a test produced follows docs/audit-log.schema.json, checked once the
    test's processes are stopped (Envoy flushes its logs on exit)."""
    audit.take_registered()
    before = set(map(id, procs.live()))
    yield
    for p in procs.live():
        if id(p) not in before:
            p.stop()
    for log in audit.take_registered():
        if log.exists():
            audit.check(log)


@pytest.fixture(scope="session", autouse=True)
def _artefacts_built():
    missing = [str(p) for p in [paths.ENVOY, paths.MOCK_LLM] + [paths.wasm(f) for f in paths.FILTERS]
               if not p.exists()]
    if missing:
        pytest.exit(f"build artefacts missing (run `make build setup`): {missing}", returncode=2)


@pytest.fixture
def mock():
    m = procs.MockLLM("mock")
    yield m
    m.stop()
