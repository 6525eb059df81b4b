//! `[platform]` in the configuration file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::PlatformError;

/// Where and how the sensor reports to the management platform.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// Base URL of the platform API (`https://platform.example:8443`).
    /// Unset turns the reporter off: a sensor without a platform still
    /// writes its logs.
    pub url: Option<String>,
    /// Path of the events endpoint under `url`; configurable so that a
    /// platform behind a path-routing gateway needs no rewrite rule.
    pub events_path: String,
    /// Path of the heartbeat endpoint under `url`, for the same reason.
    pub heartbeat_path: String,
    /// File holding the bearer token, a mounted Secret: a file rather than
    /// a config value so the token never lands in a ConfigMap, and read
    /// again whenever it changes so rotation needs no restart.
    pub token_file: Option<PathBuf>,
    /// Where undelivered events wait; on a hostPath so they survive a pod
    /// restart while the platform is unreachable.
    pub spool_dir: PathBuf,
    /// Disk the spool may use before the oldest events are dropped: an
    /// outage of the platform must not fill the node's disk.
    pub spool_max_bytes: u64,
    /// Size of one spool file; space is reclaimed a whole file at a time,
    /// so smaller files free acknowledged events sooner.
    pub segment_bytes: u64,
    /// Events per POST: larger batches cost the platform fewer requests
    /// during an alert storm.
    pub batch_events: usize,
    /// Longest an event waits for its batch to fill, which bounds how
    /// late the platform hears of a lone alert.
    pub batch_max_wait_ms: u64,
    /// Per-request timeout, so a platform that accepts connections but
    /// never answers does not stall delivery forever.
    pub timeout_secs: u64,
    /// First retry delay after a failure; later ones double (with full
    /// jitter, so a fleet of sensors does not retry in lock-step).
    pub backoff_initial_ms: u64,
    /// Ceiling of the retry delay; also the pace of retries while the
    /// platform refuses the token, to avoid hammering it.
    pub backoff_max_secs: u64,
    /// Heartbeat period: how soon the platform can tell a sensor is gone.
    pub heartbeat_interval_secs: u64,
    /// Alert events per second sent to the platform (burst: as many);
    /// beyond it alerts are counted, not sent. A flood flags every one of
    /// its connections: alerts.log keeps them all, the platform gets a
    /// sample and the flood's actions, and the spool is not flushed out
    /// by one attack. Actions have their own cap, `max_actions_per_sec`.
    pub max_alerts_per_sec: u32,
    /// Alert actions per second sent to the platform (burst: as many);
    /// beyond it they are counted, not sent (the action log keeps them).
    /// A flood from many forged sources turns, once a circuit breaker
    /// opens, into one alert action per source: without a cap they would
    /// flush the spool as alerts would. Actions that enforce (block, rate
    /// limit, quarantine, hook; in dry run too) are always sent: the
    /// breakers already bound them per minute, and the platform must know
    /// every enforcement in force.
    pub max_actions_per_sec: u32,
    /// At shutdown, the longest the last delivery attempt may take: the
    /// events of the final flush are sent before exit when the platform is
    /// up, and a platform that is down or slow cannot hold the exit (what
    /// is not delivered stays spooled). 0: no last attempt.
    pub shutdown_delivery_ms: u64,
    /// How often appended events are fsynced: a power loss loses at most
    /// this much; a process crash loses nothing either way.
    pub sync_interval_ms: u64,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        PlatformConfig {
            url: None,
            events_path: "/api/v1/anomaly-detection/events".into(),
            heartbeat_path: "/api/v1/anomaly-detection/heartbeat".into(),
            token_file: None,
            spool_dir: "/var/lib/osprey/spool".into(),
            spool_max_bytes: 256 << 20,
            segment_bytes: 4 << 20,
            batch_events: 500,
            batch_max_wait_ms: 1000,
            timeout_secs: 10,
            backoff_initial_ms: 500,
            backoff_max_secs: 60,
            heartbeat_interval_secs: 60,
            max_alerts_per_sec: 100,
            max_actions_per_sec: 100,
            shutdown_delivery_ms: 2000,
            sync_interval_ms: 1000,
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> PlatformError {
    PlatformError::Config {
        key,
        reason: reason.into(),
    }
}

impl PlatformConfig {
    /// Checks what serde cannot; errors name the key.
    pub fn validate(&self) -> Result<(), PlatformError> {
        if let Some(url) = &self.url {
            let u = reqwest::Url::parse(url).map_err(|e| invalid("url", format!("{url}: {e}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(invalid("url", format!("{url}: not http or https")));
            }
        }
        for (key, path) in [
            ("events_path", &self.events_path),
            ("heartbeat_path", &self.heartbeat_path),
        ] {
            if !path.starts_with('/') {
                return Err(invalid(key, format!("{path:?} does not start with /")));
            }
        }
        if self.segment_bytes == 0 {
            return Err(invalid("segment_bytes", "must be positive"));
        }
        if self.spool_max_bytes < 2 * self.segment_bytes {
            return Err(invalid(
                "spool_max_bytes",
                "must hold at least two segments (2 × segment_bytes)",
            ));
        }
        for (key, v) in [
            ("batch_events", self.batch_events as u64),
            ("timeout_secs", self.timeout_secs),
            ("backoff_initial_ms", self.backoff_initial_ms),
            ("backoff_max_secs", self.backoff_max_secs),
            ("heartbeat_interval_secs", self.heartbeat_interval_secs),
            ("sync_interval_ms", self.sync_interval_ms),
            ("max_alerts_per_sec", u64::from(self.max_alerts_per_sec)),
            ("max_actions_per_sec", u64::from(self.max_actions_per_sec)),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let c = PlatformConfig {
            url: Some("not a url".into()),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("platform.url:"));
        let c = PlatformConfig {
            spool_max_bytes: 1,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("platform.spool_max_bytes:"));
        PlatformConfig::default().validate().unwrap();
    }
}
