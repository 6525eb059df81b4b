//! The NetworkPolicy objects osprey applies, and their names.
//!
//! Every object carries what garbage collection needs to undo it without
//! any state in the sensor: who owns it (managed-by and node labels), when
//! it ends (expires-at), and what it came from (action id and rule).

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use sha1::{Digest, Sha1};

pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "osprey";
pub const LABEL_NODE: &str = "osprey.io/node";
/// `quarantine` or `block`: how GC undoes the policy.
pub const LABEL_KIND: &str = "osprey.io/kind";
pub const ANN_EXPIRES_AT: &str = "osprey.io/expires-at";
pub const ANN_ACTION_ID: &str = "osprey.io/action-id";
pub const ANN_RULE: &str = "osprey.io/rule";
/// The quarantined pod's name, whose label GC removes.
pub const ANN_POD: &str = "osprey.io/pod";
/// A block policy's blocked ranges with their ends: JSON, range → Unix
/// seconds.
pub const ANN_BLOCKED: &str = "osprey.io/blocked";

pub const KIND_QUARANTINE: &str = "quarantine";
pub const KIND_BLOCK: &str = "block";

/// Longest object name osprey makes: a label value's limit, so a name can
/// also be used in selectors and kubectl columns stay readable.
const MAX_NAME: usize = 63;

/// Who applied a policy and why.
pub(crate) struct Stamp<'a> {
    pub node: &'a str,
    pub action_id: &'a str,
    pub rule: &'a str,
    pub expires_at: Timestamp,
}

/// Sixteen hex digits of SHA-1: short, deterministic, and collision-free
/// enough for names within one namespace.
pub(crate) fn short_hash(s: &str) -> String {
    let d = Sha1::digest(s.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `prefix` + `rest`, or when that is too long, a truncated `rest` and a
/// hash of all of it so distinct long names stay distinct.
pub(crate) fn bounded_name(prefix: &str, rest: &str) -> String {
    let full = format!("{prefix}{rest}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = short_hash(&full);
    let keep = MAX_NAME - hash.len() - 1;
    let head: String = full.chars().take(keep).collect();
    let head = head.trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// A value usable as a label value (node names may be longer than 63).
pub(crate) fn label_value(s: &str) -> String {
    bounded_name("", s)
}

pub(crate) fn quarantine_name(pod: &str) -> String {
    bounded_name("osprey-quarantine-", pod)
}

/// One block policy per selected set of pods: every blocked range for
/// them must be in the same policy, since policies add up (see
/// [`block_policy`]).
pub(crate) fn block_name(selector: &BTreeMap<String, String>) -> String {
    let key: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("osprey-block-{}", short_hash(&key.join(",")))
}

fn meta(
    namespace: &str,
    name: &str,
    kind: &str,
    stamp: &Stamp<'_>,
    extra: &[(&str, String)],
) -> ObjectMeta {
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        (LABEL_NODE.to_string(), label_value(stamp.node)),
        (LABEL_KIND.to_string(), kind.to_string()),
    ]);
    let mut annotations = BTreeMap::from([
        (ANN_EXPIRES_AT.to_string(), stamp.expires_at.to_string()),
        (ANN_ACTION_ID.to_string(), stamp.action_id.to_string()),
        (ANN_RULE.to_string(), stamp.rule.to_string()),
    ]);
    for (k, v) in extra {
        annotations.insert((*k).to_string(), v.clone());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    }
}

/// Denies all traffic to and from the pods carrying `label=token`: both
/// policy types and no rules. Policies add up, so traffic another policy
/// allows to the same pod still passes; the quarantine is complete for
/// pods no other policy selects, and the node's nftables rules cover the
/// rest (docs/kubernetes-enforcement.md).
pub(crate) fn quarantine_policy(
    namespace: &str,
    pod: &str,
    label: &str,
    token: &str,
    stamp: &Stamp<'_>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(
            namespace,
            &quarantine_name(pod),
            KIND_QUARANTINE,
            stamp,
            &[(ANN_POD, pod.to_string())],
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(label.to_string(), token.to_string())])),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: None,
        }),
    }
}

/// Allows ingress to the selected pods from everywhere except the
/// blocked ranges.
///
/// NetworkPolicy cannot say "deny X": policies are allow-lists and add
/// up. A pod no policy selects accepts everything; once one selects it,
/// only what some policy allows passes, and any policy allowing X lets X
/// in whatever the others say. So the only expressible block is an
/// allow-list of everything minus X: `0.0.0.0/0` and `::/0` with the
/// blocked ranges in `ipBlock.except`, all of them in one policy (two
/// policies each excepting one range would each allow the other's).
/// This replaces "allow all" by "allow all but X" only where no other
/// policy already selects the pod, and it turns the pod's ingress into an
/// allow-list, so it is applied only in namespaces that opt in; the node's
/// nftables rules remain the primary block. AdminNetworkPolicy (cluster
/// scoped, with priorities and a Deny action) or CiliumNetworkPolicy's
/// `ingressDeny` express a real deny and are the better tools where
/// available. See docs/kubernetes-enforcement.md.
pub(crate) fn block_policy(
    namespace: &str,
    selector: &BTreeMap<String, String>,
    blocked: &BTreeMap<IpNet, i64>,
    stamp: &Stamp<'_>,
) -> NetworkPolicy {
    let except = |v4: bool| -> Option<Vec<String>> {
        let v: Vec<String> = blocked
            .keys()
            .filter(|n| matches!(n, IpNet::V4(_)) == v4)
            .map(|n| n.to_string())
            .collect();
        (!v.is_empty()).then_some(v)
    };
    let peer = |cidr: &str, except| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_string(),
            except,
        }),
        ..Default::default()
    };
    let blocked_json = serde_json::to_string(
        &blocked
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
    )
    .unwrap_or_default();
    NetworkPolicy {
        metadata: meta(
            namespace,
            &block_name(selector),
            KIND_BLOCK,
            stamp,
            &[(ANN_BLOCKED, blocked_json)],
        ),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    peer("0.0.0.0/0", except(true)),
                    peer("::/0", except(false)),
                ]),
                ports: None,
            }]),
            egress: None,
        }),
    }
}

/// The blocked ranges recorded on a block policy (empty if unreadable:
/// the next apply then starts afresh rather than failing forever).
pub(crate) fn blocked_of(np: &NetworkPolicy) -> BTreeMap<IpNet, i64> {
    let Some(s) = annotation(np, ANN_BLOCKED) else {
        return BTreeMap::new();
    };
    let raw: BTreeMap<String, i64> = serde_json::from_str(s).unwrap_or_default();
    raw.into_iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
        .collect()
}

pub(crate) fn annotation<'a>(np: &'a NetworkPolicy, key: &str) -> Option<&'a str> {
    np.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(crate) fn label<'a>(np: &'a NetworkPolicy, key: &str) -> Option<&'a str> {
    np.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = quarantine_name(&"a".repeat(100));
        let b = quarantine_name(&format!("{}b", "a".repeat(99)));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
        assert_eq!(quarantine_name("web-1"), "osprey-quarantine-web-1");
        let dotted = bounded_name("", &format!("{}.{}", "a".repeat(45), "b".repeat(40)));
        assert!(!dotted.contains(".-"));
    }
}
