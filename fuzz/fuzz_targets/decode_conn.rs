//! Fuzz target: the whole per-packet path of the connection engine on a
//! sequence of packets, then `finish()`. The input format and the checks
//! live in `fuzz/common/decode_conn.rs`, which `tests/robustness.rs` also
//! runs on every committed seed.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../common/decode_conn.rs"]
mod decode_conn;

fuzz_target!(|input: &[u8]| decode_conn::run(input));
