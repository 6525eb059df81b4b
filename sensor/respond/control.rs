//! `osprey decisions list|delete`: the operator's way to see and lift
//! what the running daemon enforces, as CrowdSec's `cscli decisions` is.
//!
//! The daemon listens on a local Unix socket (mode 0600, owned by the
//! user osprey runs as; nothing on the network), one JSON request per
//! connection and one JSON answer. The responder answers it, so a lift is
//! ordered with the decisions around it.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// Where the daemon listens unless `respond.control_socket` says else.
pub const DEFAULT_SOCKET: &str = "/run/osprey/control.sock";

/// Longest request line: a request is a few dozen bytes.
const MAX_REQUEST: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "control socket {path}: another process is listening there (is a second osprey running?)"
    )]
    InUse { path: PathBuf },
    #[error("control socket {path}: exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{0:?} is not an address or CIDR")]
    BadTarget(String),
    #[error("the daemon answered: {0}")]
    Refused(String),
    #[error("unreadable answer from the daemon: {0}")]
    Answer(String),
}

/// One request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Every decision in force or waiting to be applied.
    List,
    /// Lifts every decision on an address or range (and those around or
    /// inside it).
    Delete {
        target: IpNet,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One decision as `list` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub target: IpNet,
    /// `block`, `rate_limit`, `quarantine_pod`, `hook`.
    pub kind: String,
    /// The rule that made it; `-` for one adopted from an earlier run.
    pub rule: String,
    /// `enforced`, `retrying`, `dry_run`, or `pending` (handed to its
    /// enforcer, no result yet).
    pub state: String,
    /// Seconds until it lapses.
    pub expires_in_secs: u64,
    /// For `retrying`: attempts so far and the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What enforces it where the target alone does not say: the
    /// NetworkPolicy (`quarantine ns/pod`, `block ns/policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    Decisions { decisions: Vec<Decision> },
    Deleted { deleted: Vec<Decision> },
    Error { error: String },
}

/// A request on its way to the responder, with where its answer goes.
pub struct Pending {
    pub request: Request,
    pub reply: oneshot::Sender<Answer>,
}

/// Parses `ADDR` or `CIDR` as the CLI takes it; a host address becomes
/// its /32 or /128, and an IPv4-mapped IPv6 address the IPv4 host.
pub fn parse_target(s: &str) -> Result<IpNet, ControlError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(a.to_canonical()));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| ControlError::BadTarget(s.to_string()))
}

/// Binds the socket: its directory is created if missing, a stale socket
/// from a crashed run is replaced, a live one (another daemon) or a
/// non-socket file is an error. Mode 0600 before anyone can connect.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750)).map_err(io)?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    // Connecting needs write permission on the socket: under the usual
    // umask (022) nobody but the owner has it even before the chmod.
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves requests until the responder goes away. Each connection gets
/// one request and one answer, with time limits so that an idle client
/// cannot hold the socket.
pub async fn serve(listener: UnixListener, to_responder: mpsc::Sender<Pending>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if to_responder.is_closed() {
            break;
        }
        let tx = to_responder.clone();
        tokio::spawn(async move {
            if let Err(e) = one(stream, tx).await {
                tracing::debug!(error = %e, "control socket: request failed");
            }
        });
    }
}

async fn one(stream: UnixStream, tx: mpsc::Sender<Pending>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64));
    let answer =
        match tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await {
            Err(_) => Answer::Error {
                error: "no request within 5 s".into(),
            },
            Ok(Err(e)) => return Err(e),
            Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                Err(e) => Answer::Error {
                    error: format!("bad request: {e}"),
                },
                Ok(request) => {
                    tracing::info!(?request, "control socket request");
                    let (reply, rx) = oneshot::channel();
                    if tx.send(Pending { request, reply }).await.is_err() {
                        Answer::Error {
                            error: "the responder is stopping".into(),
                        }
                    } else {
                        match tokio::time::timeout(Duration::from_secs(60), rx).await {
                            Ok(Ok(a)) => a,
                            _ => Answer::Error {
                                error: "the responder did not answer within 60 s".into(),
                            },
                        }
                    }
                }
            },
        };
    let mut out = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// The CLI's side: one request, one answer.
pub fn call(path: &Path, request: &Request) -> Result<Answer, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(io)?;
    let mut body = serde_json::to_vec(request).map_err(|e| ControlError::Answer(e.to_string()))?;
    body.push(b'\n');
    s.write_all(&body).map_err(io)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(io)?;
    let answer: Answer =
        serde_json::from_str(line.trim()).map_err(|e| ControlError::Answer(e.to_string()))?;
    match answer {
        Answer::Error { error } => Err(ControlError::Refused(error)),
        a => Ok(a),
    }
}

/// `list` as a table for a terminal.
pub fn table(decisions: &[Decision]) -> String {
    let mut out = format!(
        "{:<43} {:<14} {:<24} {:<9} {:>10}\n",
        "TARGET", "KIND", "RULE", "STATE", "EXPIRES IN"
    );
    for d in decisions {
        let state = match (&d.attempts, &d.error) {
            (Some(n), Some(e)) => format!("{} ({n} attempts: {e})", d.state),
            _ => d.state.clone(),
        };
        out.push_str(&format!(
            "{:<43} {:<14} {:<24} {:<9} {:>9}s\n",
            d.target.to_string(),
            d.kind,
            d.rule,
            state,
            d.expires_in_secs
        ));
    }
    out
}

/// What an operator lifted, and why if they said.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiftBody {
    /// The address or range asked for.
    pub target: ipnet::IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The decisions that were in force and are lifted (may be empty: a
    /// lift also stops new decisions on old evidence).
    pub lifted: Vec<Decision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_hosts_or_ranges() {
        assert_eq!(
            parse_target("198.18.0.5").unwrap(),
            "198.18.0.5/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_target("::ffff:198.18.0.5").unwrap(),
            "198.18.0.5/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_target("fd00:1::7/64").unwrap(),
            "fd00:1::/64".parse::<IpNet>().unwrap()
        );
        assert!(parse_target("example.org").is_err());
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let r: Request =
            serde_json::from_str(r#"{"op":"delete","target":"198.18.0.0/24"}"#).unwrap();
        assert_eq!(
            r,
            Request::Delete {
                target: "198.18.0.0/24".parse().unwrap(),
                reason: None
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"drop_all"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"delete","target":"x"}"#).is_err());
        let a = Answer::Error { error: "x".into() };
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, r#"{"result":"error","error":"x"}"#);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_socket_is_private_and_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/control.sock");
        let l = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second daemon on the same path is refused while the first
        // listens...
        assert!(matches!(bind(&path), Err(ControlError::InUse { .. })));
        drop(l);
        // ...and the file a crashed one left is replaced.
        assert!(bind(&path).is_ok());
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(bind(&file), Err(ControlError::NotASocket { .. })));
    }
}
