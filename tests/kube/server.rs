//! A small stand-in for the Kubernetes API server: the endpoints the
//! enforcer, the pod identity watch and the allowlist discovery use (pods,
//! nodes, the ReplicaSets and Jobs that own pods, EndpointSlices, a
//! namespace's pods by label, Services), with request bodies decoded into
//! k8s-openapi types so the tests check the objects the enforcer sends.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use k8s_openapi::List;
use tokio::sync::broadcast;

type Q = Query<HashMap<String, String>>;

/// What the fake cluster holds and what it was sent.
#[derive(Default)]
pub struct World {
    pub pods: Vec<Pod>,
    pub namespaces: BTreeMap<String, Namespace>,
    pub policies: BTreeMap<(String, String), NetworkPolicy>,
    /// Labels osprey's field manager owns, per pod (server-side apply
    /// replaces them with what each apply carries).
    pub osprey_labels: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Every NetworkPolicy apply body, decoded.
    pub policy_applies: Vec<NetworkPolicy>,
    /// Every pod apply body, decoded.
    pub pod_applies: Vec<Pod>,
    /// Every label-removing merge patch, as (namespace, name).
    pub pod_unlabels: Vec<(String, String)>,
    /// Answer this many policy applies with 500 before serving them.
    pub fail_applies: usize,
    /// Pod list queries' field selectors.
    pub pod_list_selectors: Vec<String>,
    /// The resource version lists report.
    pub rv: u64,
    pub nodes: Vec<Node>,
    pub replicasets: Vec<ReplicaSet>,
    pub jobs: Vec<Job>,
    /// Resources (`pods`, `nodes`, `replicasets`, `jobs`,
    /// `endpointslices`, `services`) answered 403, as for a service account
    /// whose role lacks them.
    pub forbidden: Vec<&'static str>,
    pub endpointslices: Vec<EndpointSlice>,
    pub services: Vec<Service>,
    /// Namespaced list queries' label selectors, as `resource/ns?selector`.
    pub label_queries: Vec<String>,
    /// ReplicaSet and Job reads, as `kind/namespace/name`.
    pub owner_gets: Vec<String>,
}

#[derive(Clone)]
pub struct Fake {
    pub world: Arc<Mutex<World>>,
    watch: broadcast::Sender<(String, Pod)>,
}

impl Fake {
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }

    /// Waits until a watch request is open, so events sent next reach it.
    pub async fn wait_for_watcher(&self) {
        while self.watch.receiver_count() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) to watchers.
    /// Like the API server, it stamps the object with a new resource
    /// version (the watcher refuses events without one).
    pub fn watch_event(&self, kind: &str, mut pod: Pod) {
        let rv = {
            let mut w = self.world();
            w.rv += 1;
            w.rv
        };
        pod.metadata.resource_version = Some(rv.to_string());
        let _ = self.watch.send((kind.to_string(), pod));
    }
}

/// Starts the server on a free port of 127.0.0.1.
pub async fn start(world: World) -> (Fake, SocketAddr) {
    let (watch, _) = broadcast::channel(64);
    let fake = Fake {
        world: Arc::new(Mutex::new(world)),
        watch,
    };
    let app = Router::new()
        .route("/api/v1/pods", get(pods))
        .route("/api/v1/nodes", get(nodes))
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
            get(get_replicaset),
        )
        .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job))
        .route("/api/v1/namespaces/{ns}", get(namespace))
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
            get(list_endpointslices),
        )
        .route("/api/v1/namespaces/{ns}/pods", get(list_namespace_pods))
        .route("/api/v1/namespaces/{ns}/services/{name}", get(get_service))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            axum::routing::patch(apply_pod),
        )
        .route(
            "/apis/networking.k8s.io/v1/networkpolicies",
            get(list_policies),
        )
        .route(
            "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
            get(get_policy).patch(apply_policy).delete(delete_policy),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, addr)
}

fn json(code: StatusCode, v: &impl serde::Serialize) -> Response {
    let body = serde_json::to_string(v).unwrap();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn status(code: u16, reason: &str) -> Response {
    let s = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": reason, "reason": reason, "code": code,
    });
    json(StatusCode::from_u16(code).unwrap(), &s)
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

/// `spec.nodeName=X` is the only field selector the enforcer uses.
fn field_matches(selector: Option<&String>, p: &Pod) -> bool {
    match selector.and_then(|s| s.strip_prefix("spec.nodeName=")) {
        Some(node) => node_of(p) == Some(node),
        None => true,
    }
}

fn labels_match(selector: Option<&String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(sel) = selector else { return true };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    sel.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').expect("equality selectors only");
        labels.get(k).map(String::as_str) == Some(v)
    })
}

fn forbidden(f: &Fake, resource: &str) -> Option<Response> {
    f.world()
        .forbidden
        .contains(&resource)
        .then(|| status(403, "Forbidden"))
}

