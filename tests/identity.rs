//! Pod identity end to end against the stand-in API server (tests/kube/
//! server.rs): the identity stage's watches list pods (with their
//! ReplicaSet, Job and StatefulSet owners) and nodes, and a flagged record
//! goes through the daemon's outputs (alerts.log, conn.log with the pod
//! columns, the platform's alert event) while a decision goes through the
//! responder (the platform's action event and a webhook's payload). Both
//! endpoints must be named: a pod by namespace, pod, workload and node, and
//! the others as host, node, pod_cidr or external. A watch the API server
//! refuses degrades attribution (metric, `/readyz` note) and recovers;
//! outside a cluster identity is off without error.

#[path = "kube/server.rs"]
mod server;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeSpec, NodeStatus, Pod, PodIP, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use osprey::config::OutputConfig;
use osprey::conn::record::ConnRecord;
use osprey::conn::{ConnState, Proto};
use osprey::features::FeatureSpec;
use osprey::identity::{
    Attribution, Enabled, Endpoint, Fallbacks, IdentityConfig, Started, Workload,
};
use osprey::metrics::Health;
use osprey::model::{Model, Verdict};
use osprey::report::platform::{PlatformConfig, Reporter};
use osprey::respond::admit::{Admission, AdmitConfig, BreakerLimits, Proposal};
use osprey::respond::dispatch::Dispatch;
use osprey::respond::hook::{HookConfig, Hooks, WebhookConfig};
use osprey::respond::responder::{RespondMetrics, Responder};
use osprey::respond::rules::Decision;
use osprey::respond::safety::Allowlist;
use osprey::respond::{ActionKind, Evidence};
use prometheus::Registry;
use serde_json::{json, Value};
use server::World;

const NODE: &str = "node-a";
/// Every test finishes well within this, or fails.
const BOUND: Duration = Duration::from_secs(30);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn meta(ns: &str, name: &str, owner: Option<(&str, &str)>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some(format!("uid-{ns}-{name}")),
        owner_references: owner.map(|(kind, n)| {
            vec![OwnerReference {
                api_version: "v1".into(),
                kind: kind.into(),
                name: n.into(),
                uid: format!("uid-{n}"),
                controller: Some(true),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

fn pod(ns: &str, name: &str, node: &str, addr: &str, owner: Option<(&str, &str)>) -> Pod {
    Pod {
        metadata: meta(ns, name, owner),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            pod_ips: Some(vec![PodIP { ip: addr.into() }]),
            phase: Some("Running".into()),
            ..Default::default()
        }),
    }
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
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: addr.into(),
            }]),
            ..Default::default()
        }),
    }
}

/// A Deployment's pod, a CronJob's, a StatefulSet's and a bare one on
/// this node; a pod of node-b (not watched); two nodes.
fn world() -> World {
    World {
        pods: vec![
            pod(
                "shop",
                "web-7d4b9c-x1",
                NODE,
                "10.1.0.5",
                Some(("ReplicaSet", "web-7d4b9c")),
            ),
            pod(
                "ops",
                "backup-28999-q",
                NODE,
                "10.1.0.6",
                Some(("Job", "backup-28999")),
            ),
            pod(
                "data",
                "db-0",
                NODE,
                "10.1.0.7",
                Some(("StatefulSet", "db")),
            ),
            pod("dev", "debug", NODE, "10.1.0.8", None),
            pod(
                "shop",
                "web-7d4b9c-x2",
                "node-b",
                "10.2.0.9",
                Some(("ReplicaSet", "web-7d4b9c")),
            ),
        ],
        replicasets: vec![ReplicaSet {
            metadata: meta("shop", "web-7d4b9c", Some(("Deployment", "web"))),
            ..Default::default()
        }],
        jobs: vec![Job {
            metadata: meta("ops", "backup-28999", Some(("CronJob", "backup"))),
            ..Default::default()
        }],
        nodes: vec![
            node(NODE, "192.0.2.10", "10.1.0.0/24"),
            node("node-b", "192.0.2.11", "10.2.0.0/24"),
        ],
        ..Default::default()
    }
}

