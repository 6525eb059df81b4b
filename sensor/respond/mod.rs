//! From verdicts to enforcement: rules pick an action for a verdict, the
//! safety layer (dry-run, allowlist, circuit breaker, spoofable evidence)
//! may refuse or soften it, and enforcers carry it out — nftables on the
//! node, NetworkPolicy objects in the cluster, webhooks and executables —
//! while the platform reporter tells the management platform about every
//! alert and action.
//!
//! The types in `action` are the contract between these parts: every
//! enforcer and reporter takes an [`Action`] and nothing else, so a rule
//! change never reaches into an enforcer.

pub mod action;
pub mod admit;
pub mod dispatch;
pub mod hook;
pub mod kube;
pub mod nft;
pub mod responder;
pub mod rules;
pub mod safety;

pub use action::{Action, ActionKind, Evidence, RateLimit};
