//! The deployment files agree with osprey: the Helm chart renders a
//! ConfigMap whose configuration and rules `osprey check` accepts, whose
//! paths are the ones the DaemonSet mounts, and whose schema knows exactly
//! osprey's configuration keys; the chart, the systemd unit and the
//! Dockerfile grant the same two capabilities.
//!
//! Needs helm: `$OSPREY_HELM` (what .ci/run exports after
//! .ci/deploy-check installed it), else `.ci/.cache/bin/helm`, else `helm`
//! in PATH. Without one the chart tests print why and pass, unless
//! `OSPREY_E2E=1`, which makes a missing helm a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn chart() -> PathBuf {
    Path::new(ROOT).join("helm/osprey")
}

/// The helm binary, or `None` (with the reason printed) when there is none.
fn helm(test: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("OSPREY_HELM").map(PathBuf::from),
        Some(Path::new(ROOT).join(".ci/.cache/bin/helm")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    let in_path = Command::new("helm").arg("version").output();
    if in_path.is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("helm"));
    }
    let why = "needs helm ($OSPREY_HELM, .ci/.cache/bin/helm from .ci/deploy-check, or PATH)";
    if std::env::var("OSPREY_E2E").is_ok_and(|v| v == "1") {
        panic!("{test}: OSPREY_E2E=1 but the test cannot run: {why}");
    }
    eprintln!("{test}: skipped: {why} (set OSPREY_E2E=1 to make this an error)");
    None
}

/// `helm template` with a values file (or the defaults): every object.
fn render(helm: &Path, values: Option<&str>) -> Vec<Value> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", "osprey"])
        .arg(chart())
        .args(["--namespace", "osprey"]);
    if let Some(v) = values {
        cmd.arg("-f").arg(chart().join(v));
    }
    let out = cmd.output().expect("running helm");
    assert!(
        out.status.success(),
        "helm template ({values:?}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn object<'a>(objs: &'a [Value], kind: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == kind)
}

/// The object of `kind` of pod identity (its name ends with `-identity`)
/// or of the enforcer (neither `-identity` nor `-allowlist`).
fn role<'a>(objs: &'a [Value], kind: &str, identity: bool) -> Option<&'a Value> {
    objs.iter().find(|o| {
        o["kind"] == kind
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-identity") == identity && !n.ends_with("-allowlist"))
    })
}

/// The allowlist discovery's objects of `kind`.
fn allowlist_objects<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter()
        .filter(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-allowlist"))
        })
        .collect()
}

/// Every (group/resource:verb) a ClusterRole grants.
fn grants(role: &Value) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for group in rule["apiGroups"].as_array().unwrap() {
            for res in rule["resources"].as_array().unwrap() {
                for verb in rule["verbs"].as_array().unwrap() {
                    grants.insert(format!(
                        "{}/{}:{}",
                        group.as_str().unwrap(),
                        res.as_str().unwrap(),
                        verb.as_str().unwrap()
                    ));
                }
            }
        }
    }
    grants
}

/// The values cases CI renders (.ci/deploy-check renders the same).
const CASES: [Option<&str>; 3] = [
    None,
    Some("ci/enforcement-values.yaml"),
    Some("ci/bundled-rules-values.yaml"),
];

fn osprey(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(args)
        .current_dir(dir)
        // What the DaemonSet sets from spec.nodeName; the Kubernetes
        // enforcer refuses to start without it.
        .env("NODE_NAME", "node-1")
        .output()
        .expect("running osprey")
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> Option<&'a str> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)?["mountPath"]
        .as_str()
}

