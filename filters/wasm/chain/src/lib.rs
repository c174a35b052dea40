//! `aimesh_chain.wasm`: every configured stage in one filter, facts shared in the VM.

aimesh_glue::wasm_module!("chain", stage::configure, aimesh_glue::FactsMode::Shared);
