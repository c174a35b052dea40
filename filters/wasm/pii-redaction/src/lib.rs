//! `aimesh_pii_redaction.wasm`: the pii-redaction stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
