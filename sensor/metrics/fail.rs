//! Failing loudly: what a panic anywhere in the daemon does.
//!
//! A thread that dies leaves a process that looks alive (the other threads
//! run, the port answers) but is not: a dead conn worker's shard drops
//! every packet, a dead responder enforces nothing, a dead capture thread
//! sees nothing. Only a restart heals that, so the first panic, in any
//! thread or tokio task:
//!
//! - names the thread, the place and the message in one `error` log line;
//! - counts `osprey_thread_panics_total`;
//! - makes `/readyz` and `/healthz` answer 503 with the reason, so the
//!   orchestrator stops sending traffic and restarts the pod;
//! - asks the pipeline to stop, so that open connections still reach
//!   conn.log and the daemon's `run` returns an error (exit status 1);
//! - and, whatever the rest of the process does (a stage may hang on a
//!   channel its dead peer owned), exits with [`EXIT_CODE`] after
//!   [`EXIT_GRACE`].
//!
//! Only the process-wide panic hook sees every thread and every tokio task
//! (tokio catches a task's panic and would otherwise only hand it to a
//! `JoinHandle` nobody may be awaiting yet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{IntCounter, Registry};

use super::Health;

/// How long the pipeline has to drain after a panic before the process
/// exits anyway: conn.log gets its open connections in well under a
/// second, and the orchestrator's restart should not wait for more.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The exit status when the grace period ends first (`EX_SOFTWARE`).
pub const EXIT_CODE: i32 = 70;

struct Armed {
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    panics: IntCounter,
    exiting: AtomicBool,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Installs the panic hook for the daemon (once per process; a second call
/// keeps the first registration). `stop` is the pipeline's stop flag.
pub fn install(health: Arc<Health>, stop: Arc<AtomicBool>, registry: &Registry) {
    let panics = super::counter(
        registry,
        "osprey_thread_panics_total",
        "Panics in any of the daemon's threads or tasks; the first makes /readyz fail and the process exit non-zero.",
    );
    let fresh = ARMED
        .set(Armed {
            health,
            stop,
            panics,
            exiting: AtomicBool::new(false),
        })
        .is_ok();
    if !fresh {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        on_panic(info);
        // The default hook prints the message (and a backtrace when asked).
        previous(info);
    }));
}

fn on_panic(info: &std::panic::PanicHookInfo<'_>) {
    let current = std::thread::current();
    let thread = current.name().unwrap_or("unnamed").to_owned();
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(
        thread = %thread,
        location = %location,
        message = %message,
        "thread panicked: the sensor stops and exits non-zero so that it is restarted"
    );
    let Some(armed) = ARMED.get() else {
        return;
    };
    armed.panics.inc();
    armed
        .health
        .set_failed(format!("thread {thread} panicked at {location}"));
    armed.stop.store(true, Ordering::Release);
    if !armed.exiting.swap(true, Ordering::AcqRel) {
        // A thread of its own: the panicking one is unwinding, and may be
        // the one every other stage waits for.
        let _ = std::thread::Builder::new()
            .name("osprey-exit".into())
            .spawn(|| {
                std::thread::sleep(EXIT_GRACE);
                eprintln!(
                    "osprey: a thread panicked and the pipeline did not stop within {EXIT_GRACE:?}; exiting"
                );
                std::process::exit(EXIT_CODE);
            });
    }
}
