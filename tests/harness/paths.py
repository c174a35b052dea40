"""Where the built artefacts live."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
ENVOY = VENV / "bin" / "envoy"
WASM_DIR = REPO / "target" / "wasm32-wasip1" / "release"
TOOLS_DIR = REPO / "target" / "tools"
MOCK_LLM = TOOLS_DIR / "mock-llm"
XDS = TOOLS_DIR / "aimesh-xds"
ENVOY_DIR = REPO / "envoy"

FILTERS = ["auth", "pii-redaction", "virtual-model", "token-accounting", "header-auth"]


PROBE_WASM = WASM_DIR / "aimesh_probe.wasm"
# The five filters as stages of one filter (filters/chain); config: one section per filter.
CHAIN_WASM = WASM_DIR / "aimesh_chain.wasm"
# `make build-trap`: token-accounting and the chain built with `trap-on-demand` (a request with
# `x-test-trap` traps the VM), for the failure-policy tests; never in WASM_DIR.
TRAP_WASM_DIR = REPO / "target" / "trap" / "wasm32-wasip1" / "release"
# The native build (filters/native, `make build-native`): libaimesh.so, an Envoy dynamic module
# found through ENVOY_DYNAMIC_MODULES_SEARCH_PATH (every Envoy the harness starts gets it).
NATIVE_DIR = REPO / "target" / "native"
NATIVE_MODULE = NATIVE_DIR / "libaimesh.so"


def build() -> str:
    """The filter build the tests run against: `AIMESH_BUILD` (`separate`, `chain`, `native`);
    `AIMESH_CHAIN=1` is the older spelling of `chain`."""
    import os
    b = os.environ.get("AIMESH_BUILD") or ("chain" if os.environ.get("AIMESH_CHAIN") == "1" else "separate")
    if b not in ("separate", "chain", "native"):
        raise ValueError(f"AIMESH_BUILD={b!r}: expected separate, chain or native")
    return b


def one_filter() -> bool:
    """True for the builds that run every stage in one filter (chain, native)."""
    return build() != "separate"


def wasm(filter_name: str) -> Path:
    """Path of a filter's built .wasm (`auth` -> aimesh_auth.wasm)."""
    return WASM_DIR / f"aimesh_{filter_name.replace('-', '_')}.wasm"
