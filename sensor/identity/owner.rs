//! Which workload a pod belongs to, following its controller's
//! ownerReferences as `kubectl` and Hubble name them: a ReplicaSet's
//! Deployment, a Job's CronJob, and a StatefulSet, DaemonSet or any other
//! controller as itself.
//!
//! Only two kinds need a second object: the Deployment and CronJob
//! controllers create an intermediate one (ReplicaSet, Job) that owns the
//! pods. Those are fetched once per name and cached; when a fetch fails
//! (no `get` on replicasets in the role, API server away) a pod is named
//! by what it carries: the Deployment controller labels both the
//! ReplicaSet and its pods `pod-template-hash=<h>` and names the
//! ReplicaSet `<deployment>-<h>`, so the Deployment is the name's prefix.
//! Anything else falls back to the intermediate object itself.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use super::metrics::IdentityMetrics;

/// A workload as Kubernetes names it: `{"kind":"Deployment","name":"web"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

impl Workload {
    fn new(kind: &str, name: &str) -> Workload {
        Workload {
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// The controller among an object's ownerReferences (the one marked
/// `controller: true`; else the first, as older objects may lack it).
pub(crate) fn controller(meta: &ObjectMeta) -> Option<(&str, &str)> {
    let refs = meta.owner_references.as_deref()?;
    refs.iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())
        .map(|r| (r.kind.as_str(), r.name.as_str()))
}

/// What a pod's own metadata says about its workload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FirstStep {
    /// Named without looking further (none for a pod without controller).
    Done(Option<Workload>),
    /// Owned by a ReplicaSet or Job, whose own controller names it.
    Parent { kind: &'static str, name: String },
}

pub(crate) fn first_step(pod: &Pod) -> FirstStep {
    match controller(&pod.metadata) {
        None => FirstStep::Done(None),
        Some(("ReplicaSet", name)) => FirstStep::Parent {
            kind: "ReplicaSet",
            name: name.to_owned(),
        },
        Some(("Job", name)) => FirstStep::Parent {
            kind: "Job",
            name: name.to_owned(),
        },
        Some((kind, name)) => FirstStep::Done(Some(Workload::new(kind, name))),
    }
}

/// The workload of a pod whose controller is the `kind` object `name`,
/// given that object's metadata (`None` when it could not be fetched).
pub(crate) fn through_parent(
    pod: &Pod,
    kind: &str,
    name: &str,
    parent: Option<&ObjectMeta>,
) -> Workload {
    if let Some((k, n)) = parent.and_then(controller) {
        return Workload::new(k, n);
    }
    if parent.is_none() && kind == "ReplicaSet" {
        if let Some(d) = deployment_by_name(pod, name) {
            return Workload::new("Deployment", d);
        }
    }
    Workload::new(kind, name)
}

/// `<deployment>-<pod-template-hash>`: the Deployment controller's naming
/// of its ReplicaSets, used only when the ReplicaSet cannot be read.
fn deployment_by_name<'a>(pod: &Pod, rs: &'a str) -> Option<&'a str> {
    let hash = pod.metadata.labels.as_ref()?.get("pod-template-hash")?;
    rs.strip_suffix(hash.as_str())?
        .strip_suffix('-')
        .filter(|d| !d.is_empty())
}

/// At most this many ReplicaSets and Jobs are remembered; beyond, the
/// cache starts over (a ReplicaSet per Deployment revision on the node).
const MAX_CACHED: usize = 4096;

/// Fetches ReplicaSets and Jobs by name, remembering their controller.
pub(crate) struct Owners {
    client: Option<Client>,
    metrics: IdentityMetrics,
    /// (kind, namespace, name) -> the object's metadata, or none when it
    /// could not be read.
    cache: HashMap<(&'static str, String, String), Option<ObjectMeta>>,
}

impl Owners {
    pub(crate) fn new(client: Option<Client>, metrics: IdentityMetrics) -> Owners {
        Owners {
            client,
            metrics,
            cache: HashMap::new(),
        }
    }

    /// Forgets every owner: a relist may follow changes the watch missed.
    pub(crate) fn clear(&mut self) {
        self.cache.clear();
    }

