//! The allowlist's moving parts, looked up again every
//! `respond.allowlist_refresh_secs` on the daemon's runtime and published
//! to the responder through a watch channel (`safety::Published`):
//!
//! - the endpoints of `default/kubernetes` (its EndpointSlices): the API
//!   server as the prerouting chain sees it, not the ClusterIP of
//!   `KUBERNETES_SERVICE_HOST` that kube-proxy rewrites later;
//! - every node's InternalIP (kubelets, control plane, overlay peers);
//! - the cluster DNS: the kube-dns/CoreDNS pods (`kube-system`, label
//!   `k8s-app=kube-dns`) and the kube-dns Service's ClusterIPs;
//! - the host's own upstream resolvers, from resolv.conf files named in
//!   the configuration (in a hostNetwork pod, `/etc/resolv.conf` names
//!   the cluster DNS: the chart mounts the host's files instead);
//! - the addresses of the platform URL's and the webhooks' hosts
//!   (resolved through DNS; literal addresses taken as they are), and of
//!   the kubeconfig's API server.
//!
//! Outside a cluster (`respond.allowlist_cluster = "auto"` and no
//! Kubernetes configuration) the cluster sources are skipped without
//! error. A lookup that fails keeps what the last good one found, and
//! adds anything new it did find: the allowlist never shrinks because
//! the API server or DNS had a bad moment. Failures are counted per
//! source (`osprey_allowlist_discovery_errors_total`), and each source's
//! size is a gauge (`osprey_allowlist_entries`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::{Api, Client};
use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use tokio::sync::{watch, Notify};

use super::safety::{host_resolvers, Entry, Published, Source};
use crate::identity::Enabled;
use crate::metrics::{counter_vec, gauge_vec};

/// What the discovery task looks at, built from the configuration.
#[derive(Clone, Debug)]
pub struct DiscoverySettings {
    /// Time between rounds.
    pub refresh: Duration,
    /// resolv.conf files of the host, read in order.
    pub resolv_conf: Vec<PathBuf>,
    /// Whether to ask the Kubernetes API: `Auto` skips it quietly outside
    /// a cluster, `On` warns when it cannot.
    pub cluster: Enabled,
    /// A kubeconfig; unset: in-cluster, else the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// The platform's base URL, if reporting is on.
    pub platform_url: Option<String>,
    /// Every webhook's URL.
    pub webhook_urls: Vec<String>,
    /// Bound on each source's lookup, so one hung call cannot hold the
    /// others (or the daemon's start) for long.
    pub call_timeout: Duration,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            refresh: Duration::from_secs(30),
            resolv_conf: Vec::new(),
            cluster: Enabled::Off,
            kubeconfig: None,
            platform_url: None,
            webhook_urls: Vec::new(),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// The discovery's metrics; labelled by source only (no addresses).
#[derive(Clone)]
pub struct DiscoveryMetrics {
    pub entries: IntGaugeVec,
    pub errors: IntCounterVec,
}

impl DiscoveryMetrics {
    pub fn register(r: &Registry) -> DiscoveryMetrics {
        DiscoveryMetrics {
            entries: gauge_vec(
                r,
                "osprey_allowlist_entries",
                "Discovered allowlist entries by source (api_server, api_service, node, cluster_dns, resolver, platform, webhook).",
                &["source"],
            ),
            errors: counter_vec(
                r,
                "osprey_allowlist_discovery_errors_total",
                "Failed allowlist lookups by source; the last good entries of a failed source are kept.",
                &["source"],
            ),
        }
    }
}

/// The sources a round asks, in a fixed order.
const SOURCES: [Source; 7] = [
    Source::ApiServer,
    Source::ApiService,
    Source::Node,
    Source::ClusterDns,
    Source::Resolver,
    Source::Platform,
    Source::Webhook,
];

/// One source's answer: what it found, and whether the lookup failed
/// (in part): then the last good entries stay.
struct Found {
    entries: Vec<Entry>,
    error: Option<String>,
}

impl Found {
    fn ok(entries: Vec<Entry>) -> Found {
        Found {
            entries,
            error: None,
        }
    }

