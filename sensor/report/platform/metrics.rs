//! The reporter's own metrics, registered on the daemon's registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metrics::{counter, counter_vec, gauge, Dropped};

#[derive(Clone)]
pub(crate) struct PlatformMetrics {
    pub(crate) deliveries: IntCounterVec,
    pub(crate) heartbeats: IntCounterVec,
    pub(crate) events: IntCounterVec,
    pub(crate) spool_bytes: IntGauge,
    pub(crate) spool_events: IntGauge,
    pub(crate) spool_dropped: IntCounter,
    pub(crate) spool_skipped: IntCounter,
    pub(crate) token_rejected: IntGauge,
    pub(crate) alerts_suppressed: IntCounter,
    pub(crate) actions_suppressed: IntCounter,
    pub(crate) events_rejected: IntCounterVec,
    pub(crate) dropped: Dropped,
}

impl PlatformMetrics {
    pub(crate) fn new(r: &Registry) -> Self {
        PlatformMetrics {
            dropped: Dropped::on(r),
            deliveries: counter_vec(
                r,
                "osprey_platform_deliveries_total",
                "Event batches posted to the platform, by outcome (ok; retry: kept \
                 spooled and sent again; rejected: refused as malformed or too large, \
                 and split to isolate the events at fault).",
                &["result"],
            ),
            heartbeats: counter_vec(
                r,
                "osprey_platform_heartbeats_total",
                "Heartbeats posted to the platform, by outcome (ok, failed).",
                &["result"],
            ),
            events: counter_vec(
                r,
                "osprey_platform_events_total",
                "Events submitted to the platform reporter, by kind.",
                &["kind"],
            ),
            spool_bytes: gauge(
                r,
                "osprey_platform_spool_bytes",
                "Bytes in the platform spool's segment files.",
            ),
            spool_events: gauge(
                r,
                "osprey_platform_spool_events",
                "Events spooled and not yet acknowledged by the platform.",
            ),
            spool_dropped: counter(
                r,
                "osprey_platform_spool_dropped_events_total",
                "Unacknowledged events lost because the spool was full (oldest \
                 first) or could not be written.",
            ),
            spool_skipped: counter(
                r,
                "osprey_platform_spool_skipped_lines_total",
                "Spool lines skipped as unreadable: a line torn by a crash, or corrupt.",
            ),
            alerts_suppressed: counter(
                r,
                "osprey_platform_alerts_suppressed_total",
                "Alerts not sent to the platform because platform.max_alerts_per_sec \
                 was reached (they are in alerts.log).",
            ),
            actions_suppressed: counter(
                r,
                "osprey_platform_actions_suppressed_total",
                "Alert actions not sent to the platform because \
                 platform.max_actions_per_sec was reached (they are in the action log); \
                 actions that enforce are always sent.",
            ),
            events_rejected: counter_vec(
                r,
                "osprey_platform_events_rejected_total",
                "Events dropped because the platform refused them on their own, by \
                 reason (malformed: 400; unprocessable: 422; too_large: 413).",
                &["reason"],
            ),
            token_rejected: gauge(
                r,
                "osprey_platform_token_rejected",
                "1 while the platform refuses the bearer token (401/403).",
            ),
        }
    }
}
