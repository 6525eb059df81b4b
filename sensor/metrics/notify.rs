//! systemd's notification protocol (`Type=notify`, `WatchdogSec=`): what
//! systemd/osprey.service relies on.
//!
//! - `READY=1` once capture runs and the models are loaded ([`ready`],
//!   called where the daemon marks capture as running), so `systemctl
//!   start` returns when the sensor actually sees traffic, and units
//!   ordered after osprey wait for that.
//! - `WATCHDOG=1` every half of `WATCHDOG_USEC`, from a task on the
//!   daemon's I/O runtime ([`supervise`]) and only while the sensor is
//!   ready as `/readyz` reports it: a wedged runtime (metrics, signals,
//!   responder) or a capture that has stopped stops the pings, and systemd
//!   restarts the service.
//! - `STOPPING=1` as soon as a stop signal begins the shutdown, so systemd
//!   knows the flush of open connections that follows is deliberate.
//!
//! Everything is a no-op when `NOTIFY_SOCKET` is unset (a container, a
//! shell, the tests), and a failed send is logged once, never fatal: the
//! sensor's work matters more than telling systemd about it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use super::Health;

/// Whether a send has failed already (logged once).
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

/// Whether systemd listens (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

fn send(state: &[NotifyState]) {
    if !enabled() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        if !SEND_FAILED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
        }
    }
}

/// `READY=1`: capture runs and the models are loaded.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("capturing")]);
}

/// Whether `STOPPING=1` was sent already.
static STOPPING_SENT: AtomicBool = AtomicBool::new(false);

/// `STOPPING=1`: the shutdown has begun. Said once: the signal handler
/// says it as the shutdown begins (a fast shutdown can end the runtime
/// before [`supervise`] ticks again), and [`supervise`] says it when it
/// sees the stop first.
pub fn stopping() {
    if STOPPING_SENT.swap(true, Ordering::Relaxed) {
        return;
    }
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: flushing open connections"),
    ]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as
/// sd_watchdog_enabled(3) advises; `None` when no watchdog is armed for
/// this process (`WATCHDOG_PID` names another one, or none is set).
pub fn watchdog_interval() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| (d / 2).max(Duration::from_millis(10)))
}

/// What [`supervise`] does on one tick.
#[derive(Debug, PartialEq, Eq)]
enum Tick {
    Ping,
    Skip,
    Stop,
}

fn tick(health: &Health) -> Tick {
    if health.stopping() {
        Tick::Stop
    } else if health.ready() {
        Tick::Ping
    } else {
        Tick::Skip
    }
}

/// Runs on the daemon's I/O runtime for the life of the process: pings
/// the watchdog while the sensor is ready, and says `STOPPING=1` once the
/// shutdown has begun. Returns at once when systemd is not listening.
pub async fn supervise(health: Arc<Health>) {
    if !enabled() {
        return;
    }
    let watchdog = watchdog_interval();
    // The stop is noticed within a quarter second; the watchdog is pinged
    // on the first tick after its interval has passed (by the clock, so a
    // runtime that was stalled does not stretch it), at most a quarter of
    // the interval late.
    let period = watchdog.map_or(Duration::from_millis(250), |w| {
        (w / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
    });
    let mut last_ping: Option<Instant> = None;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match tick(&health) {
            Tick::Stop => {
                stopping();
                return;
            }
            Tick::Ping => {
                if let Some(w) = watchdog {
                    if last_ping.is_none_or(|t| t.elapsed() >= w) {
                        send(&[NotifyState::Watchdog]);
                        last_ping = Some(Instant::now());
                    }
                }
            }
            // Not ready (starting, or capture has ended): no ping, so a
            // sensor that stays this way is restarted by the watchdog.
            Tick::Skip => last_ping = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_only_while_ready_and_stops_on_shutdown() {
        let h = Health::default();
        assert_eq!(tick(&h), Tick::Skip);
        h.set_capture_running(true);
        assert_eq!(tick(&h), Tick::Skip, "models not loaded yet");
        h.set_models_loaded(true);
        assert_eq!(tick(&h), Tick::Ping);
        h.set_capture_running(false);
        assert_eq!(tick(&h), Tick::Skip, "capture ended");
        h.set_capture_running(true);
        h.set_stopping();
        assert_eq!(tick(&h), Tick::Stop);
    }
}