    fn failed(error: String) -> Found {
        Found {
            entries: Vec::new(),
            error: Some(error),
        }
    }
}

/// The discovery task's state: the API client (if in a cluster) and the
/// last good entries of each source.
pub struct Discovery {
    settings: DiscoverySettings,
    client: Option<Client>,
    /// The kubeconfig's API server host (outside a cluster, the only name
    /// of the API server a sensor has).
    api_host: Option<(String, u16)>,
    last: BTreeMap<Source, Vec<Entry>>,
    failing: BTreeSet<Source>,
    metrics: DiscoveryMetrics,
}

impl Discovery {
    /// Builds the API client when the cluster sources are wanted and a
    /// Kubernetes configuration is found. Never fails: outside a cluster
    /// with `Auto` it logs one info line; with `On`, a warning and a
    /// counted error, and the other sources still run. Call within a
    /// tokio runtime.
    pub async fn start(settings: DiscoverySettings, registry: &Registry) -> Discovery {
        let metrics = DiscoveryMetrics::register(registry);
        let mut d = Discovery {
            settings,
            client: None,
            api_host: None,
            last: BTreeMap::new(),
            failing: BTreeSet::new(),
            metrics,
        };
        if d.settings.cluster == Enabled::Off {
            return d;
        }
        let cfg = crate::identity::client_config(d.settings.kubeconfig.as_ref()).await;
        let client = cfg.and_then(|c| {
            let u = &c.cluster_url;
            d.api_host = u.host().map(|h| {
                (
                    h.trim_matches(|c| c == '[' || c == ']').to_string(),
                    u.port_u16().unwrap_or(443),
                )
            });
            Client::try_from(c).map_err(crate::identity::IdentityError::Client)
        });
        match client {
            Ok(c) => d.client = Some(c),
            Err(e) if d.settings.cluster == Enabled::Auto => {
                tracing::info!(reason = %e, "allowlist: not in a Kubernetes cluster; the cluster's API server, nodes and DNS are not looked up (respond.allowlist_cluster = \"auto\")");
            }
            Err(e) => {
                d.metrics
                    .errors
                    .with_label_values(&[Source::ApiServer.label()])
                    .inc();
                tracing::warn!(error = %e, "allowlist: cannot reach the Kubernetes API; the cluster's API server, nodes and DNS are not allowlisted");
            }
        }
        d
    }

    /// One round: every source asked (concurrently, each within the call
    /// timeout); a failed one keeps its last good entries. Returns every
    /// entry, sorted.
    pub async fn round(&mut self) -> Vec<Entry> {
        let t = self.settings.call_timeout;
        let client = self.client.clone();
        let (api, nodes, dns, api_host, platform, webhooks) = tokio::join!(
            timed(t, api_endpoints(client.clone())),
            timed(t, node_addresses(client.clone())),
            timed(t, cluster_dns(client)),
            timed(
                t,
                resolve_hosts(self.api_host.iter().cloned().collect(), Source::ApiService)
            ),
            timed(
                t,
                resolve_urls(
                    self.settings.platform_url.iter().cloned().collect(),
                    Source::Platform
                )
            ),
            timed(
                t,
                resolve_urls(self.settings.webhook_urls.clone(), Source::Webhook)
            ),
        );
        let resolvers = Found::ok(
            host_resolvers(&self.settings.resolv_conf)
                .into_iter()
                .map(|a| Entry::addr(a, Source::Resolver))
                .collect(),
        );
        for (source, found) in [
            (Source::ApiServer, api),
            (Source::ApiService, api_host),
            (Source::Node, nodes),
            (Source::ClusterDns, dns),
            (Source::Resolver, resolvers),
            (Source::Platform, platform),
            (Source::Webhook, webhooks),
        ] {
            self.keep(source, found);
        }
        let mut all: Vec<Entry> = self.last.values().flatten().copied().collect();
        all.sort();
        all.dedup();
        all
    }

