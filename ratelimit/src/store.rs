//! Where counters live. A draw of several counters is all-or-nothing: either each stays
//! within its limit and all are added to, or none is. Adjustments are added unconditionally
//! and never take a counter below zero.

use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One counter a draw adds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub key: String,
    pub hits: u64,
    pub limit: u64,
    /// Seconds the counter must live (its window plus a margin).
    pub ttl: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjust {
    pub key: String,
    pub delta: i64,
    pub ttl: u64,
}

/// The counters' values after a draw (added to), or before it (when one was over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drawn {
    Within(Vec<u64>),
    Over(Vec<u64>),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(String),
    /// The in-memory store holds as many counters as it may: a draw that needs a new one is
    /// refused (answered RESOURCE_EXHAUSTED, so each gateway's failure mode decides) rather
    /// than growing without bound or dropping live counters.
    #[error("the in-memory store holds its maximum of {0} counters (raise --max-keys, or use --redis)")]
    Full(usize),
}

pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    pub async fn draw(&self, takes: &[Take]) -> Result<Drawn, StoreError> {
        match self {
            Store::Memory(m) => m.draw(takes),
            Store::Redis(r) => r.draw(takes).await,
        }
    }

    pub async fn adjust(&self, adjusts: &[Adjust]) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.adjust(adjusts);
                Ok(())
            }
            Store::Redis(r) => r.adjust(adjusts).await,
        }
    }
}

