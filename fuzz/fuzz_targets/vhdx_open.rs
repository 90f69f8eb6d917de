//! Fuzz target: damage a valid VHDX (offset/byte records, optional truncation), then open, read,
//! write and check it. Any panic is a bug. Run with `make fuzz`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vssim_engine::vhdx::fuzz;

fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| fuzz::template().unwrap_or_default())
}

fuzz_target!(|data: &[u8]| {
    fuzz::exercise(template(), data);
});
