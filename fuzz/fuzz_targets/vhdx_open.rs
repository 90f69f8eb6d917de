//! Fuzz target: damage a valid VHDX — a dirty dynamic disk, or a dirty differencing child with
//! its parent locator (offset/byte records, optional truncation) — then open, read, write and
//! check it. A panic is a bug; so is an open that refuses what check passes. Run with
//! `make fuzz`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vssim_engine::vhdx::fuzz;

fuzz_target!(|data: &[u8]| {
    fuzz::exercise_any(data);
});