    /// Records one source's answer and its metrics.
    fn keep(&mut self, source: Source, found: Found) {
        let mut entries = found.entries;
        match found.error {
            None => {
                if self.failing.remove(&source) {
                    tracing::info!(source = source.label(), "allowlist lookup recovered");
                }
            }
            Some(e) => {
                self.metrics
                    .errors
                    .with_label_values(&[source.label()])
                    .inc();
                if self.failing.insert(source) {
                    tracing::warn!(source = source.label(), error = %e, "allowlist lookup failed; keeping the addresses it found last (retrying every refresh)");
                } else {
                    tracing::debug!(source = source.label(), error = %e, "allowlist lookup still failing");
                }
                entries.extend(self.last.get(&source).into_iter().flatten().copied());
            }
        }
        entries.sort();
        entries.dedup();
        self.metrics
            .entries
            .with_label_values(&[source.label()])
            .set(entries.len() as i64);
        self.last.insert(source, entries);
    }

    /// Every source's entry count (zero for those never found).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        SOURCES
            .iter()
            .map(|s| (s.label(), self.last.get(s).map_or(0, Vec::len)))
            .collect()
    }

    /// Rounds every refresh period, or at once when `now` is notified (a
    /// SIGHUP), publishing the entries when they changed. Runs until the
    /// runtime stops.
    pub async fn run(mut self, feed: Arc<watch::Sender<Published>>, now: Arc<Notify>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.settings.refresh) => {}
                _ = now.notified() => {}
            }
            let found = self.round().await;
            publish(&feed, found);
        }
    }
}

/// Replaces the discovered entries on `feed`, waking its followers only
/// when they changed.
pub fn publish(feed: &watch::Sender<Published>, found: Vec<Entry>) {
    feed.send_if_modified(|p| {
        if p.discovered == found {
            return false;
        }
        p.discovered = found;
        true
    });
}

async fn timed(limit: Duration, f: impl Future<Output = Found>) -> Found {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Found::failed(format!("no answer within {limit:?}")))
}

/// Lists are served from the API server's watch cache
/// (`resourceVersion=0`): cheap enough to repeat on every node every
/// refresh.
fn cached() -> ListParams {
    ListParams::default().match_any()
}

fn ips<'a>(texts: impl IntoIterator<Item = &'a String>, source: Source) -> Vec<Entry> {
    texts
        .into_iter()
        .filter_map(|t| t.parse::<IpAddr>().ok())
        .map(|a| Entry::addr(a, source))
        .collect()
}

/// Every address of `default/kubernetes`'s EndpointSlices, ready or not:
/// an API server that is briefly not ready is still one to never block.
async fn api_endpoints(client: Option<Client>) -> Found {
    let Some(client) = client else {
        return Found::ok(Vec::new());
    };
    let api = Api::<EndpointSlice>::namespaced(client, "default");
    match api
        .list(&cached().labels("kubernetes.io/service-name=kubernetes"))
        .await
    {
        Ok(list) => Found::ok(
            list.items
                .iter()
                .flat_map(|s| &s.endpoints)
                .flat_map(|e| ips(&e.addresses, Source::ApiServer))
                .collect(),
        ),
        Err(e) => Found::failed(format!("listing default/kubernetes EndpointSlices: {e}")),
    }
}

/// Every node's InternalIPs.
async fn node_addresses(client: Option<Client>) -> Found {
    let Some(client) = client else {
        return Found::ok(Vec::new());
    };
    match Api::<Node>::all(client).list(&cached()).await {
        Ok(list) => Found::ok(
            list.items
                .iter()
                .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .flat_map(|a| ips([&a.address], Source::Node))
                .collect(),
        ),
        Err(e) => Found::failed(format!("listing nodes: {e}")),
    }
}

