//! The Kubernetes enforcer against a stand-in API server (tests/kube/
//! server.rs): no kube-apiserver can run here, so the server implements
//! the endpoints the enforcer uses and decodes what it is sent.

#[path = "kube/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodIP, PodSpec, PodStatus};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use osprey::identity::{client_config, Directory, IdentityMetrics, WatchOptions};
use osprey::respond::kube::{KubeConfig, KubeEnforcer, KubeError, Outcome};
use osprey::respond::{Action, ActionKind, Evidence};
use prometheus::Registry;
use server::World;

const NODE: &str = "node-a";
/// Every test finishes well within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

fn pod(ns: &str, name: &str, node: &str, ip: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
}

fn namespace(name: &str, annotations: &[(&str, &str)]) -> (String, Namespace) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    (name.into(), ns)
}

fn world() -> World {
    World {
        pods: vec![
            pod("shop", "web-1", NODE, "10.1.0.5", &[("app", "web")]),
            pod("bank", "api-1", NODE, "10.1.0.6", &[("app", "api")]),
            pod("shop", "web-2", "node-b", "10.2.0.5", &[("app", "web")]),
        ],
        namespaces: BTreeMap::from([
            namespace("shop", &[]),
            namespace("bank", &[("osprey.io/enforce", "true")]),
        ]),
        ..Default::default()
    }
}

fn action(kind: ActionKind, target: &str, ttl_secs: u64) -> Action {
    Action {
        id: format!("act-{target}"),
        ts: Action::now_ts(),
        rule: "scan-rule".into(),
        kind,
        target: target.parse().unwrap(),
        ttl: Duration::from_secs(ttl_secs),
        enforce: true,
        softened: None,
        evidence: Evidence {
            uid: "C1".into(),
            interim: false,
            model: Some("m".into()),
            label: None,
            score: None,
            probability: None,
            orig_h: "198.51.100.7".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.1.0.5".parse().unwrap(),
            resp_p: 80,
            proto: "tcp".into(),
            service: None,
            conn_state: "S0".into(),
            history: None,
            facts: None,
            identity: None,
        },
    }
}