/// Nodes: a list, and a watch that stays open without events (the tests
/// change nodes through the unit tests of the index, not here).
async fn nodes(State(f): State<Fake>, Query(q): Q) -> Response {
    if let Some(r) = forbidden(&f, "nodes") {
        return r;
    }
    if q.get("watch").map(String::as_str) == Some("true") {
        let stream = futures::stream::pending::<Result<Bytes, Infallible>>();
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let mut w = f.world();
    w.rv += 1;
    let list = List::<Node> {
        items: w.nodes.clone(),
        metadata: ListMeta {
            resource_version: Some(w.rv.to_string()),
            ..Default::default()
        },
    };
    json(StatusCode::OK, &list)
}

fn named<'a, T: k8s_openapi::Metadata<Ty = kube::api::ObjectMeta>>(
    items: &'a [T],
    ns: &str,
    name: &str,
) -> Option<&'a T> {
    items.iter().find(|o| {
        o.metadata().namespace.as_deref() == Some(ns) && o.metadata().name.as_deref() == Some(name)
    })
}

async fn get_replicaset(
    State(f): State<Fake>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    f.world().owner_gets.push(format!("ReplicaSet/{ns}/{name}"));
    if let Some(r) = forbidden(&f, "replicasets") {
        return r;
    }
    match named(&f.world().replicasets, &ns, &name) {
        Some(o) => json(StatusCode::OK, o),
        None => status(404, "NotFound"),
    }
}

async fn get_job(State(f): State<Fake>, Path((ns, name)): Path<(String, String)>) -> Response {
    f.world().owner_gets.push(format!("Job/{ns}/{name}"));
    if let Some(r) = forbidden(&f, "jobs") {
        return r;
    }
    match named(&f.world().jobs, &ns, &name) {
        Some(o) => json(StatusCode::OK, o),
        None => status(404, "NotFound"),
    }
}

