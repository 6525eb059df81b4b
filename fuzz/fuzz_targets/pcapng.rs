//! Fuzz target: osprey's pcapng reader (sensor/capture/pcapng.rs), then
//! the connection engine over every packet it hands out. A capture file is
//! input from outside (`osprey replay`): any bytes must give packets or an
//! error naming what is wrong, never a panic, and never an allocation
//! beyond the reader's stated block limit.
//!
//! Input: the file itself. Run on the stable toolchain with
//! `.ci/fuzz pcapng 60` (see .ci/fuzz); the seeds in fuzz/corpus/pcapng
//! come from fuzz/make_seeds.py.

#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use osprey::capture::pcapng::PcapNgReader;
use osprey::conn::{Engine, EngineConfig};

fuzz_target!(|input: &[u8]| {
    let Ok(mut reader) = PcapNgReader::open(Path::new("fuzz.pcapng"), Cursor::new(input), None)
    else {
        return;
    };
    let mut engine = Engine::new(EngineConfig {
        seed: Some(1),
        ignore_checksums: true,
        ..EngineConfig::default()
    });
    let mut out = Vec::new();
    let mut packets = 0u64;
    // The walk at open checked the file: reading it cannot fail.
    while let Some(p) = reader.next_packet().expect("a file that opened reads") {
        assert!(p.data.len() <= input.len());
        packets += 1;
        engine.process_packet(&p);
        engine.take_records(&mut out);
        out.clear();
    }
    assert_eq!(reader.stats().packets, packets);
    engine.finish();
});