/// A kubeconfig pointing at the fake server.
fn kubeconfig(dir: &Path, addr: SocketAddr) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
         clusters:\n- name: t\n  cluster:\n    server: http://{addr}\n\
         users:\n- name: u\n  user: {{}}\n\
         contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn identity_cfg(enabled: Enabled, kubeconfig: PathBuf) -> IdentityConfig {
    IdentityConfig {
        enabled,
        node_name: NODE.into(),
        kubeconfig: Some(kubeconfig),
        watch_nodes: true,
    }
}

fn metric(r: &Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    r.gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test took too long")
}

/// The platform and a webhook receiver in one local server: every event
/// posted to /events and every body posted to /hook.
#[derive(Default)]
struct Received {
    events: Vec<Value>,
    hooks: Vec<Value>,
}

type Shared = Arc<Mutex<Received>>;

async fn events(State(s): State<Shared>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut s = s.lock().unwrap();
    s.events
        .extend(v["events"].as_array().unwrap().iter().cloned());
    StatusCode::ACCEPTED
}

async fn hook(State(s): State<Shared>, body: Bytes) -> StatusCode {
    s.lock()
        .unwrap()
        .hooks
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn receiver() -> (Shared, SocketAddr) {
    let shared = Shared::default();
    let app = Router::new()
        .route("/events", post(events))
        .route("/heartbeat", post(|| async { StatusCode::OK }))
        .route("/hook", post(hook))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (shared, addr)
}

fn classifier() -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/osprey-classifier.toml");
    Model::load(FeatureSpec::load(&path).unwrap()).unwrap()
}

fn flagged() -> Verdict {
    Verdict {
        label: Some("scan_connect".into()),
        class: None,
        probability: Some(0.9),
        score: Some(0.9),
        flagged: true,
    }
}

fn evidence(orig: &str, resp: &str) -> Evidence {
    Evidence {
        uid: "Cid1".into(),
        interim: false,
        model: None,
        label: None,
        score: None,
        probability: None,
        orig_h: ip(orig),
        orig_p: 40000,
        resp_h: ip(resp),
        resp_p: 80,
        proto: "tcp".into(),
        service: None,
        conn_state: "S0".into(),
        history: Some("S".into()),
        facts: None,
        identity: None,
    }
}

async fn started(cfg: &IdentityConfig, registry: &Registry, health: &Arc<Health>) -> Started {
    osprey::identity::start(cfg, &Fallbacks::default(), registry, Some(health.clone())).await
}

fn web_pod() -> Value {
    json!({"kind": "pod", "namespace": "shop", "pod": "web-7d4b9c-x1",
           "workload": {"kind": "Deployment", "name": "web"}, "node": NODE})
}