async fn pods(State(f): State<Fake>, Query(q): Q) -> Response {
    if let Some(r) = forbidden(&f, "pods") {
        return r;
    }
    let selector = q.get("fieldSelector").cloned();
    if q.get("watch").map(String::as_str) == Some("true") {
        let rx = f.watch.subscribe();
        let stream = futures::stream::unfold((rx, selector), |(mut rx, sel)| async move {
            loop {
                match rx.recv().await {
                    Ok((kind, pod)) if field_matches(sel.as_ref(), &pod) => {
                        let ev = serde_json::json!({"type": kind, "object": pod});
                        let line = format!("{ev}\n");
                        return Some((Ok::<_, Infallible>(Bytes::from(line)), (rx, sel)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let mut w = f.world();
    w.pod_list_selectors
        .push(selector.clone().unwrap_or_default());
    let items: Vec<Pod> = w
        .pods
        .iter()
        .filter(|p| field_matches(selector.as_ref(), p))
        .cloned()
        .collect();
    w.rv += 1;
    let list = List::<Pod> {
        items,
        metadata: ListMeta {
            resource_version: Some(w.rv.to_string()),
            ..Default::default()
        },
    };
    json(StatusCode::OK, &list)
}

async fn namespace(State(f): State<Fake>, Path(ns): Path<String>) -> Response {
    match f.world().namespaces.get(&ns) {
        Some(n) => json(StatusCode::OK, n),
        None => status(404, "NotFound"),
    }
}

fn check_apply(q: &HashMap<String, String>, h: &HeaderMap) {
    assert_eq!(q.get("fieldManager").map(String::as_str), Some("osprey"));
    assert_eq!(q.get("force").map(String::as_str), Some("true"));
    assert_eq!(
        h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/apply-patch+yaml")
    );
}

async fn apply_pod(
    State(f): State<Fake>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        == Some("application/merge-patch+json")
    {
        return unlabel_pod(f, ns, name, body);
    }
    check_apply(&q, &h);
    let applied: Pod = serde_json::from_slice(&body).expect("a Pod");
    assert_eq!(applied.metadata.name.as_deref(), Some(name.as_str()));
    assert!(applied.spec.is_none() && applied.status.is_none());
    let mut w = f.world();
    w.pod_applies.push(applied.clone());
    let Some(i) = w.pods.iter().position(|p| {
        p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.name.as_deref() == Some(&name)
    }) else {
        // Apply to a missing object is a create, which osprey's role does
        // not grant.
        return status(403, "Forbidden");
    };
    let new_own = applied.metadata.labels.unwrap_or_default();
    let old_own = w
        .osprey_labels
        .insert((ns, name), new_own.clone())
        .unwrap_or_default();
    let labels = w.pods[i].metadata.labels.get_or_insert_with(BTreeMap::new);
    for k in old_own.keys() {
        labels.remove(k);
    }
    labels.extend(new_own);
    let pod = w.pods[i].clone();
    json(StatusCode::OK, &pod)
}

/// A merge patch that may only remove labels (set them to null).
fn unlabel_pod(f: Fake, ns: String, name: String, body: Bytes) -> Response {
    let patch: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let obj = patch.as_object().expect("an object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["metadata"], "{patch}");
    let labels = patch["metadata"]["labels"].as_object().expect("labels");
    assert!(labels.values().all(|v| v.is_null()), "{patch}");
    let mut w = f.world();
    w.pod_unlabels.push((ns.clone(), name.clone()));
    let Some(i) = w.pods.iter().position(|p| {
        p.metadata.namespace.as_deref() == Some(&ns) && p.metadata.name.as_deref() == Some(&name)
    }) else {
        return status(404, "NotFound");
    };
    if let Some(l) = w.pods[i].metadata.labels.as_mut() {
        for k in labels.keys() {
            l.remove(k);
        }
    }
    w.osprey_labels.remove(&(ns, name));
    let pod = w.pods[i].clone();
    json(StatusCode::OK, &pod)
}

async fn apply_policy(
    State(f): State<Fake>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Q,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let mut w = f.world();
    if w.fail_applies > 0 {
        w.fail_applies -= 1;
        return status(500, "InternalError");
    }
    check_apply(&q, &h);
    let np: NetworkPolicy = serde_json::from_slice(&body).expect("a NetworkPolicy");
    assert_eq!(np.metadata.name.as_deref(), Some(name.as_str()));
    assert_eq!(np.metadata.namespace.as_deref(), Some(ns.as_str()));
    w.policy_applies.push(np.clone());
    w.policies.insert((ns, name), np.clone());
    json(StatusCode::OK, &np)
}

async fn get_policy(State(f): State<Fake>, Path((ns, name)): Path<(String, String)>) -> Response {
    match f.world().policies.get(&(ns, name)) {
        Some(np) => json(StatusCode::OK, np),
        None => status(404, "NotFound"),
    }
}

async fn delete_policy(
    State(f): State<Fake>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match f.world().policies.remove(&(ns, name)) {
        Some(np) => json(StatusCode::OK, &np),
        None => status(404, "NotFound"),
    }
}

async fn list_policies(State(f): State<Fake>, Query(q): Q) -> Response {
    let w = f.world();
    let items: Vec<NetworkPolicy> = w
        .policies
        .values()
        .filter(|np| labels_match(q.get("labelSelector"), np.metadata.labels.as_ref()))
        .cloned()
        .collect();
    let list = List::<NetworkPolicy> {
        items,
        metadata: ListMeta {
            resource_version: Some(w.rv.to_string()),
            ..Default::default()
        },
    };
    json(StatusCode::OK, &list)
}

/// A namespaced list: the items of `ns` whose labels match the query's
/// selector, or 403 when `resource` is forbidden.
fn namespaced_list<T>(
    f: &Fake,
    resource: &'static str,
    ns: &str,
    q: &HashMap<String, String>,
    items: impl Fn(&World) -> Vec<T>,
) -> Response
where
    T: k8s_openapi::Metadata<Ty = kube::api::ObjectMeta>
        + k8s_openapi::ListableResource
        + serde::Serialize
        + Clone,
{
    if let Some(r) = forbidden(f, resource) {
        return r;
    }
    let mut w = f.world();
    let selector = q.get("labelSelector").cloned();
    w.label_queries.push(format!(
        "{resource}/{ns}?{}",
        selector.clone().unwrap_or_default()
    ));
    let items: Vec<T> = items(&w)
        .into_iter()
        .filter(|o| o.metadata().namespace.as_deref() == Some(ns))
        .filter(|o| labels_match(selector.as_ref(), o.metadata().labels.as_ref()))
        .collect();
    w.rv += 1;
    let list = List::<T> {
        items,
        metadata: ListMeta {
            resource_version: Some(w.rv.to_string()),
            ..Default::default()
        },
    };
    json(StatusCode::OK, &list)
}

async fn list_endpointslices(
    State(f): State<Fake>,
    Path(ns): Path<String>,
    Query(q): Q,
) -> Response {
    namespaced_list(&f, "endpointslices", &ns, &q, |w| w.endpointslices.clone())
}

async fn list_namespace_pods(
    State(f): State<Fake>,
    Path(ns): Path<String>,
    Query(q): Q,
) -> Response {
    namespaced_list(&f, "pods", &ns, &q, |w| w.pods.clone())
}

async fn get_service(State(f): State<Fake>, Path((ns, name)): Path<(String, String)>) -> Response {
    if let Some(r) = forbidden(&f, "services") {
        return r;
    }
    match named(&f.world().services, &ns, &name) {
        Some(o) => json(StatusCode::OK, o),
        None => status(404, "NotFound"),
    }
}
