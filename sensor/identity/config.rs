//! The `identity` section of the configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether events name the pods behind their addresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Enabled {
    /// On when the sensor finds a cluster (an in-cluster service account
    /// or a kubeconfig) and knows its node; off, with one info line,
    /// anywhere else, so a bare host needs no setting.
    #[default]
    Auto,
    On,
    Off,
}

// `enabled = "auto" | true | false`: a boolean where a boolean is meant,
// and one word for the default, as `[identity]` examples show it.
impl Serialize for Enabled {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Enabled::Auto => s.serialize_str("auto"),
            Enabled::On => s.serialize_bool(true),
            Enabled::Off => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for Enabled {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Enabled::On),
            Raw::Bool(false) => Ok(Enabled::Off),
            Raw::Word(w) if w == "auto" => Ok(Enabled::Auto),
            Raw::Word(w) if w == "true" => Ok(Enabled::On),
            Raw::Word(w) if w == "false" => Ok(Enabled::Off),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "expected true, false or \"auto\", got {w:?}"
            ))),
        }
    }
}

/// Pod identity on events: a read-only watch of this node's pods (and of
/// the cluster's nodes) that names each endpoint of an alert or action.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// `auto` (default), `true` or `false`. `true` outside a cluster is a
    /// degraded sensor (a log line, `osprey_identity_watch_up` at 0, a
    /// `/readyz` note), never a failed start.
    pub enabled: Enabled,
    /// The node this sensor runs on; the pod watch selects
    /// `spec.nodeName=<node_name>`. Defaults to the `NODE_NAME`
    /// environment variable, which the Helm chart sets from the downward
    /// API; empty, `respond.kube.node_name` is used.
    pub node_name: String,
    /// A kubeconfig file, for a sensor outside the cluster. Unset: the
    /// in-cluster service account, else `respond.kube.kubeconfig`, else
    /// the default kubeconfig (`KUBECONFIG`, `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Also watch the cluster's Node objects, so that another node's
    /// address is `node` and an address in another node's pod CIDR is
    /// `remote_pod` rather than `external`. Costs one cluster-wide watch
    /// of small objects (and `list`/`watch` on nodes in the role).
    pub watch_nodes: bool,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            enabled: Enabled::Auto,
            node_name: std::env::var("NODE_NAME").unwrap_or_default(),
            kubeconfig: None,
            watch_nodes: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enabled_reads_booleans_and_auto_and_refuses_anything_else() {
        let parse = |t: &str| toml::from_str::<IdentityConfig>(t).map(|c| c.enabled);
        assert_eq!(parse("enabled = true").unwrap(), Enabled::On);
        assert_eq!(parse("enabled = false").unwrap(), Enabled::Off);
        assert_eq!(parse("enabled = \"auto\"").unwrap(), Enabled::Auto);
        assert_eq!(parse("").unwrap(), Enabled::Auto);
        assert!(parse("enabled = \"yes\"").is_err());
        assert!(toml::from_str::<IdentityConfig>("node = \"a\"").is_err());
    }
}