    /// The workload `pod` belongs to (none: no controller).
    pub(crate) async fn workload(&mut self, pod: &Pod) -> Option<Workload> {
        let (kind, name) = match first_step(pod) {
            FirstStep::Done(w) => return w,
            FirstStep::Parent { kind, name } => (kind, name),
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let key = (kind, ns, name);
        if !self.cache.contains_key(&key) {
            let meta = self.fetch(kind, &key.1, &key.2).await;
            if self.cache.len() >= MAX_CACHED {
                self.cache.clear();
            }
            self.cache.insert(key.clone(), meta);
        }
        let parent = self.cache.get(&key).and_then(Option::as_ref);
        Some(through_parent(pod, kind, &key.2, parent))
    }

    async fn fetch(&self, kind: &'static str, ns: &str, name: &str) -> Option<ObjectMeta> {
        let client = self.client.clone()?;
        let (op, got) = match kind {
            "ReplicaSet" => (
                "get_replicaset",
                Api::<ReplicaSet>::namespaced(client, ns)
                    .get_opt(name)
                    .await
                    .map(|o| o.map(|o| o.metadata)),
            ),
            _ => (
                "get_job",
                Api::<Job>::namespaced(client, ns)
                    .get_opt(name)
                    .await
                    .map(|o| o.map(|o| o.metadata)),
            ),
        };
        match got {
            Ok(meta) => meta,
            Err(e) => {
                self.metrics.errors.with_label_values(&[op]).inc();
                tracing::debug!(kind, namespace = ns, name, error = %e, "owner lookup failed; naming the pod by what it carries");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owned(kind: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            namespace: Some("ns".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: kind.into(),
                name: name.into(),
                uid: format!("uid-{name}"),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    fn pod_of(kind: &str, name: &str) -> Pod {
        Pod {
            metadata: owned(kind, name),
            ..Default::default()
        }
    }

    fn resolve(pod: &Pod, parent: Option<&ObjectMeta>) -> Option<Workload> {
        match first_step(pod) {
            FirstStep::Done(w) => w,
            FirstStep::Parent { kind, name } => Some(through_parent(pod, kind, &name, parent)),
        }
    }

    #[test]
    fn a_replicaset_names_its_deployment() {
        let pod = pod_of("ReplicaSet", "web-7d4b9c");
        let rs = owned("Deployment", "web");
        assert_eq!(
            resolve(&pod, Some(&rs)),
            Some(Workload::new("Deployment", "web"))
        );
    }

    #[test]
    fn a_job_names_its_cronjob_and_a_bare_job_itself() {
        let pod = pod_of("Job", "backup-28999");
        let job = owned("CronJob", "backup");
        assert_eq!(
            resolve(&pod, Some(&job)),
            Some(Workload::new("CronJob", "backup"))
        );
        let bare = ObjectMeta::default();
        assert_eq!(
            resolve(&pod, Some(&bare)),
            Some(Workload::new("Job", "backup-28999"))
        );
    }

    #[test]
    fn statefulsets_and_daemonsets_name_themselves_and_a_bare_pod_has_none() {
        assert_eq!(
            resolve(&pod_of("StatefulSet", "db"), None),
            Some(Workload::new("StatefulSet", "db"))
        );
        assert_eq!(
            resolve(&pod_of("DaemonSet", "osprey"), None),
            Some(Workload::new("DaemonSet", "osprey"))
        );
        assert_eq!(resolve(&Pod::default(), None), None);
    }

    #[test]
    fn an_unreadable_replicaset_is_named_by_the_pod_template_hash() {
        let mut pod = pod_of("ReplicaSet", "web-7d4b9c");
        assert_eq!(
            resolve(&pod, None),
            Some(Workload::new("ReplicaSet", "web-7d4b9c"))
        );
        pod.metadata.labels = Some([("pod-template-hash".into(), "7d4b9c".into())].into());
        assert_eq!(
            resolve(&pod, None),
            Some(Workload::new("Deployment", "web"))
        );
        // A readable ReplicaSet without a controller is its own workload.
        assert_eq!(
            resolve(&pod, Some(&ObjectMeta::default())),
            Some(Workload::new("ReplicaSet", "web-7d4b9c"))
        );
    }

    #[test]
    fn the_controller_reference_wins_over_other_owners() {
        let mut meta = owned("StatefulSet", "db");
        let refs = meta.owner_references.as_mut().unwrap();
        refs.insert(
            0,
            OwnerReference {
                kind: "ConfigMap".into(),
                name: "c".into(),
                controller: None,
                ..Default::default()
            },
        );
        assert_eq!(controller(&meta), Some(("StatefulSet", "db")));
    }
}
