//! Expiry: this node's policies whose time is up are deleted (and their
//! quarantine labels removed); block policies lose their expired ranges.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};

use super::enforce::timestamp;
use super::policy::{self, Stamp};
use super::retry::is_not_found;
use super::{Inner, KubeError};

/// Runs [`Inner::collect_expired`] every `gc_interval_secs` until aborted.
pub(crate) fn spawn_loop(inner: Arc<Inner>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(inner.cfg.gc_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match inner.collect_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "expired network policies removed"),
                Err(e) => tracing::warn!(error = %e, "network policy expiry failed"),
            }
        }
    })
}

/// What to do with one listed policy.
enum Fate {
    Keep,
    Delete,
    /// A block policy that keeps some ranges: re-applied without the rest.
    Shrink(BTreeMap<ipnet::IpNet, i64>),
}

impl Inner {
    pub(crate) async fn collect_expired(&self) -> Result<usize, KubeError> {
        let api: Api<NetworkPolicy> = Api::all(self.client.clone());
        let lp = self.own_policies();
        let _guard = self.block_lock.lock().await;
        let list = self
            .retry
            .run(&self.metrics, "list_policies", "list", || api.list(&lp))
            .await
            .map_err(KubeError::api("list_policies"))?;
        let now = Timestamp::now();
        let mut deleted = 0;
        let mut remaining = BTreeSet::new();
        let mut first_err = None;
        for np in list.items {
            let (Some(ns), Some(name)) = (np.metadata.namespace.clone(), np.metadata.name.clone())
            else {
                continue;
            };
            let res = match fate(&np, now) {
                Fate::Keep => Ok(false),
                Fate::Delete => self.remove(&np, &ns, &name).await.map(|()| true),
                Fate::Shrink(blocked) => self.shrink(&np, &ns, blocked).await.map(|()| false),
            };
            match res {
                Ok(true) => deleted += 1,
                Ok(false) => {
                    remaining.insert((ns, name));
                }
                Err(e) => {
                    remaining.insert((ns, name));
                    first_err.get_or_insert(e);
                }
            }
        }
        self.set_active(|a| *a = remaining);
        match first_err {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    /// Lifts what this node's policies enforce on `net`: the quarantine
    /// of the pod that has the address, and `net`'s ranges (and ranges
    /// overlapping it) in block policies. Returns one line per policy
    /// changed (`quarantine ns/pod`, `block ns/policy`).
    pub(crate) async fn lift(&self, net: ipnet::IpNet) -> Result<Vec<String>, KubeError> {
        let api: Api<NetworkPolicy> = Api::all(self.client.clone());
        let lp = self.own_policies();
        let _guard = self.block_lock.lock().await;
        let list = self
            .retry
            .run(&self.metrics, "list_policies", "list", || api.list(&lp))
            .await
            .map_err(KubeError::api("list_policies"))?;
        let pod = (net.prefix_len() == net.max_prefix_len())
            .then(|| self.pod_for(net.addr()))
            .flatten();
        let mut lifted = Vec::new();
        let mut removed = Vec::new();
        for np in list.items {
            let (Some(ns), Some(name)) = (np.metadata.namespace.clone(), np.metadata.name.clone())
            else {
                continue;
            };
            match policy::label(&np, policy::LABEL_KIND) {
                Some(policy::KIND_QUARANTINE) => {
                    let of_pod = pod.as_ref().is_some_and(|p| {
                        p.namespace == ns
                            && policy::annotation(&np, policy::ANN_POD) == Some(p.name.as_str())
                    });
                    if of_pod {
                        self.remove(&np, &ns, &name).await?;
                        removed.push((ns.clone(), name.clone()));
                        let pod_name = policy::annotation(&np, policy::ANN_POD).unwrap_or("");
                        lifted.push(format!("quarantine {ns}/{pod_name}"));
                    }
                }
                Some(policy::KIND_BLOCK) => {
                    let mut blocked = policy::blocked_of(&np);
                    let before = blocked.len();
                    blocked.retain(|n, _| !(n.contains(&net) || net.contains(n)));
                    if blocked.len() == before {
                        continue;
                    }
                    if blocked.is_empty() {
                        self.remove(&np, &ns, &name).await?;
                        removed.push((ns.clone(), name.clone()));
                    } else {
                        self.shrink(&np, &ns, blocked).await?;
                    }
                    lifted.push(format!("block {ns}/{name}"));
                }
                _ => {}
            }
        }
        if !removed.is_empty() {
            self.set_active(|a| {
                for r in &removed {
                    a.remove(r);
                }
            });
        }
        Ok(lifted)
    }

    async fn remove(&self, np: &NetworkPolicy, ns: &str, name: &str) -> Result<(), KubeError> {
        if policy::label(np, policy::LABEL_KIND) == Some(policy::KIND_QUARANTINE) {
            if let Some(pod) = policy::annotation(np, policy::ANN_POD) {
                self.unlabel_pod(ns, pod).await?;
            }
        }
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams::default();
        match self
            .retry
            .run(&self.metrics, "delete_policy", "delete", || {
                api.delete(name, &dp)
            })
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(KubeError::api("delete_policy")(e)),
        }
        tracing::info!(namespace = %ns, policy = %name, "network policy deleted");
        Ok(())
    }

    async fn shrink(
        &self,
        np: &NetworkPolicy,
        ns: &str,
        blocked: BTreeMap<ipnet::IpNet, i64>,
    ) -> Result<(), KubeError> {
        let selector = np
            .spec
            .as_ref()
            .and_then(|s| s.pod_selector.as_ref())
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            // Not one osprey made (it never selects a whole namespace).
            return Ok(());
        }
        let latest = blocked.values().copied().max().unwrap_or(0);
        let stamp = Stamp {
            node: &self.cfg.node_name,
            action_id: policy::annotation(np, policy::ANN_ACTION_ID).unwrap_or_default(),
            rule: policy::annotation(np, policy::ANN_RULE).unwrap_or_default(),
            expires_at: timestamp(latest),
        };
        let fresh = policy::block_policy(ns, &selector, &blocked, &stamp);
        self.apply_policy(ns, &fresh).await.map(|_| ())
    }
}

fn fate(np: &NetworkPolicy, now: Timestamp) -> Fate {
    if policy::label(np, policy::LABEL_KIND) == Some(policy::KIND_BLOCK) {
        let mut blocked = policy::blocked_of(np);
        let before = blocked.len();
        blocked.retain(|_, end| *end > now.as_second());
        return if blocked.is_empty() {
            Fate::Delete
        } else if blocked.len() < before {
            Fate::Shrink(blocked)
        } else {
            Fate::Keep
        };
    }
    // An unreadable expiry is treated as expired: a policy osprey cannot
    // account for should not isolate a pod forever.
    let expires =
        policy::annotation(np, policy::ANN_EXPIRES_AT).and_then(|s| s.parse::<Timestamp>().ok());
    match expires {
        Some(t) if t > now => Fate::Keep,
        _ => Fate::Delete,
    }
}
