//! An exec hook: run a fixed argv (never through a shell) with the action
//! JSON on stdin; a non-zero exit is a failure carrying the end of stderr.
//!
//! The hook runs in a process group of its own, and the whole group is
//! killed when the hook ends (timeout, cancellation, or its own exit): a
//! script that starts helpers in the background (`sleep 1000 &`, a `curl`
//! left retrying) would otherwise leave them running after a timeout,
//! since killing the script alone orphans its children, and every action
//! would leave a few more. A hook that really means to leave something
//! running must detach it (`setsid`).

use std::io;
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{ExecConfig, HookError};

/// How much of stderr an error keeps: the end, where the reason usually is.
const STDERR_TAIL: usize = 1024;

pub(super) async fn run(hook: &str, cfg: &ExecConfig, input: &[u8]) -> Result<(), HookError> {
    let io_err = |action: &'static str| {
        move |source: io::Error| HookError::Io {
            hook: hook.to_owned(),
            action,
            source,
        }
    };
    let Some((program, args)) = cfg.argv.split_first() else {
        return Err(HookError::Config {
            hook: hook.to_owned(),
            key: "exec.argv",
            reason: "must not be empty".into(),
        });
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group (pgid = its pid), so that it can be killed whole.
        .process_group(0)
        .spawn()
        .map_err(io_err("spawn"))?;
    // Declared after `child`, so dropped first: the group dies before
    // tokio's kill_on_drop reaps the leader.
    let group = child.id().and_then(Group::of);
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let finished = tokio::time::timeout(timeout, async {
        let feed = async {
            if let Some(mut s) = stdin {
                match s.write_all(input).await {
                    // The program need not read its input.
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        };
        let (fed, tail) = tokio::join!(feed, read_tail(stderr));
        let status = child.wait().await;
        (fed, tail, status)
    })
    .await;
    let (fed, tail, status) = match finished {
        Ok(done) => done,
        Err(_) => {
            if let Some(g) = &group {
                g.kill();
            }
            // kill_on_drop would do it too, but only eventually; reap now.
            let _ = child.kill().await;
            return Err(HookError::Timeout {
                hook: hook.to_owned(),
                timeout,
            });
        }
    };
    let status = status.map_err(io_err("wait"))?;
    fed.map_err(io_err("write stdin"))?;
    if status.success() {
        Ok(())
    } else {
        Err(HookError::Exit {
            hook: hook.to_owned(),
            status: status.to_string(),
            stderr: tail,
        })
    }
}

/// A hook's process group; dropping it kills every process still in it.
struct Group(Pid);

impl Group {
    fn of(pid: u32) -> Option<Group> {
        i32::try_from(pid).ok().and_then(Pid::from_raw).map(Group)
    }

    fn kill(&self) {
        // ESRCH (the group is gone already) is the usual outcome.
        let _ = kill_process_group(self.0, Signal::KILL);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads to the end, keeping the last `STDERR_TAIL` bytes.
async fn read_tail(r: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut r) = r else {
        return String::new();
    };
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL {
                    tail.drain(..tail.len() - STDERR_TAIL);
                }
            }
        }
    }
    String::from_utf8_lossy(&tail).trim().to_owned()
}
