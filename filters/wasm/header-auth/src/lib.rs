//! `aimesh_header_auth.wasm`: the header-auth stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
