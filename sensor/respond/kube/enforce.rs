//! Quarantine and block: from an action to applied objects.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use super::policy::{self, Stamp};
use super::retry::is_not_found;
use super::{Inner, KubeError, Outcome, PodRef};
use crate::respond::{Action, ActionKind};

/// Server-side apply as osprey, taking over fields another manager set:
/// the same content twice is a no-op, so retries and replays are safe.
pub(crate) fn apply_params() -> PatchParams {
    PatchParams::apply(policy::MANAGER).force()
}

/// Seconds since the epoch as a timestamp, clamped to jiff's range.
pub(crate) fn timestamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(Timestamp::MAX)
}

impl Inner {
    pub(crate) async fn quarantine(&self, action: &Action) -> Result<Outcome, KubeError> {
        expect_kind(action, &ActionKind::QuarantinePod)?;
        if !action.enforce {
            return Ok(Outcome::DryRun);
        }
        let pod = self.pod_of_target(action.target)?;
        let token = policy::short_hash(&pod.uid);
        let np = policy::quarantine_policy(
            &pod.namespace,
            &pod.name,
            &self.cfg.quarantine_label,
            &token,
            &self.stamp(action, expiry_secs(action)),
        );
        // The policy first: the moment the label lands, it is isolated.
        let name = self.apply_policy(&pod.namespace, &np).await?;
        self.label_pod(&pod.namespace, &pod.name, &token).await?;
        tracing::info!(
            namespace = %pod.namespace, pod = %pod.name, policy = %name,
            action = %action.id, "pod quarantined"
        );
        Ok(Outcome::Applied {
            namespace: pod.namespace,
            name,
        })
    }

