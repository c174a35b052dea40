//! `aimesh_mcp.wasm`: the mcp stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
