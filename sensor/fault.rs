//! Test-only fault injection: makes a named thread panic on purpose, so
//! that tests can check the daemon fails loudly (metrics/fail.rs).
//!
//! Compiled only into debug builds (`cfg(debug_assertions)`, which is what
//! `cargo test` builds the daemon with); in a release build [`point`] is an
//! empty inline function and no environment variable can make the sensor
//! panic.
//!
//! `OSPREY_TEST_PANIC=SITE` arms the site named `SITE` (`capture`, `conn`,
//! `scorer`, `responder`); `OSPREY_TEST_PANIC_AFTER_MS` (default 0) delays
//! the panic by that long after the first fault point is reached, so that
//! a test can see the daemon ready first.

/// Panics here if the test environment armed `site` and its delay is over.
/// Call it where a thread loops anyway (once per batch or tick, never per
/// packet).
#[cfg(debug_assertions)]
pub fn point(site: &'static str) {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    static ARMED: OnceLock<Option<(String, Instant)>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let site = std::env::var("OSPREY_TEST_PANIC").ok()?;
        let after_ms = std::env::var("OSPREY_TEST_PANIC_AFTER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Some((site, Instant::now() + Duration::from_millis(after_ms)))
    });
    if let Some((armed_site, at)) = armed {
        if armed_site == site && Instant::now() >= *at {
            panic!("injected fault at {site} (OSPREY_TEST_PANIC)");
        }
    }
}

/// Release builds: no fault can be injected.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_site: &'static str) {}
