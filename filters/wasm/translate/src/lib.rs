//! `aimesh_translate.wasm`: the translate stage as its own filter (a cluster's upstream filter).

aimesh_glue::wasm_filter!(stage::STAGE);
