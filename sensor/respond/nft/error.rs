//! What can go wrong talking to nftables.

use std::io;

use thiserror::Error;

/// An nftables operation that did not happen.
#[derive(Debug, Error)]
pub enum NftError {
    /// The program could not be started at all.
    #[error("cannot run `{program}` ({source}); is nftables installed, or nft.nft_path set?")]
    Missing { program: String, source: io::Error },
    /// The kernel refused: osprey lacks CAP_NET_ADMIN.
    #[error("`{program}` was refused ({stderr}); osprey needs CAP_NET_ADMIN to manage nftables")]
    PermissionDenied { program: String, stderr: String },
    /// The table, set, chain or element named does not exist.
    #[error("nft {op}: not found: {stderr}")]
    NotFound { op: &'static str, stderr: String },
    /// The address or range overlaps one already in an interval set.
    #[error("nft {op}: the range overlaps an element already in the set: {stderr}")]
    Overlap { op: &'static str, stderr: String },
    /// nft ran and failed for another reason.
    #[error("nft {op} failed: {stderr}")]
    Failed { op: &'static str, stderr: String },
    /// nft did not finish in time and was killed.
    #[error("nft {op} did not finish within {after:?} and was killed")]
    Timeout {
        op: &'static str,
        after: std::time::Duration,
    },
    /// nft's output could not be read.
    #[error("nft {op}: unreadable output: {detail}")]
    Output { op: &'static str, detail: String },
    /// The configuration or the action cannot be turned into nftables state.
    #[error("nftables: {0}")]
    Invalid(String),
}

impl NftError {
    /// Whether a retry could succeed: refusals and missing objects stay so.
    pub(crate) fn transient(&self) -> bool {
        matches!(self, NftError::Failed { .. })
    }

    /// Classifies a failed run by nft's message.
    pub(crate) fn from_stderr(op: &'static str, program: &str, stderr: String) -> NftError {
        if stderr.contains("Operation not permitted") || stderr.contains("you must be root") {
            NftError::PermissionDenied {
                program: program.into(),
                stderr,
            }
        } else if stderr.contains("No such file or directory") || stderr.contains("does not exist")
        {
            NftError::NotFound { op, stderr }
        } else if stderr.contains("overlaps") {
            NftError::Overlap { op, stderr }
        } else {
            NftError::Failed { op, stderr }
        }
    }
}
