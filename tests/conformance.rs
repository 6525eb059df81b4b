//! Zeek conn.log conformance (placeholder, being written).
#[test]
fn conformance_placeholder() {}
