//! Pod addresses → pods, kept current by a watch.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;

use super::metrics::KubeMetrics;

/// The pod owning an address, as the enforcer needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
}

/// The index the watch maintains and lookups read.
#[derive(Default)]
pub(crate) struct PodIndex {
    by_ip: HashMap<IpAddr, PodRef>,
    /// Each pod's addresses by uid, to drop the old ones when a pod changes.
    ips_by_uid: HashMap<String, Vec<IpAddr>>,
    /// Whether a full list has been loaded since the start.
    synced: bool,
}

impl PodIndex {
    pub(crate) fn get(&self, ip: &IpAddr) -> Option<PodRef> {
        self.by_ip.get(ip).cloned()
    }

    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    pub(crate) fn len(&self) -> usize {
        self.ips_by_uid.len()
    }

    fn apply(&mut self, pod: &Pod) {
        let Some(p) = pod_ref(pod) else { return };
        self.remove_uid(&p.uid);
        let ips = pod_ips(pod);
        // A finished pod's address may already belong to a new pod.
        if ips.is_empty() || is_finished(pod) {
            return;
        }
        for ip in &ips {
            self.by_ip.insert(*ip, p.clone());
        }
        self.ips_by_uid.insert(p.uid, ips);
    }

    fn delete(&mut self, pod: &Pod) {
        if let Some(uid) = pod.metadata.uid.as_deref() {
            self.remove_uid(uid);
        }
    }

    fn remove_uid(&mut self, uid: &str) {
        for ip in self.ips_by_uid.remove(uid).unwrap_or_default() {
            // Only if the address still points at this pod: a newer pod
            // may have been applied with it first.
            if self.by_ip.get(&ip).is_some_and(|p| p.uid == uid) {
                self.by_ip.remove(&ip);
            }
        }
    }
}

fn pod_ref(pod: &Pod) -> Option<PodRef> {
    let m = &pod.metadata;
    Some(PodRef {
        namespace: m.namespace.clone()?,
        name: m.name.clone()?,
        uid: m.uid.clone()?,
        labels: m.labels.clone().unwrap_or_default(),
    })
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty() {
        if let Some(ip) = status.pod_ip.as_deref().and_then(|s| s.parse().ok()) {
            ips.push(ip);
        }
    }
    ips
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Spawns the watch that keeps `index` current; it runs until aborted,
/// backing off while the API server is unreachable.
pub(crate) fn spawn_watch(
    api: Api<Pod>,
    cfg: watcher::Config,
    index: Arc<RwLock<PodIndex>>,
    metrics: KubeMetrics,
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
                    metrics.errors.with_label_values(&["watch_pods"]).inc();
                    tracing::warn!(error = %e, "pod watch failed; retrying");
                    continue;
                }
            };
            match ev {
                watcher::Event::Init => fresh = Some(PodIndex::default()),
                watcher::Event::InitApply(p) => {
                    if let Some(f) = fresh.as_mut() {
                        f.apply(&p);
                    }
                }
                watcher::Event::InitDone => {
                    if let Some(mut f) = fresh.take() {
                        f.synced = true;
                        update(&index, &metrics, |i| *i = f);
                        metrics.requests.with_label_values(&["list", "ok"]).inc();
                    }
                }
                watcher::Event::Apply(p) => update(&index, &metrics, |i| i.apply(&p)),
                watcher::Event::Delete(p) => update(&index, &metrics, |i| i.delete(&p)),
            }
        }
    })
}

fn update(index: &RwLock<PodIndex>, metrics: &KubeMetrics, f: impl FnOnce(&mut PodIndex)) {
    // A panic elsewhere while holding the lock leaves a consistent map
    // (every update is a whole step), so a poisoned lock is still usable.
    let mut i = index.write().unwrap_or_else(|e| e.into_inner());
    f(&mut i);
    metrics.pods_known.set(i.len() as i64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodIP, PodStatus};
    use kube::api::ObjectMeta;

    fn pod(uid: &str, ip: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_address_moving_to_a_new_pod_survives_the_old_pods_delete() {
        let mut i = PodIndex::default();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        i.apply(&pod("a", "10.0.0.5"));
        i.apply(&pod("b", "10.0.0.5"));
        i.delete(&pod("a", "10.0.0.5"));
        assert_eq!(i.get(&ip).map(|p| p.uid), Some("b".into()));
        i.delete(&pod("b", "10.0.0.5"));
        assert!(i.get(&ip).is_none());
        assert_eq!(i.len(), 0);
    }
}