/// The rendered config and rules pass `osprey check`, for every case, and
/// every path in the config is one the pod has mounted.
#[test]
fn the_rendered_configmap_passes_osprey_check() {
    let Some(helm) = helm("the_rendered_configmap_passes_osprey_check") else {
        return;
    };
    for case in CASES {
        let objs = render(&helm, case);
        let name = case.unwrap_or("default values");
        let cm = object(&objs, "ConfigMap").expect("a ConfigMap");
        let dir = tempfile::tempdir().expect("tempdir");
        let config_text = cm["data"]["osprey.yaml"].as_str().expect("osprey.yaml");
        let config = dir.path().join("osprey.yaml");
        std::fs::write(&config, config_text).expect("write config");

        let out = osprey(&["check", "--config", "osprey.yaml"], dir.path());
        assert!(
            out.status.success(),
            "{name}: osprey check --config refused the rendered config:\n{}\n{config_text}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout).trim_end()
        );

        let cfg: Value = serde_yaml_ng::from_str(config_text).expect("config YAML");
        let ds = object(&objs, "DaemonSet").expect("a DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        match cm["data"]["rules.yaml"].as_str() {
            Some(rules_text) => {
                std::fs::write(dir.path().join("rules.yaml"), rules_text).expect("write rules");
                let out = osprey(
                    &["check", "--config", "osprey.yaml", "--rules", "rules.yaml"],
                    dir.path(),
                );
                assert!(
                    out.status.success(),
                    "{name}: osprey check --rules refused the rendered rules:\n{}\n{rules_text}",
                    String::from_utf8_lossy(&out.stderr)
                );
                eprintln!(
                    "{name}: {}",
                    String::from_utf8_lossy(&out.stdout).trim_end()
                );
                let rules_file = cfg["respond"]["rules_file"].as_str().expect("rules_file");
                assert_eq!(
                    Some(rules_file),
                    mount_path(c, "config")
                        .map(|d| format!("{d}/rules.yaml"))
                        .as_deref(),
                    "{name}: respond.rules_file is not where the ConfigMap is mounted"
                );
            }
            None => assert!(
                cfg["respond"]["rules_file"].is_null(),
                "{name}: rules_file set but no rules.yaml rendered"
            ),
        }

        // The container runs the rendered file.
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let config_dir = mount_path(c, "config").expect("config mount");
        assert_eq!(
            args[..3],
            ["run", "--config", &format!("{config_dir}/osprey.yaml")]
        );

        // The metrics address is the container port the probes use.
        let port = c["ports"][0]["containerPort"].as_u64().expect("port");
        let listen = cfg["metrics"]["listen_addr"].as_str().expect("listen_addr");
        assert!(listen.ends_with(&format!(":{port}")), "{name}: {listen}");
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{name}: {probe}");
        }
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");

        // Logs: stdout, or files in the mounted log volume.
        if cfg["output"]["stdout"] == true {
            assert!(mount_path(c, "logs").is_none());
        } else {
            assert_eq!(
                cfg["output"]["log_dir"].as_str(),
                mount_path(c, "logs"),
                "{name}: output.log_dir is not the log volume"
            );
        }

        // The platform: the token file is in the Secret's mount, the spool
        // on its volume.
        match cfg["platform"]["url"].as_str() {
            Some(_) => {
                let token = cfg["platform"]["token_file"].as_str().expect("token_file");
                let secret_dir = mount_path(c, "platform-token").expect("token mount");
                let vol = pod["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == "platform-token")
                    .expect("token volume");
                let item = vol["secret"]["items"][0]["path"].as_str().expect("item");
                assert_eq!(token, format!("{secret_dir}/{item}"), "{name}");
                assert_eq!(
                    cfg["platform"]["spool_dir"].as_str(),
                    mount_path(c, "spool"),
                    "{name}: platform.spool_dir is not the spool volume"
                );
            }
            None => assert!(mount_path(c, "platform-token").is_none()),
        }

        // NODE_NAME from the downward API (identity.node_name's and
        // respond.kube.node_name's default), and the service account
        // token only for pod identity and the enforcer.
        let env = c["env"].as_array().expect("env");
        let node = env
            .iter()
            .find(|e| e["name"] == "NODE_NAME")
            .expect("NODE_NAME");
        assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
        let kube = cfg["respond"]["kube"]["enabled"] == true;
        let identity = cfg["identity"]["enabled"] == true;
        let allowlist = cfg["respond"]["allowlist_cluster"] == true;
        assert_eq!(
            pod["automountServiceAccountToken"],
            kube || identity || allowlist,
            "{name}"
        );
        assert_eq!(
            allowlist_objects(&objs, "ClusterRole").len(),
            usize::from(allowlist),
            "{name}: the allowlist's ClusterRole exactly when it discovers the cluster"
        );
        // The node's resolv.conf files are mounted where the config reads
        // them.
        for path in cfg["respond"]["allowlist_resolv_conf"]
            .as_array()
            .expect("allowlist_resolv_conf")
        {
            let path = path.as_str().expect("a path");
            let mounted = c["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .any(|m| {
                    m["readOnly"] == true
                        && m["mountPath"]
                            .as_str()
                            .is_some_and(|d| path == d || path.starts_with(&format!("{d}/")))
                });
            assert!(mounted, "{name}: {path} is not on a read-only mount");
        }
        assert_eq!(
            role(&objs, "ClusterRole", false).is_some(),
            kube,
            "{name}: the enforcer's ClusterRole exactly when the Kubernetes enforcer runs"
        );
        assert_eq!(
            role(&objs, "ClusterRole", true).is_some(),
            identity,
            "{name}: the read-only identity ClusterRole exactly when pod identity is on"
        );
        assert_eq!(
            object(&objs, "ServiceMonitor").is_some(),
            case == Some("ci/enforcement-values.yaml")
        );
    }
}

