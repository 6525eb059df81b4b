//! Fuzz target: the Zeek conn.log reader (TSV with `#` headers, or JSON
//! lines) and the bundled models' features over whatever rows it accepts.
//! A conn.log is input from outside (`osprey featurize`, `osprey
//! calibrate`): any bytes must give rows or an error naming the line,
//! never a panic.
//!
//! Input: byte 0 picks the columns the caller needs (bit 0: the bundled
//! models' columns; otherwise only the identity columns); the rest is the
//! file.

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use osprey::drivers::featurize::needed_columns;
use osprey::features::zeek_log::read_conn_log_from;
use osprey::features::{featurize, FeatureSpec};

/// The bundled models' feature specs, loaded once.
fn specs() -> &'static [FeatureSpec] {
    static SPECS: OnceLock<Vec<FeatureSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        osprey::model::bundled::load_models(&[])
            .expect("the bundled models load")
            .iter()
            .map(|m| m.spec().clone())
            .collect()
    })
}

fuzz_target!(|input: &[u8]| {
    let Some((&sel, file)) = input.split_first() else {
        return;
    };
    let mut needed: Vec<&'static str> = Vec::new();
    if sel & 1 != 0 {
        for s in specs() {
            for c in needed_columns(s) {
                if !needed.contains(&c) {
                    needed.push(c);
                }
            }
        }
    }
    let Ok(flows) = read_conn_log_from(file, Path::new("fuzz.log"), &needed) else {
        return;
    };
    if sel & 1 != 0 {
        for s in specs() {
            let row = featurize(s, &flows, true);
            assert_eq!(row.len(), flows.len() * s.features.len());
        }
    }
});
