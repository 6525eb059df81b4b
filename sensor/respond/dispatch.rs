//! Which enforcer carries out which action, and who hears about it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::action::{Action, ActionKind};
use super::nft::{NftEnforcer, NftError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no enforcer for {0} actions is configured")]
    NoEnforcer(&'static str),
    #[error("nftables: {0}")]
    Nft(#[from] NftError),
    #[error("the nftables worker stopped: {0}")]
    Worker(String),
}

/// The enforcers the daemon was configured with. nft is called through
/// its CLI, so it runs on tokio's blocking pool, one call at a time.
#[derive(Default)]
pub struct Dispatch {
    nft: Option<Arc<Mutex<NftEnforcer>>>,
    reconcile_every: Duration,
    last_reconcile: Option<Instant>,
}

impl Dispatch {
    pub fn new(nft: Option<NftEnforcer>) -> Dispatch {
        let reconcile_every = nft.as_ref().map_or(Duration::from_secs(5), |n| {
            Duration::from_secs(n.config().reconcile_interval_secs.max(1))
        });
        Dispatch {
            nft: nft.map(|n| Arc::new(Mutex::new(n))),
            reconcile_every,
            last_reconcile: None,
        }
    }

    pub async fn enforce(&mut self, a: &Action) -> Result<(), DispatchError> {
        match &a.kind {
            ActionKind::Alert => Ok(()),
            ActionKind::Block | ActionKind::RateLimit(_) => {
                let nft = self
                    .nft
                    .clone()
                    .ok_or(DispatchError::NoEnforcer(a.kind.name()))?;
                let a = a.clone();
                tokio::task::spawn_blocking(move || {
                    let mut n = nft
                        .lock()
                        .map_err(|e| DispatchError::Worker(e.to_string()))?;
                    n.apply(&a).map_err(DispatchError::from)
                })
                .await
                .map_err(|e| DispatchError::Worker(e.to_string()))?
            }
            k => Err(DispatchError::NoEnforcer(k.name())),
        }
    }

    /// Tells the platform (never blocks: the reporter spools).
    pub fn report(&mut self, _a: &Action) {}

    /// Once a second: re-creates osprey's nft state if someone removed it.
    pub async fn housekeeping(&mut self) {
        let Some(nft) = self.nft.clone() else { return };
        let now = Instant::now();
        if self
            .last_reconcile
            .is_some_and(|t| now.duration_since(t) < self.reconcile_every)
        {
            return;
        }
        self.last_reconcile = Some(now);
        let r = tokio::task::spawn_blocking(move || match nft.lock() {
            Ok(mut n) => n.reconcile().map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "nftables reconcile failed"),
            Err(e) => tracing::error!(error = %e, "nftables reconcile worker failed"),
        }
    }

    pub async fn shutdown(&mut self) {}
}
