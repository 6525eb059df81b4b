//! Which enforcer carries out which action, and who hears about it.

use super::action::{Action, ActionKind};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no enforcer for {0} actions is configured")]
    NoEnforcer(&'static str),
}

/// The enforcers and reporters the daemon was configured with.
#[derive(Default)]
pub struct Dispatch {}

impl Dispatch {
    pub async fn enforce(&mut self, a: &Action) -> Result<(), DispatchError> {
        match &a.kind {
            ActionKind::Alert => Ok(()),
            k => Err(DispatchError::NoEnforcer(k.name())),
        }
    }

    /// Tells the platform (never blocks: the reporter spools).
    pub fn report(&mut self, _a: &Action) {}

    /// Once a second: enforcers' own upkeep (reconcile, expiry).
    pub async fn housekeeping(&mut self) {}

    pub async fn shutdown(&mut self) {}
}