#[tokio::test]
async fn alerts_and_platform_events_and_actions_name_both_endpoints() {
    bounded(async {
        let (fake, api) = server::start(world()).await;
        let (received, platform) = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let health = Arc::new(Health::default());
        let cfg = identity_cfg(Enabled::On, kubeconfig(dir.path(), api));
        let started = started(&cfg, &registry, &health).await;
        let directory = started.directory.clone().expect("watch started");
        directory.wait_synced(BOUND).await.unwrap();
        assert_eq!(
            fake.world().pod_list_selectors,
            [format!("spec.nodeName={NODE}")]
        );

        // Owners resolved through the API: ReplicaSet -> Deployment,
        // Job -> CronJob; a StatefulSet and a bare pod need no lookup.
        let workload = |a: &str| match directory.endpoint(ip(a)) {
            Endpoint::Pod { workload, .. } => workload,
            other => panic!("{a} is {other:?}"),
        };
        let w = |kind: &str, name: &str| {
            Some(Workload {
                kind: kind.into(),
                name: name.into(),
            })
        };
        assert_eq!(workload("10.1.0.5"), w("Deployment", "web"));
        assert_eq!(workload("10.1.0.6"), w("CronJob", "backup"));
        assert_eq!(workload("10.1.0.7"), w("StatefulSet", "db"));
        assert_eq!(workload("10.1.0.8"), None);
        assert_eq!(
            fake.world().owner_gets,
            ["ReplicaSet/shop/web-7d4b9c", "Job/ops/backup-28999"]
        );
        // The others: this node, another node, another node's pod, outside.
        let kind = |a: &str| serde_json::to_value(directory.endpoint(ip(a))).unwrap();
        assert_eq!(kind("192.0.2.10"), json!({"kind": "host", "node": NODE}));
        assert_eq!(
            kind("192.0.2.11"),
            json!({"kind": "node", "node": "node-b"})
        );
        assert_eq!(
            kind("10.2.0.9"),
            json!({"kind": "pod_cidr", "node": "node-b"})
        );
        assert_eq!(kind("203.0.113.9"), json!({"kind": "external"}));
        assert_eq!(metric(&registry, "osprey_identity_pods_known", &[]), 4.0);
        assert_eq!(
            metric(
                &registry,
                "osprey_identity_watch_up",
                &[("resource", "pods")]
            ),
            1.0
        );
        assert_eq!(health.notes(), None);

        // The scorer's outputs, as the daemon opens them.
        let pcfg = PlatformConfig {
            url: Some(format!("http://{platform}")),
            events_path: "/events".into(),
            heartbeat_path: "/heartbeat".into(),
            spool_dir: dir.path().join("spool"),
            batch_max_wait_ms: 10,
            sync_interval_ms: 50,
            ..PlatformConfig::default()
        };
        let (reporter, task) = Reporter::open(&pcfg, NODE, &registry).unwrap();
        let (stop_reporter, stopped) = tokio::sync::oneshot::channel::<()>();
        let reporting = tokio::spawn(task.run(async {
            let _ = stopped.await;
        }));
        let attribution = Attribution::from(&started);
        let out = OutputConfig {
            log_dir: dir.path().join("logs"),
            rotate_interval_secs: 0,
            conn_pod_columns: true,
            ..OutputConfig::default()
        };
        let mut outputs =
            osprey::report::live::open_outputs(&out, reporter.clone(), NODE, attribution.clone())
                .unwrap();
        let mut r = ConnRecord::skeleton(ip("10.1.0.5"), 40000, ip("203.0.113.9"), 443, Proto::Tcp);
        r.conn_state = ConnState::S0;
        outputs.conn(&r).unwrap();
        assert!(outputs.alert(&r, &[classifier()], &[flagged()]).unwrap());
        outputs.finish().unwrap();

        let alerts = std::fs::read_to_string(out.log_dir.join("alerts.log")).unwrap();
        let alert: Value = serde_json::from_str(alerts.lines().next().unwrap()).unwrap();
        assert_eq!(alert["id.orig_h"], "10.1.0.5");
        assert_eq!(alert["osprey"]["identity"]["orig"], web_pod());
        assert_eq!(
            alert["osprey"]["identity"]["resp"],
            json!({"kind": "external"})
        );

        let conn = std::fs::read_to_string(out.log_dir.join("conn.log")).unwrap();
        let fields: Vec<&str> = conn
            .lines()
            .find_map(|l| l.strip_prefix("#fields\t"))
            .unwrap()
            .split('\t')
            .collect();
        let row: Vec<&str> = conn
            .lines()
            .find(|l| !l.starts_with('#'))
            .unwrap()
            .split('\t')
            .collect();
        assert_eq!(fields.len(), row.len());
        let col = |name: &str| row[fields.iter().position(|f| *f == name).unwrap()];
        // Zeek's columns come first and unchanged; the pod columns follow.
        assert_eq!(fields[..3], ["ts", "uid", "id.orig_h"]);
        assert!(
            fields.iter().position(|f| *f == "orig_k8s.kind")
                > fields.iter().position(|f| *f == "tunnel_parents")
        );
        assert_eq!(
            [
                col("orig_k8s.kind"),
                col("orig_k8s.namespace"),
                col("orig_k8s.pod"),
                col("orig_k8s.workload"),
                col("orig_k8s.node")
            ],
            ["pod", "shop", "web-7d4b9c-x1", "Deployment/web", NODE]
        );
        assert_eq!(
            [
                col("resp_k8s.kind"),
                col("resp_k8s.pod"),
                col("resp_k8s.node")
            ],
            ["external", "-", "-"]
        );

        // The responder: a hook action about the pod, towards a pod of
        // node-b; the platform's action event and the hook's payload.
        let hooks = Hooks::new(
            &[HookConfig {
                name: "notify".into(),
                webhook: Some(WebhookConfig {
                    url: format!("http://{platform}/hook"),
                    headers: Default::default(),
                    token_file: None,
                    timeout_secs: 2,
                    retries: 1,
                    backoff_initial_ms: 10,
                }),
                exec: None,
            }],
            &registry,
        )
        .unwrap();
        let responder = Responder {
            admission: Admission::new(
                AdmitConfig {
                    enforce: true,
                    alert_repeat: Duration::from_secs(60),
                    breakers: BreakerLimits {
                        block: 10,
                        rate_limit: 10,
                        quarantine_pod: 10,
                        hook: 10,
                    },
                    repeat_memory: Duration::from_secs(60),
                    ipv6_aggregate: None,
                },
                Allowlist::new(&[]),
            ),
            dispatch: Dispatch::default()
                .with_hooks(hooks)
                .with_reporter(reporter.clone(), NODE)
                .with_identity(attribution),
            metrics: RespondMetrics::register(&registry),
            rediscover: Duration::from_secs(3600),
            api_servers: Vec::new(),
            control: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let responding = tokio::spawn(responder.run(rx));
        tx.send(Proposal {
            decision: Decision {
                rule: "pod-scan".into(),
                kind: ActionKind::Hook {
                    hook: "notify".into(),
                },
                target: ip("10.1.0.5"),
                ttl: Duration::from_secs(60),
                model: None,
                index: 0,
                escalate: None,
            },
            evidence: evidence("10.1.0.5", "10.2.0.9"),
            known_good: None,
            forgeable: false,
            at: 1.0,
        })
        .await
        .unwrap();
        drop(tx);
        responding.await.unwrap();

        let (alert_event, action_event, payload) = loop {
            {
                let s = received.lock().unwrap();
                let of = |k: &str| s.events.iter().find(|e| e["kind"] == k).cloned();
                if let (Some(a), Some(b), Some(h)) = (of("alert"), of("action"), s.hooks.first()) {
                    break (a, b, h.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(alert_event["body"]["identity"]["orig"], web_pod());
        assert_eq!(
            alert_event["body"]["identity"]["resp"],
            json!({"kind": "external"})
        );
        let pod_cidr = json!({"kind": "pod_cidr", "node": "node-b"});
        for action in [&action_event["body"], &payload] {
            assert_eq!(action["rule"], "pod-scan", "{action}");
            assert_eq!(action["evidence"]["identity"]["orig"], web_pod());
            assert_eq!(action["evidence"]["identity"]["resp"], pod_cidr);
        }
        let _ = stop_reporter.send(());
        reporting.await.unwrap();
    })
    .await;
}

/// A pod that appears, changes address and vanishes while the watch runs
/// is named, renamed and forgotten in events.
#[tokio::test]
async fn pods_appearing_moving_and_vanishing_are_followed() {
    bounded(async {
        let (fake, api) = server::start(world()).await;
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let health = Arc::new(Health::default());
        let cfg = identity_cfg(Enabled::Auto, kubeconfig(dir.path(), api));
        let started = started(&cfg, &registry, &health).await;
        assert!(started.attribute, "auto finds the cluster");
        let attribution = Attribution::from(&started);
        let d = started.directory.expect("watch started");
        d.wait_synced(BOUND).await.unwrap();
        let name = |a: &str| {
            attribution
                .conn(ip(a), ip("203.0.113.9"))
                .and_then(|c| c.orig.pod_name())
        };
        fake.wait_for_watcher().await;
        let new = |a: &str| {
            pod(
                "shop",
                "web-7d4b9c-x3",
                NODE,
                a,
                Some(("ReplicaSet", "web-7d4b9c")),
            )
        };
        fake.watch_event("ADDED", new("10.1.0.20"));
        while name("10.1.0.20").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(name("10.1.0.20").as_deref(), Some("shop/web-7d4b9c-x3"));
        fake.watch_event("MODIFIED", new("10.1.0.21"));
        while name("10.1.0.21").is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(name("10.1.0.20"), None);
        fake.watch_event("DELETED", new("10.1.0.21"));
        while name("10.1.0.21").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Still in this node's pod CIDR, no longer a pod.
        assert_eq!(d.endpoint(ip("10.1.0.21")).kind(), "pod_cidr");
        // The ReplicaSet was read once for both of its pods.
        assert_eq!(
            fake.world().owner_gets,
            ["ReplicaSet/shop/web-7d4b9c", "Job/ops/backup-28999"]
        );
    })
    .await;
}

/// No RBAC for pods and nodes: the watch retries, events carry `external`
/// for everything, the metric and `/readyz` say so, and once the role is
/// fixed the watch recovers without a restart.
#[tokio::test]
async fn a_refused_watch_degrades_attribution_and_recovers() {
    bounded(async {
        let (fake, api) = server::start(World {
            forbidden: vec!["pods", "nodes"],
            ..world()
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let health = Arc::new(Health::default());
        let cfg = identity_cfg(Enabled::On, kubeconfig(dir.path(), api));
        let started = started(&cfg, &registry, &health).await;
        let d = started
            .directory
            .clone()
            .expect("the watch runs, and retries");
        while metric(
            &registry,
            "osprey_identity_errors_total",
            &[("op", "watch_pods")],
        ) < 1.0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            metric(
                &registry,
                "osprey_identity_watch_up",
                &[("resource", "pods")]
            ),
            0.0
        );
        let note = health.notes().expect("a /readyz note");
        assert!(
            note.starts_with("pod identity degraded: cannot watch"),
            "{note}"
        );
        assert_eq!(d.endpoint(ip("10.1.0.5")), Endpoint::External);

        fake.world().forbidden.clear();
        d.wait_synced(BOUND).await.unwrap();
        while health.notes().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            metric(
                &registry,
                "osprey_identity_watch_up",
                &[("resource", "pods")]
            ),
            1.0
        );
        assert_eq!(
            d.endpoint(ip("10.1.0.5")).pod_name().as_deref(),
            Some("shop/web-7d4b9c-x1")
        );
    })
    .await;
}

/// Without a cluster: `auto` is off without a note; `true` is degraded
/// (note and metric), and neither fails.
#[tokio::test]
async fn outside_a_cluster_identity_is_off_without_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    for (enabled, degraded) in [(Enabled::Auto, false), (Enabled::On, true)] {
        let registry = Registry::new();
        let health = Arc::new(Health::default());
        let s = started(&identity_cfg(enabled, missing.clone()), &registry, &health).await;
        assert!(s.directory.is_none() && !s.attribute);
        assert!(!Attribution::from(&s).enabled());
        assert_eq!(health.notes().is_some(), degraded, "{enabled:?}");
    }
    let registry = Registry::new();
    let health = Arc::new(Health::default());
    let off = identity_cfg(Enabled::Off, missing);
    let s = started(&off, &registry, &health).await;
    assert!(s.directory.is_none() && health.notes().is_none());
}