/// The ClusterRole grants the Kubernetes enforcer's calls and nothing
/// else, and the enforcement case turns everything on.
#[test]
fn the_enforcement_values_turn_on_enforcement_with_exact_rbac() {
    let Some(helm) = helm("the_enforcement_values_turn_on_enforcement_with_exact_rbac") else {
        return;
    };
    let objs = render(&helm, Some("ci/enforcement-values.yaml"));
    let cm = object(&objs, "ConfigMap").unwrap();
    let cfg: Value = serde_yaml_ng::from_str(cm["data"]["osprey.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["respond"]["enforce"], true);
    assert_eq!(cfg["respond"]["kube"]["enabled"], true);
    assert!(cfg["platform"]["url"].is_string());

    let role = role(&objs, "ClusterRole", false).expect("ClusterRole");
    let grants = grants(role);
    // sensor/identity watches (list + watch) this node's pods for the
    // enforcer too; sensor/respond/kube/enforce.rs applies the quarantine label (patch), reads the
    // namespace's opt-in (get), reads and applies block policies (get,
    // patch, and create: server-side apply of a new object is authorised
    // as create); gc.rs lists policies and deletes expired ones.
    let want: BTreeSet<String> = [
        "/pods:list",
        "/pods:watch",
        "/pods:patch",
        "/namespaces:get",
        "networking.k8s.io/networkpolicies:get",
        "networking.k8s.io/networkpolicies:list",
        "networking.k8s.io/networkpolicies:create",
        "networking.k8s.io/networkpolicies:patch",
        "networking.k8s.io/networkpolicies:delete",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(grants, want);

    let binding = self::role(&objs, "ClusterRoleBinding", false).expect("binding");
    let sa = object(&objs, "ServiceAccount").expect("service account");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let ds = object(&objs, "DaemonSet").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["priorityClassName"],
        "system-node-critical"
    );
}

/// Pod identity is on by default with its own read-only ClusterRole,
/// bound to the sensor's service account, granting exactly what its
/// watches call; off, neither role nor token.
#[test]
fn pod_identity_is_on_by_default_with_a_read_only_role_of_its_own() {
    let Some(helm) = helm("pod_identity_is_on_by_default_with_a_read_only_role_of_its_own") else {
        return;
    };
    let objs = render(&helm, None);
    let cm = object(&objs, "ConfigMap").unwrap();
    let cfg: Value = serde_yaml_ng::from_str(cm["data"]["osprey.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["identity"]["enabled"], true);
    assert_eq!(cfg["identity"]["watch_nodes"], true);
    assert_eq!(cfg["respond"]["kube"]["enabled"], false);
    assert!(
        role(&objs, "ClusterRole", false).is_none(),
        "no enforcer role"
    );
    let r = role(&objs, "ClusterRole", true).expect("identity ClusterRole");
    // sensor/identity: watch.rs lists and watches this node's pods and the
    // nodes; owner.rs reads a pod's ReplicaSet or Job. Nothing writes.
    let want: BTreeSet<String> = [
        "/pods:list",
        "/pods:watch",
        "/nodes:list",
        "/nodes:watch",
        "apps/replicasets:get",
        "batch/jobs:get",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(grants(r), want);
    let binding = role(&objs, "ClusterRoleBinding", true).expect("identity binding");
    let sa = object(&objs, "ServiceAccount").expect("service account");
    assert_eq!(binding["roleRef"]["name"], r["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    let ds = object(&objs, "DaemonSet").unwrap();
    assert_eq!(
        ds["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
}

/// The pod is what the issue asks: host network, every node, two
/// capabilities, nothing privileged, a read-only root.
#[test]
fn the_pod_holds_only_net_raw_and_net_admin() {
    let Some(helm) = helm("the_pod_holds_only_net_raw_and_net_admin") else {
        return;
    };
    for case in CASES {
        let objs = render(&helm, case);
        let ds = object(&objs, "DaemonSet").unwrap();
        let pod = &ds["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true);
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
        assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
        assert!(pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()));
        let sc = &pod["containers"][0]["securityContext"];
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(
            sc["capabilities"]["add"],
            serde_json::json!(["NET_RAW", "NET_ADMIN"])
        );
        // An init container that hands host directories over holds CHOWN
        // only.
        for init in pod["initContainers"].as_array().into_iter().flatten() {
            let isc = &init["securityContext"];
            assert_eq!(isc["capabilities"]["add"], serde_json::json!(["CHOWN"]));
            assert_eq!(isc["allowPrivilegeEscalation"], false);
        }
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    }
}

/// The capabilities are the same everywhere osprey is deployed: the
/// chart's container, the systemd unit, the image's file capabilities;
/// and the image's user is the chart's.
#[test]
fn chart_unit_and_image_grant_the_same_capabilities() {
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).expect(p);
    let unit = read("systemd/osprey.service");
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} in the unit"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let caps = vec!["CAP_NET_RAW".to_string(), "CAP_NET_ADMIN".to_string()];
    assert_eq!(setting("AmbientCapabilities"), caps);
    assert_eq!(setting("CapabilityBoundingSet"), caps);

    let docker = read("Dockerfile");
    assert!(
        docker.contains("setcap cap_net_raw,cap_net_admin=ep /usr/local/bin/osprey"),
        "the image's osprey holds NET_RAW and NET_ADMIN"
    );
    assert!(docker.contains("setcap cap_net_admin=ep /usr/sbin/nft"));
    assert!(docker.contains("\nUSER 65532:65532\n"));

    let values: Value = serde_yaml_ng::from_str(&read("helm/osprey/values.yaml")).unwrap();
    assert_eq!(values["podSecurityContext"]["runAsUser"], 65532);
    assert_eq!(
        values["containerSecurityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_RAW", "NET_ADMIN"])
    );
}

/// The children of a node of a JSON tree, or `None` for a leaf.
type Children = fn(&Value) -> Option<&serde_json::Map<String, Value>>;

/// Every leaf path (`a.b.c`) of a JSON tree whose children `children`
/// gives: a value's object members ([`Value::as_object`]), or a schema's
/// nested `properties`.
fn leaves(v: &Value, children: Children, prefix: &str, out: &mut BTreeSet<String>) {
    let Some(m) = children(v) else {
        out.insert(prefix.to_string());
        return;
    };
    for (k, x) in m {
        let p = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        leaves(x, children, &p, out);
    }
}

fn schema_properties(s: &Value) -> Option<&serde_json::Map<String, Value>> {
    s["properties"].as_object()
}

/// values.schema.json's `config` knows exactly osprey's configuration
/// keys: a key osprey gains or loses must be added to or removed from the
/// schema, or `helm install` would refuse a valid config (or pass a
/// stale one to the pods to refuse).
#[test]
fn the_chart_schema_knows_every_config_key() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let mut in_schema = BTreeSet::new();
    leaves(
        &schema["properties"]["config"],
        schema_properties,
        "",
        &mut in_schema,
    );
    let mut in_osprey = BTreeSet::new();
    let defaults = serde_json::to_value(osprey::config::Config::default()).expect("config JSON");
    leaves(&defaults, Value::as_object, "", &mut in_osprey);
    let missing: Vec<_> = in_osprey.difference(&in_schema).collect();
    let stale: Vec<_> = in_schema.difference(&in_osprey).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "values.schema.json config: missing {missing:?}, not osprey keys {stale:?}"
    );
}

/// The chart's default rules are rules/default.yaml's.
#[test]
fn the_chart_ships_the_default_rules() {
    let read = |p: &str| std::fs::read_to_string(Path::new(ROOT).join(p)).expect(p);
    let values: Value = serde_yaml_ng::from_str(&read("helm/osprey/values.yaml")).unwrap();
    let rules: Value = serde_yaml_ng::from_str(&read("rules/default.yaml")).unwrap();
    assert_eq!(
        values["rules"], rules["rules"],
        "helm/osprey/values.yaml rules differ from rules/default.yaml"
    );
}

/// The metric names osprey registers: every `"osprey_..."` string literal
/// in the sources.
fn registered_metrics() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).expect("sensor/") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).expect("source");
                for (i, _) in text.match_indices("\"osprey_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if text[i + 1 + name.len()..].starts_with('"') {
                        out.insert(name);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(ROOT).join("sensor"), &mut out);
    out
}

/// docs/operations.md documents every metric osprey registers, and the
/// Grafana dashboard queries only metrics that exist.
#[test]
fn the_metrics_reference_and_dashboard_match_the_code() {
    let metrics = registered_metrics();
    assert!(metrics.len() > 30, "found only {metrics:?}");
    let guide = std::fs::read_to_string(Path::new(ROOT).join("docs/operations.md")).unwrap();
    let undocumented: Vec<_> = metrics
        .iter()
        .filter(|m| !guide.contains(&format!("`{m}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/operations.md lacks {undocumented:?}"
    );

    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("docs/grafana/osprey.json")).unwrap(),
    )
    .expect("dashboard JSON");
    let mut queried = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("osprey_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                queried.insert(name);
            }
        }
    }
    let unknown: Vec<_> = queried
        .iter()
        .filter(|q| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| q.strip_suffix(s))
                .unwrap_or(q);
            !metrics.contains(*q) && !metrics.contains(base)
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries unknown metrics {unknown:?}"
    );
    let unused: Vec<_> = metrics
        .iter()
        .filter(|m| {
            !queried
                .iter()
                .any(|q| q == *m || q.starts_with(&format!("{m}_")))
        })
        .collect();
    eprintln!(
        "dashboard: {} metrics queried; not on it: {unused:?}",
        queried.len()
    );
}

