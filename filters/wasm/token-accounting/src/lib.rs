//! `aimesh_token_accounting.wasm`: the token-accounting stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
