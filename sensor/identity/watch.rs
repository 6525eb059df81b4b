//! The watches that keep the indexes current. Each runs until its
//! directory is dropped, backing off while the API server is unreachable
//! or refuses (kube's watcher retries with exponential backoff); while it
//! cannot list, events name fewer endpoints, and the operator sees why
//! in one log line, `osprey_identity_watch_up` and a `/readyz` note —
//! detection never waits for it.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use super::index::{NodeIndex, PodIndex};
use super::metrics::IdentityMetrics;
use super::owner::Owners;
use crate::metrics::Health;

/// The `/readyz` note's key; its text is the last watch error.
pub(crate) const NOTE: &str = "pod identity degraded";

/// Whether a watch runs, told once per change to the log, the gauge and
/// the probe (a watch retrying every few seconds must not flood the log).
pub(crate) struct Status {
    resource: &'static str,
    op: &'static str,
    metrics: IdentityMetrics,
    health: Option<Arc<Health>>,
    up: Option<bool>,
}

impl Status {
    pub(crate) fn new(
        resource: &'static str,
        op: &'static str,
        metrics: IdentityMetrics,
        health: Option<Arc<Health>>,
    ) -> Status {
        metrics.watch_up.with_label_values(&[resource]).set(0);
        Status {
            resource,
            op,
            metrics,
            health,
            up: None,
        }
    }

    pub(crate) fn failed(&mut self, error: &dyn std::fmt::Display) {
        self.metrics.errors.with_label_values(&[self.op]).inc();
        if self.up == Some(false) {
            tracing::debug!(resource = self.resource, error = %error, "identity watch still failing; retrying");
            return;
        }
        self.up = Some(false);
        self.metrics
            .watch_up
            .with_label_values(&[self.resource])
            .set(0);
        tracing::warn!(
            resource = self.resource,
            error = %error,
            "pod identity degraded: cannot watch {}; events name fewer endpoints until it recovers (retrying with backoff)",
            self.resource
        );
        if let Some(h) = &self.health {
            h.set_note(
                NOTE,
                Some(format!("cannot watch {}: {error}", self.resource)),
            );
        }
    }

    pub(crate) fn listed(&mut self) {
        if self.up == Some(false) {
            tracing::info!(resource = self.resource, "identity watch recovered");
        }
        self.up = Some(true);
        self.metrics
            .watch_up
            .with_label_values(&[self.resource])
            .set(1);
        if let Some(h) = &self.health {
            h.set_note(NOTE, None);
        }
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    // Every update is a whole step, so a poisoned lock is still consistent.
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `index` current from a pod watch; owners are resolved before a
/// pod goes in, so a lookup never sees a pod without its workload.
pub(crate) fn spawn_pods(
    api: Api<Pod>,
    cfg: watcher::Config,
    index: Arc<RwLock<PodIndex>>,
    mut owners: Owners,
    mut status: Status,
    metrics: IdentityMetrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(api, cfg).default_backoff().boxed();
        // Filled during a (re)list and swapped in whole at its end, so a
        // lookup never sees a half-listed index.
        let mut fresh: Option<PodIndex> = None;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    status.failed(&e);
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => {
                    owners.clear();
                    fresh = Some(PodIndex::default());
                }
                watcher::Event::InitApply(p) => {
                    let w = owners.workload(&p).await;
                    if let Some(f) = fresh.as_mut() {
                        f.apply(&p, w);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(mut f) = fresh.take() {
                        f.synced = true;
                        let mut i = write(&index);
                        *i = f;
                        metrics.pods_known.set(i.len() as i64);
                    }
                    status.listed();
                }
                watcher::Event::Apply(p) => {
                    let w = owners.workload(&p).await;
                    let mut i = write(&index);
                    i.apply(&p, w);
                    metrics.pods_known.set(i.len() as i64);
                }
                watcher::Event::Delete(p) => {
                    let mut i = write(&index);
                    i.delete(&p);
                    metrics.pods_known.set(i.len() as i64);
                }
            }
        }
    })
}

/// Keeps `index` current from a watch of the cluster's nodes.
pub(crate) fn spawn_nodes(
    api: Api<Node>,
    index: Arc<RwLock<NodeIndex>>,
    mut status: Status,
    metrics: IdentityMetrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut fresh: Option<NodeIndex> = None;
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    status.failed(&e);
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => fresh = Some(NodeIndex::default()),
                watcher::Event::InitApply(n) => {
                    if let Some(f) = fresh.as_mut() {
                        f.apply(&n);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(mut f) = fresh.take() {
                        f.synced = true;
                        let mut i = write(&index);
                        *i = f;
                        metrics.nodes_known.set(i.len() as i64);
                    }
                    status.listed();
                }
                watcher::Event::Apply(n) => {
                    let mut i = write(&index);
                    i.apply(&n);
                    metrics.nodes_known.set(i.len() as i64);
                }
                watcher::Event::Delete(n) => {
                    let mut i = write(&index);
                    i.delete(&n);
                    metrics.nodes_known.set(i.len() as i64);
                }
            }
        }
    })
}

/// How often this host's own interface addresses are read again (a CNI
/// adds its bridge address when the first pod starts).
const HOST_REFRESH: Duration = Duration::from_secs(30);

/// This host's interface addresses: what `host` means in events.
pub(crate) fn host_addresses() -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| ifs.iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    found.sort();
    found.dedup();
    found
}

/// Reads the host's addresses again every [`HOST_REFRESH`].
pub(crate) fn spawn_host(host: Arc<RwLock<Vec<IpAddr>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HOST_REFRESH);
        loop {
            every.tick().await;
            let found = host_addresses();
            *write(&host) = found;
        }
    })
}
