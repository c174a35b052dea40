//! `aimesh_auth.wasm`: the auth stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