/// The allowlist's cluster discovery is on by default, with read-only
/// roles of its own granting exactly the calls it makes, each in the
/// namespace of its objects; the node's resolvers are mounted read-only.
/// Both can be turned off.
#[test]
fn the_allowlist_discovers_the_cluster_with_read_only_roles_of_its_own() {
    let Some(helm) = helm("the_allowlist_discovers_the_cluster_with_read_only_roles_of_its_own")
    else {
        return;
    };
    let objs = render(&helm, None);
    let cm = object(&objs, "ConfigMap").unwrap();
    let cfg: Value = serde_yaml_ng::from_str(cm["data"]["osprey.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["respond"]["allowlist_cluster"], true);
    assert_eq!(
        cfg["respond"]["allowlist_resolv_conf"],
        serde_json::json!([
            "/host/etc/resolv.conf",
            "/host/run/systemd/resolve/resolv.conf"
        ])
    );
    let cluster = allowlist_objects(&objs, "ClusterRole");
    assert_eq!(cluster.len(), 1);
    let want: BTreeSet<String> = ["/nodes:list".to_string()].into_iter().collect();
    assert_eq!(grants(cluster[0]), want);
    let mut by_ns = BTreeMap::new();
    for r in allowlist_objects(&objs, "Role") {
        let ns = r["metadata"]["namespace"].as_str().expect("namespace");
        by_ns.insert(ns.to_string(), grants(r));
    }
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        by_ns,
        BTreeMap::from([
            (
                "default".to_string(),
                set(&["discovery.k8s.io/endpointslices:list"])
            ),
            (
                "kube-system".to_string(),
                set(&["/pods:list", "/services:get"])
            ),
        ])
    );
    let sa = object(&objs, "ServiceAccount").expect("service account");
    for kind in ["ClusterRoleBinding", "RoleBinding"] {
        for b in allowlist_objects(&objs, kind) {
            assert_eq!(b["subjects"][0]["name"], sa["metadata"]["name"], "{kind}");
            assert!(b["roleRef"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-allowlist")));
        }
    }
    assert_eq!(allowlist_objects(&objs, "RoleBinding").len(), 2);
    let ds = object(&objs, "DaemonSet").unwrap();
    let vols = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let host = |name: &str| {
        vols.iter()
            .find(|v| v["name"] == name)
            .map(|v| v["hostPath"]["path"].clone())
    };
    assert_eq!(
        host("host-resolv-conf"),
        Some(Value::from("/etc/resolv.conf"))
    );
    assert_eq!(
        host("host-systemd-resolve"),
        Some(Value::from("/run/systemd/resolve"))
    );

    // Off: no roles, no mounts; with identity off too, no token at all.
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("off.yaml");
    std::fs::write(
        &values,
        "allowlist: {cluster: false, hostResolvers: false}\nidentity: {enabled: false, watchNodes: true}\n",
    )
    .expect("values");
    let objs = render(&helm, Some(values.to_str().expect("utf-8")));
    assert!(allowlist_objects(&objs, "ClusterRole").is_empty());
    assert!(allowlist_objects(&objs, "Role").is_empty());
    let ds = object(&objs, "DaemonSet").unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(!pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "host-resolv-conf"));
    let cm = object(&objs, "ConfigMap").unwrap();
    let cfg: Value = serde_yaml_ng::from_str(cm["data"]["osprey.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(cfg["respond"]["allowlist_cluster"], false);
}
