//! Where counters live. A draw of several counters is all-or-nothing: either each stays
//! within its limit and all are added to, or none is.
//!
//! A draw made with a reservation id is remembered (what it drew) until it is settled. A settle
//! replaces what its reservation drew with what was really used, so it can give back at most
//! what was drawn; it leaves a mark behind, so the same reservation is never settled twice and
//! a draw that arrives after its own settle (its answer had timed out at the gateway) counts
//! nothing. Counters never go below zero.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::Script;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a reservation's draw is remembered, waiting for its settle (the longest answer).
pub const RECORD_TTL_SECS: u64 = 3600;
/// How long a settled reservation's mark stays: long enough for a draw that timed out at the
/// gateway (after tens of milliseconds) to arrive, short enough that marks never crowd the
/// store (100,000 keys hold over 800 settles a second).
pub const MARK_TTL_SECS: u64 = 120;

/// Where a reservation's draw, and the mark of its settle, are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub record: String,
    pub mark: String,
}

/// One counter a draw adds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Take {
    pub key: String,
    pub hits: u64,
    pub limit: u64,
    /// Seconds the counter must live (its window plus a margin).
    pub ttl: u64,
    pub reservation: Option<Reservation>,
}

/// A reservation's settle: what it really used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    pub key: String,
    pub reservation: Reservation,
    pub used: u64,
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
    /// The in-memory store holds as many keys as it may: a draw that needs a new one is
    /// refused (answered RESOURCE_EXHAUSTED, so each gateway's failure mode decides) rather
    /// than growing without bound or dropping live counters.
    #[error("the in-memory store holds its maximum of {0} keys (raise --max-keys, or use --redis)")]
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

    pub async fn settle(&self, settles: &[Settle]) -> Result<(), StoreError> {
        match self {
            Store::Memory(m) => {
                m.settle(settles);
                Ok(())
            }
            Store::Redis(r) => r.settle(settles).await,
        }
    }
}

/// The default bound on the in-memory store's keys (counters, reservations, marks).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Counters in this process: exact for one replica of the service, at most `max_keys` keys.
/// Reservations and marks are keys of the same map, holding the amount drawn, or 1.
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

    /// Whether `new` more keys fit; expired ones are dropped first when they would not.
    fn room_for(&self, counters: &mut HashMap<String, (u64, u64)>, new: usize, now: u64) -> bool {
        if counters.len() + new > self.max_keys {
            counters.retain(|_, (_, expires)| *expires > now);
        }
        counters.len() + new <= self.max_keys
    }

    pub fn draw(&self, takes: &[Take]) -> Result<Drawn, StoreError> {
        self.with_counters(|counters, now| {
            let live = |counters: &HashMap<String, (u64, u64)>, key: &str| {
                counters.get(key).filter(|(_, expires)| *expires > now).map(|(v, _)| *v)
            };
            // A reservation already settled (its settle came first), or already drawn (a retry),
            // draws nothing.
            let hits: Vec<u64> = takes
                .iter()
                .map(|t| match &t.reservation {
                    Some(r) if live(counters, &r.mark).is_some() || live(counters, &r.record).is_some() => 0,
                    _ => t.hits,
                })
                .collect();
            let new = takes.iter().filter(|t| live(counters, &t.key).is_none()).count()
                + takes.iter().zip(&hits).filter(|(t, h)| **h > 0 && t.reservation.is_some()).count();
            if !self.room_for(counters, new, now) {
                return Err(StoreError::Full(self.max_keys));
            }
            let current: Vec<u64> = takes.iter().map(|t| live(counters, &t.key).unwrap_or(0)).collect();
            if takes.iter().zip(&current).zip(&hits).any(|((t, c), h)| c + h > t.limit) {
                return Ok(Drawn::Over(current));
            }
            let mut after = Vec::with_capacity(takes.len());
            for ((t, c), h) in takes.iter().zip(current).zip(hits) {
                let expires =
                    counters.get(&t.key).filter(|(_, e)| *e > now).map_or(now + t.ttl, |(_, e)| (*e).max(now + t.ttl));
                counters.insert(t.key.clone(), (c + h, expires));
                if let (Some(r), true) = (&t.reservation, h > 0) {
                    counters.insert(r.record.clone(), (h, now + RECORD_TTL_SECS));
                }
                after.push(c + h);
            }
            Ok(Drawn::Within(after))
        })
    }

    pub fn settle(&self, settles: &[Settle]) {
        self.with_counters(|counters, now| {
            for s in settles {
                let live = |counters: &HashMap<String, (u64, u64)>, key: &str| {
                    counters.get(key).filter(|(_, expires)| *expires > now).map(|(v, _)| *v)
                };
                if live(counters, &s.reservation.mark).is_some() {
                    continue; // settled before
                }
                // New keys past the bound: the mark is what matters most; the counter change
                // is dropped only when even that does not fit.
                if !self.room_for(counters, 2, now) {
                    continue;
                }
                let drawn = live(counters, &s.reservation.record).unwrap_or(0);
                counters.remove(&s.reservation.record);
                counters.insert(s.reservation.mark.clone(), (1, now + MARK_TTL_SECS));
                let (value, expires) =
                    counters.get(&s.key).copied().filter(|(_, e)| *e > now).unwrap_or((0, now + s.ttl));
                // What the reservation drew is replaced by what was used: never more given back.
                let value = (value + s.used).saturating_sub(drawn);
                counters.insert(s.key.clone(), (value, expires));
            }
        })
    }
}

