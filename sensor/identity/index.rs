//! The indexes the watches keep: this node's pods by address, and the
//! cluster's nodes by address and pod CIDR.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::owner::Workload;

/// The pod owning an address: what the enforcer selects it by and what
/// events name it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// The node the pod runs on (`spec.nodeName`).
    pub node: String,
    /// Its Deployment, StatefulSet, DaemonSet, Job, CronJob... (none for
    /// a pod without controller).
    pub workload: Option<Workload>,
}

/// Pods by address, as the pod watch last described them.
#[derive(Default)]
pub(crate) struct PodIndex {
    by_ip: HashMap<IpAddr, PodRef>,
    /// Each pod's addresses by uid, to drop the old ones when a pod changes.
    ips_by_uid: HashMap<String, Vec<IpAddr>>,
    /// Whether a full list has been loaded since the start.
    pub(crate) synced: bool,
}

impl PodIndex {
    pub(crate) fn get(&self, ip: &IpAddr) -> Option<&PodRef> {
        self.by_ip.get(ip)
    }

    pub(crate) fn len(&self) -> usize {
        self.ips_by_uid.len()
    }

    /// Adds or updates `pod` (its workload resolved by the caller).
    pub(crate) fn apply(&mut self, pod: &Pod, workload: Option<Workload>) {
        let Some(p) = pod_ref(pod, workload) else {
            return;
        };
        self.remove_uid(&p.uid);
        let ips = pod_ips(pod);
        // A finished pod's address may already belong to a new pod; a
        // host-network pod's address is its node's, shared by every
        // process there, so it names no pod.
        if ips.is_empty() || is_finished(pod) || is_host_network(pod) {
            return;
        }
        for ip in &ips {
            self.by_ip.insert(*ip, p.clone());
        }
        self.ips_by_uid.insert(p.uid, ips);
    }