/// A kubeconfig pointing at the fake server, so `start` runs its real
/// configuration path.
fn kubeconfig(dir: &tempfile::TempDir, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
         clusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
         users:\n- name: u\n  user: {{}}\n\
         contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Setup {
    fake: server::Fake,
    enforcer: KubeEnforcer,
    registry: Registry,
    _dir: tempfile::TempDir,
}

async fn setup(w: World) -> Setup {
    let (fake, addr) = server::start(w).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = KubeConfig {
        enabled: true,
        node_name: NODE.into(),
        kubeconfig: Some(kubeconfig(&dir, addr)),
        // The tests call collect_expired themselves.
        gc_interval_secs: 3600,
        retry_attempts: 5,
        retry_initial_backoff_ms: 10,
        retry_max_backoff_ms: 40,
        ..Default::default()
    };
    let registry = Registry::new();
    // The enforcer finds pods through the identity stage's watch, as in
    // the daemon.
    let pods = Directory::start_with(
        client_config(cfg.kubeconfig.as_ref()).await.unwrap(),
        WatchOptions {
            node_name: NODE.into(),
            cluster_wide_pods: false,
            watch_nodes: false,
            resolve_owners: false,
        },
        IdentityMetrics::new(&registry),
        None,
    )
    .unwrap();
    let enforcer = KubeEnforcer::start(cfg, pods, &registry).await.unwrap();
    enforcer.wait_synced(BOUND).await.unwrap();
    Setup {
        fake,
        enforcer,
        registry,
        _dir: dir,
    }
}

fn metric(r: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for fam in r.gather() {
        if fam.name() != name {
            continue;
        }
        for m in fam.get_metric() {
            let ok = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if ok {
                let c = m.get_counter();
                let g = m.get_gauge();
                return c.get_value() + g.get_value();
            }
        }
    }
    0.0
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test took too long")
}

fn labels(np: &NetworkPolicy) -> BTreeMap<String, String> {
    np.metadata.labels.clone().unwrap_or_default()
}

fn annotations(np: &NetworkPolicy) -> BTreeMap<String, String> {
    np.metadata.annotations.clone().unwrap_or_default()
}

#[tokio::test]
async fn the_watch_indexes_this_nodes_pods_only() {
    bounded(async {
        let s = setup(world()).await;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let web = s.enforcer.pod_for(ip("10.1.0.5")).expect("local pod");
        assert_eq!(
            (web.namespace.as_str(), web.name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(web.uid, "uid-shop-web-1");
        assert!(
            s.enforcer.pod_for(ip("10.2.0.5")).is_none(),
            "other node's pod"
        );
        assert_eq!(
            s.fake.world().pod_list_selectors,
            vec![format!("spec.nodeName={NODE}")]
        );
        assert_eq!(metric(&s.registry, "osprey_identity_pods_known", &[]), 2.0);

        // Pods arriving later come through the watch stream.
        s.fake.wait_for_watcher().await;
        s.fake
            .watch_event("ADDED", pod("shop", "web-3", NODE, "10.1.0.7", &[]));
        s.fake
            .watch_event("ADDED", pod("shop", "web-4", "node-b", "10.2.0.7", &[]));
        s.fake.watch_event(
            "DELETED",
            pod("bank", "api-1", NODE, "10.1.0.6", &[("app", "api")]),
        );
        while s.enforcer.pod_for(ip("10.1.0.7")).is_none()
            || s.enforcer.pod_for(ip("10.1.0.6")).is_some()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(s.enforcer.pod_for(ip("10.2.0.7")).is_none());
        assert_eq!(metric(&s.registry, "osprey_identity_pods_known", &[]), 2.0);
    })
    .await;
}

#[tokio::test]
async fn quarantine_applies_a_deny_all_policy_and_labels_the_pod_idempotently() {
    bounded(async {
        let s = setup(world()).await;
        let a = action(ActionKind::QuarantinePod, "10.1.0.5/32", 600);
        let out = s.enforcer.quarantine(&a).await.unwrap();
        let name = "osprey-quarantine-web-1";
        assert_eq!(
            out,
            Outcome::Applied {
                namespace: "shop".into(),
                name: name.into()
            }
        );
        let first = {
            let w = s.fake.world();
            assert_eq!(w.policies.len(), 1);
            w.policies[&("shop".to_string(), name.to_string())].clone()
        };
        let l = labels(&first);
        assert_eq!(l["app.kubernetes.io/managed-by"], "osprey");
        assert_eq!(l["osprey.io/node"], NODE);
        let an = annotations(&first);
        assert_eq!(an["osprey.io/action-id"], a.id);
        assert_eq!(an["osprey.io/rule"], "scan-rule");
        let expires: Timestamp = an["osprey.io/expires-at"].parse().expect("RFC 3339");
        let want = a.expires_ts();
        assert!(
            (expires.as_second() as f64 - want).abs() <= 1.0,
            "{expires} vs {want}"
        );
        let spec = first.spec.clone().unwrap();
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string(), "Egress".to_string()][..])
        );
        assert!(spec.ingress.unwrap_or_default().is_empty());
        assert!(spec.egress.unwrap_or_default().is_empty());
        let sel = spec.pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(sel.len(), 1);
        let token = &sel["osprey.io/quarantine"];
        assert!(!token.is_empty() && token.len() <= 63);

        // The pod carries the selected label, next to its own.
        {
            let w = s.fake.world();
            let pod_labels = w.pods[0].metadata.labels.clone().unwrap();
            assert_eq!(pod_labels["osprey.io/quarantine"], *token);
            assert_eq!(pod_labels["app"], "web");
        }

        // The same action again: one object, the same content.
        s.enforcer.quarantine(&a).await.unwrap();
        let w = s.fake.world();
        assert_eq!(w.policies.len(), 1);
        assert_eq!(w.policy_applies.len(), 2);
        assert_eq!(w.policy_applies[0], w.policy_applies[1]);
        assert_eq!(w.pod_applies[0], w.pod_applies[1]);
        drop(w);
        assert_eq!(metric(&s.registry, "osprey_kube_policies_active", &[]), 1.0);
        assert_eq!(
            metric(
                &s.registry,
                "osprey_kube_requests_total",
                &[("verb", "apply"), ("result", "ok")]
            ),
            4.0
        );
    })
    .await;
}

