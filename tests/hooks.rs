//! Policy-enforcement hooks: webhooks against a local receiver, exec
//! hooks against /bin/sh with fixed arguments.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use osprey::respond::hook::{ExecConfig, HookConfig, HookError, Hooks, WebhookConfig};
use osprey::respond::{Action, ActionKind, Evidence};
use prometheus::Registry;

fn action() -> Action {
    Action {
        id: "act-1".into(),
        ts: 1_700_000_000.25,
        rule: "scan".into(),
        kind: ActionKind::Block,
        target: "198.18.0.9/32".parse().unwrap(),
        ttl: Duration::from_secs(600),
        enforce: true,
        softened: None,
        evidence: Evidence {
            uid: "C1".into(),
            interim: false,
            model: Some("m".into()),
            label: Some("scan".into()),
            score: Some(0.9),
            probability: None,
            orig_h: "198.18.0.9".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.1".parse().unwrap(),
            resp_p: 80,
            proto: "tcp".into(),
            service: None,
            conn_state: "REJ".into(),
            history: Some("Sr".into()),
            facts: None,
            identity: None,
        },
    }
}

#[derive(Default)]
struct Receiver {
    bodies: Vec<Vec<u8>>,
    headers: Vec<HeaderMap>,
    /// Answer this many requests with 503 before accepting.
    fail_first: usize,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receive(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut s = s.lock().unwrap();
    s.bodies.push(body.to_vec());
    s.headers.push(headers);
    if s.bodies.len() <= s.fail_first {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn receiver(fail_first: usize) -> (String, Shared) {
    let state = Shared::new(Mutex::new(Receiver {
        fail_first,
        ..Receiver::default()
    }));
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    (url, state)
}

fn webhook(name: &str, url: &str, token_file: Option<&Path>) -> HookConfig {
    HookConfig {
        name: name.into(),
        webhook: Some(WebhookConfig {
            url: url.into(),
            headers: [("X-Source".to_owned(), "osprey".to_owned())].into(),
            token_file: token_file.map(Path::to_path_buf),
            timeout_secs: 2,
            retries: 3,
            backoff_initial_ms: 10,
        }),
        exec: None,
    }
}

fn exec(name: &str, argv: &[&str], timeout_secs: u64) -> HookConfig {
    HookConfig {
        name: name.into(),
        webhook: None,
        exec: Some(ExecConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            timeout_secs,
        }),
    }
}

fn calls(r: &Registry, hook: &str, result: &str) -> u64 {
    let mut buf = Vec::new();
    prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &r.gather(), &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    text.lines()
        .filter(|l| l.starts_with("osprey_hook_calls_total{"))
        .filter(|l| {
            l.contains(&format!("hook=\"{hook}\"")) && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_webhook_receives_the_exact_action_json() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let (url, got) = receiver(0).await;
    let reg = Registry::new();
    let hooks = Hooks::new(&[webhook("soar", &url, Some(&token))], &reg).unwrap();
    let a = action();
    hooks.send("soar", &a).await.unwrap();
    let got = got.lock().unwrap();
    assert_eq!(got.bodies, vec![serde_json::to_vec(&a).unwrap()]);
    let back: Action = serde_json::from_slice(&got.bodies[0]).unwrap();
    assert_eq!(back, a);
    let h = &got.headers[0];
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["authorization"], "Bearer s3cret");
    assert_eq!(h["x-source"], "osprey");
    assert_eq!(calls(&reg, "soar", "ok"), 1);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_until_it_accepts() {
    let (url, got) = receiver(2).await;
    let reg = Registry::new();
    let hooks = Hooks::new(&[webhook("flaky", &url, None)], &reg).unwrap();
    hooks.send("flaky", &action()).await.unwrap();
    assert_eq!(got.lock().unwrap().bodies.len(), 3);
    assert_eq!(calls(&reg, "flaky", "ok"), 1);

    // More failures than retries: the last status is the error.
    let (url, got) = receiver(10).await;
    let reg = Registry::new();
    let hooks = Hooks::new(&[webhook("down", &url, None)], &reg).unwrap();
    let e = hooks.send("down", &action()).await.unwrap_err();
    assert!(
        matches!(
            e,
            HookError::Status {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(got.lock().unwrap().bodies.len(), 4);
    assert_eq!(calls(&reg, "down", "error"), 1);
}

#[tokio::test]
async fn a_redirect_to_a_login_page_is_not_an_acceptance() {
    // Followed, the 302 would end in the login page's 200.
    let logins = Arc::new(Mutex::new(0usize));
    let seen = logins.clone();
    let app = Router::new()
        .route(
            "/hook",
            post(|| async { (StatusCode::FOUND, [("location", "/login")]) }),
        )
        .route(
            "/login",
            axum::routing::any(move || {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap() += 1;
                    StatusCode::OK
                }
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirecting = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(l, app).await.unwrap();
    });
    let reg = Registry::new();
    let hooks = Hooks::new(&[webhook("sso", &redirecting, None)], &reg).unwrap();
    let e = hooks.send("sso", &action()).await.unwrap_err();
    assert!(matches!(e, HookError::Status { status: 302, .. }), "{e}");
    assert_eq!(*logins.lock().unwrap(), 0, "the redirect was followed");
    assert_eq!(calls(&reg, "sso", "error"), 1);
}

#[tokio::test]
async fn exec_gets_the_action_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("action.json");
    let out_s = out.to_str().unwrap();
    let reg = Registry::new();
    let hooks = Hooks::new(
        &[
            exec("save", &["/bin/sh", "-c", "cat > \"$0\"", out_s], 5),
            exec("fail", &["/bin/sh", "-c", "echo boom >&2; exit 3"], 5),
        ],
        &reg,
    )
    .unwrap();
    let a = action();
    hooks.send("save", &a).await.unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        serde_json::to_vec(&a).unwrap()
    );
    assert_eq!(calls(&reg, "save", "ok"), 1);

    let e = hooks.send("fail", &a).await.unwrap_err();
    match &e {
        HookError::Exit { stderr, status, .. } => {
            assert_eq!(stderr, "boom");
            assert!(status.contains('3'), "{status}");
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        hooks.send("nope", &a).await,
        Err(HookError::Unknown(_))
    ));
}

#[tokio::test]
async fn exec_past_its_timeout_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let reg = Registry::new();
    let hooks = Hooks::new(
        &[exec(
            "slow",
            &[
                "/bin/sh",
                "-c",
                "echo $$ > \"$0\"; exec sleep 30",
                pidfile.to_str().unwrap(),
            ],
            1,
        )],
        &reg,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = hooks.send("slow", &action()).await.unwrap_err();
    assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(!Path::new(&proc_dir).exists(), "{proc_dir} still exists");
    assert_eq!(calls(&reg, "slow", "timeout"), 1);
}

#[test]
fn bad_hooks_are_refused_at_load_naming_hook_and_key() {
    let refuse = |cfgs: &[HookConfig]| {
        Hooks::new(cfgs, &Registry::new())
            .err()
            .expect("refused")
            .to_string()
    };
    let e = refuse(&[exec("empty", &[], 5)]);
    assert!(e.contains("\"empty\"") && e.contains("exec.argv"), "{e}");
    let e = refuse(&[exec("relative", &["nft", "add"], 5)]);
    assert!(
        e.contains("\"relative\"") && e.contains("exec.argv") && e.contains("absolute"),
        "{e}"
    );
    let e = refuse(&[webhook("bad-url", "not a url", None)]);
    assert!(
        e.contains("\"bad-url\"") && e.contains("webhook.url"),
        "{e}"
    );
    let e = refuse(&[
        exec("twice", &["/bin/true"], 5),
        exec("twice", &["/bin/true"], 5),
    ]);
    assert!(e.contains("\"twice\"") && e.contains("name"), "{e}");
    let both = HookConfig {
        exec: Some(ExecConfig::default()),
        ..webhook("both", "http://127.0.0.1:1/", None)
    };
    let e = refuse(&[both]);
    assert!(e.contains("\"both\""), "{e}");
    let cfg: Vec<HookConfig> = toml::from_str::<toml::Table>(
        "[[hooks]]\nname = \"x\"\n[hooks.exec]\nargv = [\"/bin/true\"]\n",
    )
    .unwrap()["hooks"]
        .clone()
        .try_into()
        .unwrap();
    assert_eq!(cfg[0].exec.as_ref().unwrap().timeout_secs, 10);
}

/// Processes of process group `pgid` that are still alive (zombies, which
/// only wait for a reaper, do not count).
fn live_group_members(pgid: i32) -> Vec<String> {
    let mut alive = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split
        // after its closing parenthesis.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            alive.push(stat.trim().to_owned());
        }
    }
    alive
}

/// Issue 16, item 6: a hook that starts children in the background is
/// killed whole on timeout, and a hook that exits leaves nothing behind.
/// Before hooks had a process group of their own, only the script was
/// killed and its `sleep 1000` children ran on.
#[tokio::test]
async fn exec_hook_timeout_kills_its_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let slow_pid = dir.path().join("slow.pid");
    let quick_pid = dir.path().join("quick.pid");
    let reg = Registry::new();
    let hooks = Hooks::new(
        &[
            exec(
                "spawner",
                &[
                    "/bin/sh",
                    "-c",
                    "echo $$ > \"$0\"; sleep 1000 & sleep 1000 & (sleep 1000 &) ; wait",
                    slow_pid.to_str().unwrap(),
                ],
                1,
            ),
            exec(
                "leaves_one",
                &[
                    "/bin/sh",
                    "-c",
                    "echo $$ > \"$0\"; sleep 1000 >/dev/null 2>&1 & exit 0",
                    quick_pid.to_str().unwrap(),
                ],
                5,
            ),
        ],
        &reg,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let e = hooks.send("spawner", &action()).await.unwrap_err();
    assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let pgid: i32 = std::fs::read_to_string(&slow_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGKILL is delivered at once; reaping by init may take a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !live_group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live_group_members(pgid), Vec::<String>::new());
    assert_eq!(calls(&reg, "spawner", "timeout"), 1);

    hooks.send("leaves_one", &action()).await.unwrap();
    let pgid: i32 = std::fs::read_to_string(&quick_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !live_group_members(pgid).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live_group_members(pgid), Vec::<String>::new());
}
