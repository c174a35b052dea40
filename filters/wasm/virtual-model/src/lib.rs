//! `aimesh_virtual_model.wasm`: the virtual-model stage as its own filter.

aimesh_glue::wasm_filter!(stage::STAGE);
