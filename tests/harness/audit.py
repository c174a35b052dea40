"""The audit log's contract: every line a test produced is checked against
docs/audit-log.schema.json (by the autouse fixture in tests/e2e/conftest.py)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from . import paths

SCHEMA = json.loads((paths.REPO / "docs" / "audit-log.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# Marks an access-log format as the audit line (its fields read the filter's typed record).
RECORD = "wasm.aimesh.audit"

# The native build keeps the same record in dynamic metadata (namespace `aimesh.audit`): a
# dynamic module cannot declare a typed filter-state property.
NATIVE_NAMESPACE = "aimesh.audit"

_LOGS: list[Path] = []


def native_fields(fields: dict) -> dict:
    """The audit line's fields as the native build's access log reads them: each typed-record
    field (`wasm.aimesh.audit`, and any other declared record) from the dynamic-metadata
    namespace of the record's name instead of the Wasm builds' typed filter state."""
    out = {}
    for k, v in fields.items():
        prefix = "%TYPED_CEL(filter_state['wasm."
        if isinstance(v, str) and v.startswith(prefix) and "']." in v and v.endswith(")%"):
            record, field = v[len(prefix):-2].split("'].", 1)
            v = f"%DYNAMIC_METADATA({record}:{field})%"
        out[k] = v
    return out


def is_audit_format(fmt: dict) -> bool:
    """True when an access-log format is the audit line (either build's)."""
    return any(RECORD in str(v) or f"({NATIVE_NAMESPACE}:" in str(v) for v in fmt.values())


def register(path: str | Path) -> None:
    """Remembers an audit log written during the current test (files only, not /dev/stdout)."""
    p = Path(path)
    if str(p).startswith("/dev/"):
        return
    _LOGS.append(p)


def take_registered() -> list[Path]:
    """The audit logs registered since the last call."""
    out = list(_LOGS)
    _LOGS.clear()
    return out


def errors(line: dict) -> list[str]:
    """Schema violations of one parsed line (empty when valid)."""
    return [f"{'/'.join(map(str, e.path)) or '(line)'}: {e.message}" for e in _VALIDATOR.iter_errors(line)]


def check(path: Path) -> list[dict]:
    """Every line of an audit log, parsed; raises AssertionError naming the first bad line."""
    out = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip():
            continue
        line = json.loads(raw)
        bad = errors(line)
        assert not bad, f"{path}:{n} breaks docs/audit-log.schema.json: {bad}\n{raw}"
        out.append(line)
    return out