/// The default bound on the in-memory store's counters.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Counters in this process: exact for one replica of the service, at most `max_keys` of them.
pub struct MemoryStore {
    counters: Mutex<HashMap<String, (u64, u64)>>,
    max_keys: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_MAX_KEYS)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl MemoryStore {
    pub fn new(max_keys: usize) -> MemoryStore {
        MemoryStore { counters: Mutex::new(HashMap::new()), max_keys: max_keys.max(1) }
    }

    fn with_counters<T>(&self, f: impl FnOnce(&mut HashMap<String, (u64, u64)>, u64) -> T) -> T {
        let mut counters = match self.counters.lock() {
            Ok(guard) => guard,
            // A panic elsewhere cannot leave a counter half-written: each change is one insert.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut counters, now_secs())
    }

    /// Whether `new` more counters fit; expired ones are dropped first when they would not.
    fn room_for(&self, counters: &mut HashMap<String, (u64, u64)>, new: usize, now: u64) -> bool {
        if counters.len() + new > self.max_keys {
            counters.retain(|_, (_, expires)| *expires > now);
        }
        counters.len() + new <= self.max_keys
    }

    pub fn draw(&self, takes: &[Take]) -> Result<Drawn, StoreError> {
        self.with_counters(|counters, now| {
            let new = takes.iter().filter(|t| counters.get(&t.key).is_none_or(|(_, e)| *e <= now)).count();
            if !self.room_for(counters, new, now) {
                return Err(StoreError::Full(self.max_keys));
            }
            let current: Vec<u64> = takes
                .iter()
                .map(|t| counters.get(&t.key).filter(|(_, expires)| *expires > now).map_or(0, |(v, _)| *v))
                .collect();
            if takes.iter().zip(&current).any(|(t, c)| c + t.hits > t.limit) {
                return Ok(Drawn::Over(current));
            }
            let after = takes
                .iter()
                .zip(current)
                .map(|(t, c)| {
                    counters.insert(t.key.clone(), (c + t.hits, now + t.ttl));
                    c + t.hits
                })
                .collect();
            Ok(Drawn::Within(after))
        })
    }

    pub fn adjust(&self, adjusts: &[Adjust]) {
        self.with_counters(|counters, now| {
            for a in adjusts {
                // An adjustment that would need a new counter when none fits is dropped: it
                // can only concern a counter that already expired or was never drawn.
                if !counters.contains_key(&a.key) && !self.room_for(counters, 1, now) {
                    continue;
                }
                let (value, expires) =
                    counters.get(&a.key).copied().filter(|(_, e)| *e > now).unwrap_or((0, now + a.ttl));
                let value =
                    if a.delta < 0 { value.saturating_sub(a.delta.unsigned_abs()) } else { value + a.delta as u64 };
                counters.insert(a.key.clone(), (value, expires));
            }
        })
    }
}

/// Every counter checked, then every counter added to, in one script: atomic in Redis.
const DRAW_SCRIPT: &str = r"
local current = {}
for i = 1, #KEYS do
  current[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current[i] + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then
    local out = {0}
    for j = 1, #KEYS do out[j + 1] = tonumber(redis.call('GET', KEYS[j]) or '0') end
    return out
  end
end
local out = {1}
for i = 1, #KEYS do
  out[i + 1] = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
return out
";

/// Adds each delta, never below zero; a counter created here gets its window's lifetime.
const ADJUST_SCRIPT: &str = r"
for i = 1, #KEYS do
  local v = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  if redis.call('TTL', KEYS[i]) < 0 then redis.call('EXPIRE', KEYS[i], ARGV[2 * i]) end
end
return 1
";

/// Counters in Redis, shared by every replica of the service.
pub struct RedisStore {
    connection: ConnectionManager,
    draw: Script,
    adjust: Script,
    timeout: Duration,
}

impl RedisStore {
    pub async fn connect(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Redis(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_with_config(client, config).await.map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok(RedisStore { connection, draw: Script::new(DRAW_SCRIPT), adjust: Script::new(ADJUST_SCRIPT), timeout })
    }

    async fn draw(&self, takes: &[Take]) -> Result<Drawn, StoreError> {
        let mut invocation = self.draw.prepare_invoke();
        for t in takes {
            invocation.key(&t.key).arg(t.hits).arg(t.limit).arg(t.ttl);
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<Vec<u64>>(&mut connection);
        let values = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Redis("timed out".to_string()))?
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        let (flag, counters) =
            values.split_first().ok_or_else(|| StoreError::Redis("empty script answer".to_string()))?;
        Ok(if *flag == 1 { Drawn::Within(counters.to_vec()) } else { Drawn::Over(counters.to_vec()) })
    }

    async fn adjust(&self, adjusts: &[Adjust]) -> Result<(), StoreError> {
        let mut invocation = self.adjust.prepare_invoke();
        for a in adjusts {
            invocation.key(&a.key).arg(a.delta).arg(a.ttl);
        }
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<i64>(&mut connection);
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Redis("timed out".to_string()))?
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(key: &str, hits: u64, limit: u64) -> Take {
        Take { key: key.to_string(), hits, limit, ttl: 60 }
    }

    #[test]
    fn a_draw_is_all_or_nothing() {
        let store = MemoryStore::default();
        assert_eq!(store.draw(&[take("a", 6, 10), take("b", 6, 100)]).unwrap(), Drawn::Within(vec![6, 6]));
        // `a` would go over: neither counter moves.
        assert_eq!(store.draw(&[take("a", 5, 10), take("b", 5, 100)]).unwrap(), Drawn::Over(vec![6, 6]));
        assert_eq!(store.draw(&[take("a", 4, 10), take("b", 4, 100)]).unwrap(), Drawn::Within(vec![10, 10]));
    }

    #[test]
    fn adjustments_give_back_but_never_below_zero() {
        let store = MemoryStore::default();
        store.draw(&[take("a", 8, 10)]).unwrap();
        store.adjust(&[Adjust { key: "a".into(), delta: -5, ttl: 60 }]);
        assert_eq!(store.draw(&[take("a", 0, 10)]).unwrap(), Drawn::Within(vec![3]));
        store.adjust(&[Adjust { key: "a".into(), delta: -50, ttl: 60 }]);
        assert_eq!(store.draw(&[take("a", 0, 10)]).unwrap(), Drawn::Within(vec![0]));
        store.adjust(&[Adjust { key: "a".into(), delta: 4, ttl: 60 }]);
        assert_eq!(store.draw(&[take("a", 0, 10)]).unwrap(), Drawn::Within(vec![4]));
    }

    /// The in-memory store never holds more than its bound: a draw that needs a new counter
    /// past it is refused, the live counters stay as they are, and expired ones make room.
    #[test]
    fn the_memory_store_is_bounded_and_says_so() {
        let store = MemoryStore::new(3);
        for key in ["a", "b", "c"] {
            store.draw(&[take(key, 1, 10)]).unwrap();
        }
        assert!(matches!(store.draw(&[take("d", 1, 10)]), Err(StoreError::Full(3))));
        assert_eq!(store.draw(&[take("a", 1, 10)]).unwrap(), Drawn::Within(vec![2]), "existing counters still draw");
        let expiring = Take { key: "e".into(), hits: 1, limit: 10, ttl: 0 };
        let store = MemoryStore::new(1);
        store.draw(&[expiring]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(store.draw(&[take("f", 1, 10)]).is_ok(), "an expired counter makes room");
    }
}
