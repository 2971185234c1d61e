//! Key sets fetched through Envoy clusters: what to fetch when, and what a response changes.
//! The glue turns each [`FetchRequest`] into an HTTP callout and hands back the response.

use super::compile::{CompiledIdentity, RemoteJwks};
use super::jwks_schedule::JwksSchedule;
use super::jwt::KeyLookup;
use super::keys::{KeySet, Strictness};
use std::time::{Duration, SystemTime};

/// The largest key-set response accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub issuer: usize,
    pub cluster: String,
    pub headers: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

struct RemoteIssuer {
    index: usize,
    config: RemoteJwks,
    schedule: JwksSchedule,
    keys: Option<KeySet>,
}

/// Every remote issuer's schedule and last good key set.
#[derive(Default)]
pub struct RemoteKeys {
    issuers: Vec<RemoteIssuer>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("key set fetch answered HTTP {0}")]
    Status(String),
    #[error("key set response is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("key set response is not usable: {0}")]
    BadKeySet(String),
    #[error("key set fetch could not be sent or did not complete")]
    Transport,
}

impl RemoteKeys {
    pub fn new(policy: &CompiledIdentity) -> Self {
        let issuers = policy
            .remote_issuers()
            .map(|(index, config)| RemoteIssuer {
                index,
                config: config.clone(),
                schedule: JwksSchedule::new(
                    config.refresh_interval,
                    config.retry_interval,
                    config.unknown_kid_refetch_interval,
                ),
                keys: None,
            })
            .collect();
        Self { issuers }
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    fn issuer_mut(&mut self, index: usize) -> Option<&mut RemoteIssuer> {
        self.issuers.iter_mut().find(|i| i.index == index)
    }

    fn request(issuer: &RemoteIssuer) -> FetchRequest {
        FetchRequest {
            issuer: issuer.index,
            cluster: issuer.config.cluster.clone(),
            headers: vec![
                (":method", "GET".to_string()),
                (":path", issuer.config.path.clone()),
                (":authority", issuer.config.authority.clone()),
                ("accept", "application/json, application/jwk-set+json".to_string()),
            ],
            timeout: issuer.config.timeout,
        }
    }

    /// Timed fetches that are due now; each is marked in flight.
    pub fn due_fetches(&mut self, now: SystemTime) -> Vec<FetchRequest> {
        self.issuers
            .iter_mut()
            .filter(|issuer| issuer.schedule.due(now))
            .map(|issuer| {
                issuer.schedule.started();
                Self::request(issuer)
            })
            .collect()
    }

    /// A request needs `index`'s keys refreshed. True when a fetch is under way or will start on
    /// the root's next tick (rate-limited); false when the request should be decided at once.
    pub fn want_fetch(&mut self, index: usize, now: SystemTime) -> bool {
        self.issuer_mut(index).is_some_and(|issuer| issuer.schedule.want(now))
    }

    /// Records a fetch's result. On failure the last good key set stays in use.
    pub fn complete(
        &mut self,
        index: usize,
        result: Result<(u16, &[u8]), ()>,
        now: SystemTime,
    ) -> Result<usize, FetchError> {
        let Some(issuer) = self.issuer_mut(index) else {
            return Err(FetchError::Transport);
        };
        let parsed = match result {
            Err(()) => Err(FetchError::Transport),
            Ok((status, _)) if status != 200 => Err(FetchError::Status(status.to_string())),
            Ok((_, body)) if body.len() > MAX_JWKS_BYTES => Err(FetchError::TooLarge),
            Ok((_, body)) => {
                KeySet::parse(body, Strictness::UsableKeys).map_err(|e| FetchError::BadKeySet(e.to_string()))
            }
        };
        match parsed {
            Ok(set) => {
                let count = set.len();
                issuer.keys = Some(set);
                issuer.schedule.succeeded(now);
                Ok(count)
            }
            Err(error) => {
                issuer.schedule.failed(now);
                Err(error)
            }
        }
    }

    /// Usable keys held across all remote issuers.
    pub fn loaded(&self) -> usize {
        self.issuers.iter().filter_map(|i| i.keys.as_ref()).map(KeySet::len).sum()
    }
}

impl KeyLookup for RemoteKeys {
    fn remote_keys(&self, issuer: usize) -> Option<&KeySet> {
        self.issuers.iter().find(|i| i.index == issuer).and_then(|i| i.keys.as_ref())
    }
}
