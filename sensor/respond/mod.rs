//! From verdicts and evidence to enforcement: the decision stage runs
//! every record through the evidence stage and the rules (`decide`),
//! admission (dry-run, allowlist, known-good peers, circuit breakers per
//! kind, escalation) may refuse or soften what they chose (`admit`), and enforcers carry it out — nftables on the
//! node, NetworkPolicy objects in the cluster, webhooks and executables —
//! while the platform reporter tells the management platform about every
//! alert and action.
//!
//! The types in `action` are the contract between these parts: every
//! enforcer and reporter takes an [`Action`] and nothing else, so a rule
//! change never reaches into an enforcer.

pub mod action;
pub mod admit;
pub mod backoff;
pub mod control;
pub mod decide;
pub mod discover;
pub mod dispatch;
pub mod enforce;
pub mod hook;
pub mod kube;
pub mod nft;
pub mod responder;
pub mod rules;
pub mod safety;

pub use action::{Action, ActionKind, Evidence, RateLimit};