#[tokio::test]
async fn expired_policies_are_deleted_and_the_label_removed() {
    bounded(async {
        let mut w = world();
        // Another node's policy, long expired: not this sensor's to collect.
        let foreign = NetworkPolicy {
            metadata: ObjectMeta {
                name: Some("osprey-quarantine-web-2".into()),
                namespace: Some("shop".into()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/managed-by".into(), "osprey".into()),
                    ("osprey.io/node".into(), "node-b".into()),
                    ("osprey.io/kind".into(), "quarantine".into()),
                ])),
                annotations: Some(BTreeMap::from([(
                    "osprey.io/expires-at".into(),
                    "2020-01-01T00:00:00Z".into(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        w.policies
            .insert(("shop".into(), "osprey-quarantine-web-2".into()), foreign);
        let s = setup(w).await;
        let a = action(ActionKind::QuarantinePod, "10.1.0.5/32", 1);
        s.enforcer.quarantine(&a).await.unwrap();
        assert_eq!(s.enforcer.collect_expired().await.unwrap(), 0);
        assert_eq!(s.fake.world().policies.len(), 2);

        // Past the (rounded-up) end.
        let wait = a.expires_ts().ceil() - Action::now_ts() + 0.2;
        tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
        assert_eq!(s.enforcer.collect_expired().await.unwrap(), 1);
        let (policies, pod_labels) = {
            let w = s.fake.world();
            (
                w.policies.keys().cloned().collect::<Vec<_>>(),
                w.pods[0].metadata.labels.clone().unwrap(),
            )
        };
        assert_eq!(
            policies,
            vec![("shop".to_string(), "osprey-quarantine-web-2".to_string())]
        );
        assert!(!pod_labels.contains_key("osprey.io/quarantine"));
        assert_eq!(pod_labels["app"], "web");
        // Deleting again (already gone) is not an error.
        assert_eq!(s.enforcer.collect_expired().await.unwrap(), 0);
        assert_eq!(metric(&s.registry, "osprey_kube_policies_active", &[]), 0.0);
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_and_counted() {
    bounded(async {
        let mut w = world();
        w.fail_applies = 3;
        let s = setup(w).await;
        let a = action(ActionKind::QuarantinePod, "10.1.0.5/32", 600);
        s.enforcer.quarantine(&a).await.unwrap();
        assert_eq!(s.fake.world().policies.len(), 1);
        let r = &s.registry;
        assert_eq!(
            metric(r, "osprey_kube_errors_total", &[("op", "apply_policy")]),
            3.0
        );
        assert_eq!(
            metric(
                r,
                "osprey_kube_requests_total",
                &[("verb", "apply"), ("result", "server_error")]
            ),
            3.0
        );

        // More failures than attempts: the error reaches the caller.
        s.fake.world().fail_applies = 10;
        let err = s.enforcer.quarantine(&a).await.unwrap_err();
        assert!(
            matches!(
                err,
                KubeError::Api {
                    op: "apply_policy",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            metric(r, "osprey_kube_errors_total", &[("op", "apply_policy")]),
            8.0
        );
    })
    .await;
}

#[tokio::test]
async fn block_needs_the_namespace_opt_in_and_keeps_every_range_in_one_policy() {
    bounded(async {
        let s = setup(world()).await;
        let web: IpAddr = "10.1.0.5".parse().unwrap();
        let err = s
            .enforcer
            .block(&action(ActionKind::Block, "198.51.100.7/32", 600), web)
            .await
            .unwrap_err();
        assert!(matches!(err, KubeError::NotOptedIn { ref namespace, .. } if namespace == "shop"));
        assert!(err.to_string().contains("osprey.io/enforce"), "{err}");
        assert!(s.fake.world().policies.is_empty());

        let api: IpAddr = "10.1.0.6".parse().unwrap();
        let a1 = action(ActionKind::Block, "198.51.100.7/32", 600);
        let a2 = action(ActionKind::Block, "2001:db8::/64", 600);
        let Outcome::Applied { namespace, name } = s.enforcer.block(&a1, api).await.unwrap() else {
            panic!("dry run")
        };
        assert_eq!(namespace, "bank");
        s.enforcer.block(&a2, api).await.unwrap();
        let w = s.fake.world();
        assert_eq!(w.policies.len(), 1);
        let np = &w.policies[&(namespace, name)];
        let spec = np.spec.clone().unwrap();
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap(),
            BTreeMap::from([("app".to_string(), "api".to_string())])
        );
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let blocks: Vec<_> = rules[0]
            .from
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| p.ip_block.unwrap())
            .collect();
        assert_eq!(blocks[0].cidr, "0.0.0.0/0");
        assert_eq!(blocks[0].except, Some(vec!["198.51.100.7/32".to_string()]));
        assert_eq!(blocks[1].cidr, "::/0");
        assert_eq!(blocks[1].except, Some(vec!["2001:db8::/64".to_string()]));
        assert_eq!(labels(np)["osprey.io/kind"], "block");
        assert_eq!(annotations(np)["osprey.io/action-id"], a2.id);
    })
    .await;
}

#[tokio::test]
async fn dry_run_and_wrong_targets_send_nothing() {
    bounded(async {
        let s = setup(world()).await;
        let mut a = action(ActionKind::QuarantinePod, "10.1.0.5/32", 600);
        a.enforce = false;
        assert_eq!(s.enforcer.quarantine(&a).await.unwrap(), Outcome::DryRun);
        let range = action(ActionKind::QuarantinePod, "10.1.0.0/24", 600);
        assert!(matches!(
            s.enforcer.quarantine(&range).await,
            Err(KubeError::NotAnAddress(_))
        ));
        let unknown = action(ActionKind::QuarantinePod, "10.9.9.9/32", 600);
        assert!(matches!(
            s.enforcer.quarantine(&unknown).await,
            Err(KubeError::UnknownPod(_))
        ));
        let wrong = action(ActionKind::Block, "10.1.0.5/32", 600);
        assert!(matches!(
            s.enforcer.quarantine(&wrong).await,
            Err(KubeError::WrongKind { .. })
        ));
        let w = s.fake.world();
        assert!(w.policy_applies.is_empty() && w.pod_applies.is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_quarantine_of_a_deleted_pod_still_expires() {
    bounded(async {
        let s = setup(world()).await;
        let a = action(ActionKind::QuarantinePod, "10.1.0.5/32", 1);
        s.enforcer.quarantine(&a).await.unwrap();
        // The pod goes away while quarantined.
        s.fake
            .world()
            .pods
            .retain(|p| p.metadata.name.as_deref() != Some("web-1"));
        let wait = a.expires_ts().ceil() - Action::now_ts() + 0.2;
        tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
        // The label removal answers 404, which is success: the policy goes.
        assert_eq!(s.enforcer.collect_expired().await.unwrap(), 1);
        let w = s.fake.world();
        assert!(w.policies.is_empty());
        assert_eq!(w.pod_unlabels, [("shop".to_string(), "web-1".to_string())]);
    })
    .await;
}

/// `osprey decisions delete` on the Kubernetes side: lifting a pod's
/// address deletes its quarantine and label; lifting a source range takes
/// it out of the block policy, which keeps its other ranges, and lifting
/// the last one deletes the policy.
#[tokio::test]
async fn a_lift_ends_the_quarantine_and_removes_the_range_from_blocks() {
    bounded(async {
        let s = setup(world()).await;
        s.enforcer
            .quarantine(&action(ActionKind::QuarantinePod, "10.1.0.5/32", 600))
            .await
            .unwrap();
        let api: IpAddr = "10.1.0.6".parse().unwrap();
        for t in ["198.51.100.7/32", "2001:db8::/64"] {
            s.enforcer
                .block(&action(ActionKind::Block, t, 600), api)
                .await
                .unwrap();
        }
        assert_eq!(s.fake.world().policies.len(), 2);
        // Another address: nothing changes.
        let none = s
            .enforcer
            .lift("10.1.0.99/32".parse().unwrap())
            .await
            .unwrap();
        assert!(none.is_empty(), "{none:?}");
        let lifted = s
            .enforcer
            .lift("10.1.0.5/32".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(lifted, vec!["quarantine shop/web-1".to_string()]);
        {
            let w = s.fake.world();
            assert_eq!(w.policies.len(), 1);
            let web = w
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some("web-1"));
            let labels = web
                .and_then(|p| p.metadata.labels.clone())
                .unwrap_or_default();
            assert!(!labels.contains_key("osprey.io/quarantine"), "{labels:?}");
        }
        // One address inside the blocked /64 lifts the /64; the v4 range stays.
        let lifted = s
            .enforcer
            .lift("2001:db8::7/128".parse().unwrap())
            .await
            .unwrap();
        assert_eq!(lifted.len(), 1, "{lifted:?}");
        let text = {
            let w = s.fake.world();
            let np = w.policies.values().next().expect("the block policy stays");
            serde_json::to_string(&np.spec).unwrap()
        };
        assert!(
            text.contains("198.51.100.7/32") && !text.contains("2001:db8::/64"),
            "{text}"
        );
        s.enforcer
            .lift("198.51.100.0/24".parse().unwrap())
            .await
            .unwrap();
        assert!(s.fake.world().policies.is_empty());
    })
    .await;
}