    pub(crate) fn delete(&mut self, pod: &Pod) {
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

fn pod_ref(pod: &Pod, workload: Option<Workload>) -> Option<PodRef> {
    let m = &pod.metadata;
    Some(PodRef {
        namespace: m.namespace.clone()?,
        name: m.name.clone()?,
        uid: m.uid.clone()?,
        labels: m.labels.clone().unwrap_or_default(),
        node: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        workload,
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

fn is_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

/// Nodes by address and pod CIDR, as the node watch last described them.
#[derive(Default)]
pub(crate) struct NodeIndex {
    by_ip: HashMap<IpAddr, String>,
    cidrs: Vec<(IpNet, String)>,
    /// Each node's addresses and CIDRs by name, to replace them on update.
    by_name: HashMap<String, (Vec<IpAddr>, Vec<IpNet>)>,
    pub(crate) synced: bool,
}

impl NodeIndex {
    /// The node owning `ip` as one of its own addresses.
    pub(crate) fn node_of(&self, ip: &IpAddr) -> Option<&str> {
        self.by_ip.get(ip).map(String::as_str)
    }

    /// The node whose pod CIDR holds `ip`.
    pub(crate) fn pod_cidr_of(&self, ip: &IpAddr) -> Option<&str> {
        self.cidrs
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|(_, n)| n.as_str())
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    pub(crate) fn apply(&mut self, node: &Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        self.remove(&name);
        let ips: Vec<IpAddr> = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let spec = node.spec.as_ref();
        let mut cidrs: Vec<IpNet> = spec
            .and_then(|s| s.pod_cidrs.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.parse().ok())
            .collect();
        if cidrs.is_empty() {
            cidrs.extend(
                spec.and_then(|s| s.pod_cidr.as_deref())
                    .and_then(|c| c.parse::<IpNet>().ok()),
            );
        }
        for ip in &ips {
            self.by_ip.insert(*ip, name.clone());
        }
        self.cidrs.extend(cidrs.iter().map(|c| (*c, name.clone())));
        self.by_name.insert(name, (ips, cidrs));
    }

    pub(crate) fn delete(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.remove(name);
        }
    }

    fn remove(&mut self, name: &str) {
        let Some((ips, _)) = self.by_name.remove(name) else {
            return;
        };
        for ip in ips {
            if self.by_ip.get(&ip).is_some_and(|n| n == name) {
                self.by_ip.remove(&ip);
            }
        }
        self.cidrs.retain(|(_, n)| n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeAddress, NodeSpec, NodeStatus, PodIP, PodSpec, PodStatus,
    };
    use kube::api::ObjectMeta;

    fn pod(uid: &str, ip: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("p-{uid}")),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                phase: Some("Running".into()),
                ..Default::default()
            }),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn name_at(i: &PodIndex, a: &str) -> Option<String> {
        i.get(&ip(a)).map(|p| p.name.clone())
    }

    #[test]
    fn an_address_moving_to_a_new_pod_survives_the_old_pods_delete() {
        let mut i = PodIndex::default();
        i.apply(&pod("a", "10.0.0.5"), None);
        i.apply(&pod("b", "10.0.0.5"), None);
        i.delete(&pod("a", "10.0.0.5"));
        assert_eq!(
            i.get(&ip("10.0.0.5")).map(|p| p.uid.clone()),
            Some("b".into())
        );
        i.delete(&pod("b", "10.0.0.5"));
        assert!(i.get(&ip("10.0.0.5")).is_none());
        assert_eq!(i.len(), 0);
    }

    #[test]
    fn pods_appear_change_address_and_vanish() {
        let mut i = PodIndex::default();
        let w = Workload {
            kind: "Deployment".into(),
            name: "web".into(),
        };
        // Pending: no address yet, nothing to find.
        let mut p = pod("a", "10.0.0.5");
        p.status.as_mut().unwrap().pod_ips = None;
        i.apply(&p, Some(w.clone()));
        assert_eq!(i.len(), 0);
        // Running: found with its node and workload.
        i.apply(&pod("a", "10.0.0.5"), Some(w.clone()));
        let found = i.get(&ip("10.0.0.5")).expect("pod");
        assert_eq!(
            (found.node.as_str(), found.workload.as_ref()),
            ("node-a", Some(&w))
        );
        // Its address changes (a sandbox restarted): the old one is free.
        i.apply(&pod("a", "10.0.0.9"), Some(w.clone()));
        assert_eq!(name_at(&i, "10.0.0.5"), None);
        assert_eq!(name_at(&i, "10.0.0.9"), Some("p-a".into()));
        // Finished: its address may be handed out again, so it names nothing.
        let mut done = pod("a", "10.0.0.9");
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        i.apply(&done, None);
        assert_eq!(name_at(&i, "10.0.0.9"), None);
        // Deleted after a restart, without the watch having seen it finish.
        i.apply(&pod("a", "10.0.0.9"), None);
        i.delete(&pod("a", "10.0.0.9"));
        assert_eq!((name_at(&i, "10.0.0.9"), i.len()), (None, 0));
    }

    #[test]
    fn a_host_network_pod_names_no_address() {
        let mut i = PodIndex::default();
        let mut p = pod("h", "192.0.2.10");
        p.spec.as_mut().unwrap().host_network = Some(true);
        i.apply(&p, None);
        assert_eq!(name_at(&i, "192.0.2.10"), None);
    }

    fn node(name: &str, addr: &str, cidr: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidrs: Some(vec![cidr.into()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: addr.into(),
                    },
                    NodeAddress {
                        type_: "Hostname".into(),
                        address: name.into(),
                    },
                ]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn nodes_are_found_by_address_and_pod_cidr_until_deleted() {
        let mut i = NodeIndex::default();
        i.apply(&node("node-b", "192.0.2.11", "10.2.0.0/24"));
        assert_eq!(i.node_of(&ip("192.0.2.11")), Some("node-b"));
        assert_eq!(i.pod_cidr_of(&ip("10.2.0.7")), Some("node-b"));
        assert_eq!(i.pod_cidr_of(&ip("10.3.0.7")), None);
        i.apply(&node("node-b", "192.0.2.12", "10.2.0.0/24"));
        assert_eq!(i.node_of(&ip("192.0.2.11")), None);
        assert_eq!(i.node_of(&ip("192.0.2.12")), Some("node-b"));
        i.delete(&node("node-b", "192.0.2.12", "10.2.0.0/24"));
        assert_eq!(
            (
                i.node_of(&ip("192.0.2.12")),
                i.pod_cidr_of(&ip("10.2.0.7")),
                i.len()
            ),
            (None, None, 0)
        );
    }
}