/// The kube-dns/CoreDNS pods and the kube-dns Service's ClusterIPs; a
/// cluster without that Service (another DNS add-on) is not an error.
async fn cluster_dns(client: Option<Client>) -> Found {
    let Some(client) = client else {
        return Found::ok(Vec::new());
    };
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system");
    let services = Api::<Service>::namespaced(client, "kube-system");
    let selected = cached().labels("k8s-app=kube-dns");
    let (pods, service) = tokio::join!(pods.list(&selected), services.get_opt("kube-dns"));
    let mut out = Vec::new();
    let mut errors = Vec::new();
    match pods {
        Ok(list) => {
            for p in &list.items {
                let Some(st) = &p.status else { continue };
                out.extend(ips(&st.pod_ip, Source::ClusterDns));
                for pip in st.pod_ips.iter().flatten() {
                    out.extend(ips([&pip.ip], Source::ClusterDns));
                }
            }
        }
        Err(e) => errors.push(format!("listing kube-system kube-dns pods: {e}")),
    }
    match service {
        Ok(Some(s)) => {
            if let Some(spec) = &s.spec {
                out.extend(ips(&spec.cluster_ip, Source::ClusterDns));
                out.extend(ips(spec.cluster_ips.iter().flatten(), Source::ClusterDns));
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(format!("reading service kube-system/kube-dns: {e}")),
    }
    Found {
        entries: out,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// The host and port of an http(s) URL (the URL was checked at load).
pub fn url_host(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    let port = u.port_or_known_default().unwrap_or(443);
    // An IPv6 literal comes bracketed ("[fd00::7]").
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

async fn resolve_urls(urls: Vec<String>, source: Source) -> Found {
    resolve_hosts(urls.iter().filter_map(|u| url_host(u)).collect(), source).await
}

/// Every address of each host: a literal address as it is, a name
/// through the system's resolver. One name that does not resolve is an
/// error of the source (its last addresses stay); the others still count.
async fn resolve_hosts(hosts: Vec<(String, u16)>, source: Source) -> Found {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (host, port) in hosts {
        if let Ok(a) = host.parse::<IpAddr>() {
            out.push(Entry::addr(a, source));
            continue;
        }
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => out.extend(addrs.map(|sa| Entry::addr(sa.ip(), source))),
            Err(e) => errors.push(format!("resolving {host}: {e}")),
        }
    }
    Found {
        entries: out,
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_and_ports() {
        assert_eq!(
            url_host("https://platform.example:8443/api"),
            Some(("platform.example".into(), 8443))
        );
        assert_eq!(
            url_host("http://198.18.0.7/hook"),
            Some(("198.18.0.7".into(), 80))
        );
        assert_eq!(
            url_host("https://[fd00::7]/x"),
            Some(("fd00::7".into(), 443))
        );
        assert_eq!(url_host("not a url"), None);
    }

    /// Literal addresses need no DNS; a name that cannot resolve fails
    /// the source, whose last entries then stay.
    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_entries() {
        let registry = Registry::new();
        let mut d = Discovery::start(
            DiscoverySettings {
                platform_url: Some("https://198.18.0.7:8443/".into()),
                webhook_urls: vec!["http://[fd00::9]/hook".into()],
                ..DiscoverySettings::default()
            },
            &registry,
        )
        .await;
        let found = d.round().await;
        let shown: Vec<String> = found.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["platform host 198.18.0.7/32", "webhook host fd00::9/128"]
        );
        // The webhook now names a host that cannot resolve (.invalid,
        // RFC 6761): its last address stays, and the failure is counted.
        d.settings.webhook_urls = vec!["http://osprey-test.invalid/hook".into()];
        let again = d.round().await;
        assert_eq!(again, found);
        assert_eq!(
            d.metrics.errors.with_label_values(&["webhook"]).get(),
            1,
            "the failure is counted"
        );
        assert_eq!(d.counts()["webhook"], 1);
        // A good answer replaces the last one (the allowlist follows
        // changes; it only never shrinks on errors).
        d.settings.webhook_urls.clear();
        let after = d.round().await;
        assert_eq!(after.len(), 1);
        assert_eq!(d.metrics.entries.with_label_values(&["webhook"]).get(), 0);
    }
}
