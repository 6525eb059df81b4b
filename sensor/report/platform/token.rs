//! The bearer token, read from a file (a mounted Kubernetes Secret) and
//! read again when the file changes — Secrets are updated in place by
//! swapping a symlink — or when the platform refuses it.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use tracing::{error, info, warn};

pub(crate) struct Token {
    path: Option<PathBuf>,
    value: Option<String>,
    /// (mtime, length) of the file the value was read from.
    stamp: Option<(Option<SystemTime>, u64)>,
    /// Bumped whenever the value read differs from the previous one.
    generation: u64,
    /// The generation the platform last refused, so that the refusal is
    /// logged once per token rather than once per retry.
    rejected: Option<u64>,
    read_failing: bool,
}

impl Token {
    pub(crate) fn new(path: Option<PathBuf>) -> Token {
        Token {
            path,
            value: None,
            stamp: None,
            generation: 0,
            rejected: None,
            read_failing: false,
        }
    }

    /// The token to send now (`None`: no token configured or readable).
    pub(crate) fn current(&mut self) -> Option<&str> {
        let path = self.path.as_ref()?;
        let stamp = fs::metadata(path)
            .ok()
            .map(|m| (m.modified().ok(), m.len()));
        if stamp.is_none() || stamp != self.stamp {
            match fs::read_to_string(path) {
                Ok(text) => {
                    let value = text.trim().to_owned();
                    if self.value.as_deref() != Some(value.as_str()) {
                        self.generation += 1;
                        self.value = Some(value);
                    }
                    self.stamp = stamp;
                    self.read_failing = false;
                }
                Err(e) => {
                    if !self.read_failing {
                        self.read_failing = true;
                        warn!(file = %path.display(), error = %e,
                            "cannot read the platform token file; keeping the last token read");
                    }
                }
            }
        }
        self.value.as_deref()
    }

    /// The platform refused the token: log it once per token, and read
    /// the file again before the next request.
    pub(crate) fn rejected(&mut self, status: u16) {
        self.stamp = None;
        if self.rejected != Some(self.generation) {
            self.rejected = Some(self.generation);
            let file = self.path.as_ref().map_or_else(
                || "(no token_file configured)".to_owned(),
                |p| p.display().to_string(),
            );
            error!(file = %file, status,
                "platform rejected the token in {file}: {status}");
        }
    }

    /// The platform accepted a request.
    pub(crate) fn accepted(&mut self) {
        if self.rejected.take().is_some() {
            info!("platform accepts the token again");
        }
    }
}