/// Every counter checked, then every counter added to, in one script: atomic in Redis. Per
/// take, KEYS are the counter, the reservation's record and its mark (the counter again, three
/// times, without a reservation: every key must be in the counter's slot); ARGV its hits,
/// limit, TTL and whether it has a reservation, then the record's TTL last. Answers the flag,
/// the counters' values, and the hits each take really added: none for a reservation already
/// settled, or already drawn (a client retried a call whose answer it lost: the draw counts once).
const DRAW_SCRIPT: &str = r"
local n = #KEYS / 3
local current, hits = {}, {}
for i = 1, n do
  current[i] = tonumber(redis.call('GET', KEYS[3 * i - 2]) or '0')
  hits[i] = tonumber(ARGV[4 * i - 3])
  if ARGV[4 * i] == '1' and redis.call('EXISTS', KEYS[3 * i], KEYS[3 * i - 1]) > 0 then hits[i] = 0 end
  if current[i] + hits[i] > tonumber(ARGV[4 * i - 2]) then
    local out = {0}
    for j = 1, n do out[j + 1] = tonumber(redis.call('GET', KEYS[3 * j - 2]) or '0') end
    for j = 1, n do out[n + j + 1] = 0 end
    return out
  end
end
local out = {1}
for i = 1, n do
  out[i + 1] = redis.call('INCRBY', KEYS[3 * i - 2], hits[i])
  out[n + i + 1] = hits[i]
  if redis.call('TTL', KEYS[3 * i - 2]) < tonumber(ARGV[4 * i - 1]) then redis.call('EXPIRE', KEYS[3 * i - 2], ARGV[4 * i - 1]) end
  if ARGV[4 * i] == '1' and hits[i] > 0 then redis.call('SET', KEYS[3 * i - 1], hits[i], 'EX', ARGV[#ARGV]) end
end
return out
";

/// Gives back a draw of one slot's counters when a later slot refused (Redis Cluster): per
/// take, KEYS are the counter, its reservation's record and mark (the counter again without
/// one); ARGV the hits it added and whether it has a reservation. A reservation's draw is given
/// back from its record, and only while the record is there and no settle has come: a settle
/// that landed first (the gateway gave up waiting) or a retried undo gives nothing back twice.
const UNDO_SCRIPT: &str = r"
for i = 1, #KEYS / 3 do
  local counter, record, mark = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local hits = tonumber(ARGV[2 * i - 1])
  if ARGV[2 * i] == '1' then
    hits = 0
    if redis.call('EXISTS', mark) == 0 then hits = tonumber(redis.call('GET', record) or '0') end
    redis.call('DEL', record)
  end
  if hits > 0 then
    local v = redis.call('DECRBY', counter, hits)
    if v < 0 then redis.call('SET', counter, 0, 'KEEPTTL') end
  end
end
return 1
";

/// Per settle, KEYS are the counter, the record and the mark; ARGV the hits used and the
/// counter's TTL, then the mark's TTL last. Replaces what the reservation drew with what was
/// used (so at most that is given back), once, and never below zero.
const SETTLE_SCRIPT: &str = r"
for i = 1, #KEYS / 3 do
  local counter, record, mark = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if redis.call('EXISTS', mark) == 0 then
    local delta = tonumber(ARGV[2 * i - 1]) - tonumber(redis.call('GET', record) or '0')
    if delta ~= 0 then
      local v = redis.call('INCRBY', counter, delta)
      if v < 0 then redis.call('SET', counter, 0, 'KEEPTTL') end
      if redis.call('TTL', counter) < 0 then redis.call('EXPIRE', counter, ARGV[2 * i]) end
    end
    redis.call('DEL', record)
    redis.call('SET', mark, 1, 'EX', ARGV[#ARGV])
  end
end
return 1
";

/// A connection to one Redis server, or to a Redis Cluster.
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A key's hash tag (the part between the first `{` and the next `}`), which decides its slot
/// on Redis Cluster; every key of one counter carries the counter's (see `limiter::tag`).
fn hash_tag(key: &str) -> &str {
    match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    }
}

/// Indices of `keys` grouped by hash tag, in first-seen order: one script per group.
fn by_slot<'k>(keys: impl Iterator<Item = &'k str>) -> Vec<Vec<usize>> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, key) in keys.enumerate() {
        let tag = hash_tag(key);
        match groups.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, group)) => group.push(i),
            None => groups.push((tag, vec![i])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Counters in Redis, shared by every replica of the service: one server (a draw is one
/// script), or a Redis Cluster, where a draw's counters may live on several masters: it is
/// drawn one slot at a time, and when a slot refuses, the slots already drawn are given back.
/// Between the two, a concurrent request may see the draw and be refused too; no request can
/// spend past a limit.
pub struct RedisStore {
    connection: Connection,
    draw: Script,
    undo: Script,
    settle: Script,
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
        Ok(RedisStore::with(Connection::Single(connection), timeout))
    }

    /// A Redis Cluster, reached through any of `nodes` (it learns the rest and follows
    /// failovers).
    pub async fn connect_cluster(nodes: &[String], timeout: Duration) -> Result<RedisStore, StoreError> {
        let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .build()
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        let connection = client.get_async_connection().await.map_err(|e| StoreError::Redis(e.to_string()))?;
        Ok(RedisStore::with(Connection::Cluster(connection), timeout))
    }

    fn with(connection: Connection, timeout: Duration) -> RedisStore {
        RedisStore {
            connection,
            draw: Script::new(DRAW_SCRIPT),
            undo: Script::new(UNDO_SCRIPT),
            settle: Script::new(SETTLE_SCRIPT),
            timeout,
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Result<T, StoreError> {
        let call = async {
            match &self.connection {
                Connection::Single(c) => invocation.invoke_async::<T>(&mut c.clone()).await,
                Connection::Cluster(c) => invocation.invoke_async::<T>(&mut c.clone()).await,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError::Redis("timed out".to_string()))?
            .map_err(|e| StoreError::Redis(e.to_string()))
    }

    /// Draws `takes` in one script; answers the flag, the values and the hits added.
    async fn draw_group(&self, takes: &[&Take]) -> Result<(bool, Vec<u64>, Vec<u64>), StoreError> {
        let mut invocation = self.draw.prepare_invoke();
        for t in takes {
            let (record, mark) = t
                .reservation
                .as_ref()
                .map_or((t.key.as_str(), t.key.as_str()), |r| (r.record.as_str(), r.mark.as_str()));
            let reserved = u8::from(t.reservation.is_some());
            invocation.key(&t.key).key(record).key(mark).arg(t.hits).arg(t.limit).arg(t.ttl).arg(reserved);
        }
        invocation.arg(RECORD_TTL_SECS);
        let values: Vec<u64> = self.run(invocation).await?;
        let n = takes.len();
        if values.len() != 1 + 2 * n {
            return Err(StoreError::Redis(format!(
                "the draw script answered {} values for {n} counters",
                values.len()
            )));
        }
        Ok((values[0] == 1, values[1..=n].to_vec(), values[n + 1..].to_vec()))
    }

    async fn draw(&self, takes: &[Take]) -> Result<Drawn, StoreError> {
        let groups = match self.connection {
            Connection::Single(_) => vec![(0..takes.len()).collect()],
            Connection::Cluster(_) => by_slot(takes.iter().map(|t| t.key.as_str())),
        };
        let mut values = vec![0; takes.len()];
        let mut drawn: Vec<(Vec<usize>, Vec<u64>)> = Vec::new();
        for group in groups {
            let members: Vec<&Take> = group.iter().map(|&i| &takes[i]).collect();
            let (within, group_values, added) = self.draw_group(&members).await?;
            for (&i, v) in group.iter().zip(&group_values) {
                values[i] = *v;
            }
            if !within {
                // Give back what the earlier slots drew, and answer their values before it.
                for (done, added) in drawn.iter().rev() {
                    self.undo_group(takes, done, added).await?;
                    for (&i, a) in done.iter().zip(added) {
                        values[i] -= a;
                    }
                }
                return Ok(Drawn::Over(values));
            }
            drawn.push((group, added));
        }
        Ok(Drawn::Within(values))
    }

    async fn undo_group(&self, takes: &[Take], group: &[usize], added: &[u64]) -> Result<(), StoreError> {
        let mut invocation = self.undo.prepare_invoke();
        for (&i, hits) in group.iter().zip(added) {
            let t = &takes[i];
            let (record, mark) = t
                .reservation
                .as_ref()
                .map_or((t.key.as_str(), t.key.as_str()), |r| (r.record.as_str(), r.mark.as_str()));
            invocation.key(&t.key).key(record).key(mark).arg(*hits).arg(u8::from(t.reservation.is_some()));
        }
        self.run::<i64>(invocation).await.map(|_| ())
    }

    async fn settle(&self, settles: &[Settle]) -> Result<(), StoreError> {
        let groups = match self.connection {
            Connection::Single(_) => vec![(0..settles.len()).collect()],
            Connection::Cluster(_) => by_slot(settles.iter().map(|s| s.key.as_str())),
        };
        for group in groups {
            let mut invocation = self.settle.prepare_invoke();
            for &i in &group {
                let s = &settles[i];
                invocation.key(&s.key).key(&s.reservation.record).key(&s.reservation.mark).arg(s.used).arg(s.ttl);
            }
            invocation.arg(MARK_TTL_SECS);
            self.run::<i64>(invocation).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(key: &str, hits: u64, limit: u64) -> Take {
        Take { key: key.to_string(), hits, limit, ttl: 60, reservation: None }
    }

    fn reserved(key: &str, hits: u64, limit: u64, id: &str) -> Take {
        let reservation = Reservation { record: format!("r:{id}"), mark: format!("m:{id}") };
        Take { reservation: Some(reservation), ..take(key, hits, limit) }
    }

    fn settle(key: &str, id: &str, used: u64) -> Settle {
        Settle {
            key: key.to_string(),
            reservation: Reservation { record: format!("r:{id}"), mark: format!("m:{id}") },
            used,
            ttl: 60,
        }
    }

    #[test]
    fn a_draw_is_all_or_nothing() {
        let store = MemoryStore::default();
        assert_eq!(store.draw(&[take("a", 6, 10), take("b", 6, 100)]).unwrap(), Drawn::Within(vec![6, 6]));
        // `a` would go over: neither counter moves.
        assert_eq!(store.draw(&[take("a", 5, 10), take("b", 5, 100)]).unwrap(), Drawn::Over(vec![6, 6]));
        assert_eq!(store.draw(&[take("a", 4, 10), take("b", 4, 100)]).unwrap(), Drawn::Within(vec![10, 10]));
    }

    /// A settle gives back at most what its reservation drew, once; a settle that comes
    /// before its draw makes the late draw count nothing.
    #[test]
    fn settles_give_back_only_what_was_drawn_once_and_reconcile_late_draws() {
        let store = MemoryStore::default();
        store.draw(&[take("a", 5, 100)]).unwrap();
        store.draw(&[reserved("a", 8, 100, "r1")]).unwrap();
        store.settle(&[settle("a", "r1", 3)]);
        assert_eq!(store.draw(&[take("a", 0, 100)]).unwrap(), Drawn::Within(vec![5 + 3]));
        store.settle(&[settle("a", "r1", 0)]);
        assert_eq!(store.draw(&[take("a", 0, 100)]).unwrap(), Drawn::Within(vec![8]), "settled once only");
        // A settle for a reservation that never drew gives nothing back (and adds its use).
        store.settle(&[settle("a", "forged", 0)]);
        assert_eq!(store.draw(&[take("a", 0, 100)]).unwrap(), Drawn::Within(vec![8]));
        // Its answer timed out; the gateway settled it at nothing; then the draw arrived.
        store.settle(&[settle("a", "late", 0)]);
        store.draw(&[reserved("a", 50, 100, "late")]).unwrap();
        assert_eq!(store.draw(&[take("a", 0, 100)]).unwrap(), Drawn::Within(vec![8]), "the late draw counts nothing");
        // A draw retried after its answer was lost counts once.
        store.draw(&[reserved("a", 10, 100, "twice")]).unwrap();
        assert_eq!(store.draw(&[reserved("a", 10, 100, "twice")]).unwrap(), Drawn::Within(vec![18]));
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
        let expiring = Take { ttl: 0, ..take("e", 1, 10) };
        let store = MemoryStore::new(1);
        store.draw(&[expiring]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(store.draw(&[take("f", 1, 10)]).is_ok(), "an expired counter makes room");
    }

    /// The same rules in Redis, where the Lua scripts keep them: a real `redis-server` (which
    /// `make setup` installs from Debian) on a free loopback port.
    #[tokio::test]
    async fn redis_settles_give_back_only_what_was_drawn_once_and_reconcile_late_draws() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // Killed when dropped, so a failing assertion does not leave it running.
        struct Server(std::process::Child);
        impl Drop for Server {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _server = Server(
            std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (make setup installs it)"),
        );
        let url = format!("redis://127.0.0.1:{port}/0");
        let mut store = None;
        for _ in 0..100 {
            if let Ok(s) = RedisStore::connect(&url, Duration::from_secs(1)).await {
                store = Some(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let store = Store::Redis(store.expect("redis answered"));
        let value = |drawn: Drawn| match drawn {
            Drawn::Within(v) | Drawn::Over(v) => v[0],
        };
        store.draw(&[take("a", 5, 100)]).await.unwrap();
        store.draw(&[reserved("a", 8, 100, "r1")]).await.unwrap();
        store.settle(&[settle("a", "r1", 3)]).await.unwrap();
        assert_eq!(value(store.draw(&[take("a", 0, 100)]).await.unwrap()), 8);
        store.settle(&[settle("a", "r1", 0)]).await.unwrap();
        store.settle(&[settle("a", "forged", 0)]).await.unwrap();
        assert_eq!(
            value(store.draw(&[take("a", 0, 100)]).await.unwrap()),
            8,
            "settled once; nothing given for nothing"
        );
        store.settle(&[settle("a", "late", 0)]).await.unwrap();
        store.draw(&[reserved("a", 50, 100, "late")]).await.unwrap();
        assert_eq!(value(store.draw(&[take("a", 0, 100)]).await.unwrap()), 8, "the late draw counts nothing");
        assert_eq!(store.draw(&[take("a", 93, 100)]).await.unwrap(), Drawn::Over(vec![8]));
        store.draw(&[reserved("a", 10, 100, "twice")]).await.unwrap();
        assert_eq!(
            value(store.draw(&[reserved("a", 10, 100, "twice")]).await.unwrap()),
            18,
            "a retried draw counts once"
        );
    }
}