    pub(crate) async fn block(&self, action: &Action, dst: IpAddr) -> Result<Outcome, KubeError> {
        expect_kind(action, &ActionKind::Block)?;
        let target = action.target.trunc();
        if target.prefix_len() == 0 {
            return Err(KubeError::TooBroad(target));
        }
        if !action.enforce {
            return Ok(Outcome::DryRun);
        }
        let pod = self.pod_for(dst).ok_or(KubeError::UnknownPod(dst))?;
        self.check_opt_in(&pod.namespace).await?;
        let selector = self.selector_of(&pod)?;
        let name = policy::block_name(&selector);
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), &pod.namespace);
        let _guard = self.block_lock.lock().await;
        let existing = self
            .retry
            .run(&self.metrics, "get_policy", "get", || api.get_opt(&name))
            .await
            .map_err(KubeError::api("get_policy"))?;
        let mut blocked = existing
            .as_ref()
            .map(policy::blocked_of)
            .unwrap_or_default();
        let now = Timestamp::now().as_second();
        blocked.retain(|_, end| *end > now);
        let end = expiry_secs(action);
        let e = blocked.entry(target).or_insert(end);
        *e = (*e).max(end);
        let latest = blocked.values().copied().max().unwrap_or(end);
        let np = policy::block_policy(
            &pod.namespace,
            &selector,
            &blocked,
            &self.stamp(action, latest),
        );
        let name = self.apply_policy(&pod.namespace, &np).await?;
        tracing::info!(
            namespace = %pod.namespace, policy = %name, %target,
            action = %action.id, "source blocked from pod"
        );
        Ok(Outcome::Applied {
            namespace: pod.namespace,
            name,
        })
    }

    fn pod_of_target(&self, target: IpNet) -> Result<PodRef, KubeError> {
        if target.prefix_len() != target.max_prefix_len() {
            return Err(KubeError::NotAnAddress(target));
        }
        let ip = target.addr();
        self.pod_for(ip).ok_or(KubeError::UnknownPod(ip))
    }

    fn stamp<'a>(&'a self, action: &'a Action, expires: i64) -> Stamp<'a> {
        Stamp {
            node: &self.cfg.node_name,
            action_id: &action.id,
            rule: &action.rule,
            expires_at: timestamp(expires),
        }
    }

    /// The pod's own labels (osprey's quarantine label left out): the
    /// policy then covers the pod's replicas too, which serve the same
    /// clients and would otherwise still take the blocked source's
    /// traffic. An empty selector would select the whole namespace.
    fn selector_of(&self, pod: &PodRef) -> Result<BTreeMap<String, String>, KubeError> {
        let mut sel = pod.labels.clone();
        sel.remove(&self.cfg.quarantine_label);
        if sel.is_empty() {
            return Err(KubeError::Unselectable {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
            });
        }
        Ok(sel)
    }

    async fn check_opt_in(&self, namespace: &str) -> Result<(), KubeError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = self
            .retry
            .run(&self.metrics, "get_namespace", "get", || api.get(namespace))
            .await
            .map_err(KubeError::api("get_namespace"))?;
        let key = &self.cfg.namespace_opt_in_annotation;
        let opted_in = ns
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .is_some_and(|v| v == "true");
        if opted_in {
            Ok(())
        } else {
            Err(KubeError::NotOptedIn {
                namespace: namespace.to_string(),
                annotation: key.clone(),
            })
        }
    }

    /// Server-side applies `np`; returns its name.
    pub(crate) async fn apply_policy(
        &self,
        namespace: &str,
        np: &NetworkPolicy,
    ) -> Result<String, KubeError> {
        let name = np.metadata.name.clone().unwrap_or_default();
        let api: Api<NetworkPolicy> = Api::namespaced(self.client.clone(), namespace);
        let pp = apply_params();
        let patch = Patch::Apply(np);
        self.retry
            .run(&self.metrics, "apply_policy", "apply", || {
                api.patch(&name, &pp, &patch)
            })
            .await
            .map_err(KubeError::api("apply_policy"))?;
        self.set_active(|a| {
            a.insert((namespace.to_string(), name.clone()));
        });
        Ok(name)
    }

    /// Sets osprey's quarantine label on a pod by server-side apply,
    /// touching no other label.
    pub(crate) async fn label_pod(
        &self,
        namespace: &str,
        name: &str,
        value: &str,
    ) -> Result<(), KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    self.cfg.quarantine_label.clone(),
                    value.to_string(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        let pp = apply_params();
        let patch = Patch::Apply(&pod);
        self.retry
            .run(&self.metrics, "label_pod", "apply", || {
                api.patch(name, &pp, &patch)
            })
            .await
            .map(|_| ())
            .map_err(KubeError::api("label_pod"))
    }

    /// Removes osprey's quarantine label by a JSON merge patch. Not by
    /// applying without the label: apply on a pod that is gone is a
    /// create, which the API server refuses (403, osprey may not create
    /// pods; or 422), where a merge patch answers 404, and a pod that is
    /// gone needs no label removed.
    pub(crate) async fn unlabel_pod(&self, namespace: &str, name: &str) -> Result<(), KubeError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch: Patch<serde_json::Value> = Patch::Merge(serde_json::json!({
            "metadata": { "labels": { self.cfg.quarantine_label.as_str(): null } }
        }));
        let pp = PatchParams::default();
        let res = self
            .retry
            .run(&self.metrics, "unlabel_pod", "patch", || {
                api.patch(name, &pp, &patch)
            })
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(KubeError::api("unlabel_pod")(e)),
        }
    }
}

fn expect_kind(action: &Action, want: &ActionKind) -> Result<(), KubeError> {
    if std::mem::discriminant(&action.kind) == std::mem::discriminant(want) {
        Ok(())
    } else {
        Err(KubeError::WrongKind {
            expected: want.name(),
            got: action.kind.name(),
        })
    }
}

/// When the action ends, whole seconds since the epoch (rounded up so a
/// one-second TTL never ends before it began).
fn expiry_secs(action: &Action) -> i64 {
    action.expires_ts().ceil() as i64
}
