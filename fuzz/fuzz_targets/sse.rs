//! The SSE tap never panics on any byte stream cut anywhere, and in pass-through mode (client
//! asked for usage) never changes a byte.
#![no_main]

use aimesh_core::accounting::sse::{Forward, SseTap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let size = usize::from(cut % 17) + 1;
    let mut passthrough = SseTap::new(false);
    let mut strip = SseTap::new(true);
    for chunk in stream.chunks(size) {
        assert!(matches!(passthrough.feed(chunk), Forward::Unchanged));
        let _ = strip.feed(chunk);
    }
    let _ = passthrough.finish();
    let _ = strip.finish();
});
