//! Idempotent mutations: an `Idempotency-Key` request header makes a retry within 24 hours answer
//! what the first request answered, and write nothing, per caller. Kept in PostgreSQL
//! (`idempotency_keys`), so it holds across instances and restarts.
//!
//! The first request claims the key (an insert that only one request can win) before it runs;
//! the API runs it to the end even if its client has gone, then stores the answer. A retry finds
//! the answer, or waits for the first request to finish; a retry with a different request is
//! refused. Only an answer that says the database could not be reached (`UNAVAILABLE`: nothing
//! was written) frees the key for a real retry.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// How long a key holds.
const TTL_HOURS: i64 = 24;
/// Expired keys are swept at most this often per instance.
const SWEEP_EVERY_SECONDS: i64 = 60;

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error(
        "the Idempotency-Key header must be 1 to 128 printable ASCII characters (letters, digits, \
         punctuation; no spaces or control characters)"
    )]
    Malformed,
    #[error(
        "this Idempotency-Key was already used, within the last 24 hours, for a different request"
    )]
    Reused,
    #[error("a request with this Idempotency-Key is still running: retry in a moment")]
    InProgress,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A parsed `Idempotency-Key`: 1..=128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, IdempotencyError> {
        let ok = (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdempotencyError::Malformed)
        }
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim {
    /// The key is ours: run the request, then [`IdempotencyStore::finish`] (or
    /// [`IdempotencyStore::release`]).
    Won,
    /// The first request's answer.
    Answered(Value),
}

/// The fingerprint of a request body: its JSON re-serialised (object keys sorted), so that
/// spacing and key order do not make a retry "different".
pub fn fingerprint(body: &Value) -> Vec<u8> {
    Sha256::digest(body.to_string().as_bytes()).to_vec()
}

pub struct IdempotencyStore {
    pool: PgPool,
    /// When this instance last swept expired keys (Unix seconds).
    swept_at: AtomicI64,
}

impl IdempotencyStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            swept_at: AtomicI64::new(0),
        }
    }

    /// Claims `key` for `caller`'s request, or finds what became of an earlier one: its answer,
    /// after waiting up to `wait` for it if it is still running.
    pub async fn claim(
        &self,
        caller: &str,
        key: &IdempotencyKey,
        fingerprint: &[u8],
        wait: Duration,
    ) -> Result<Claim, IdempotencyError> {
        self.sweep().await;
        let started = Instant::now();
        loop {
            // Inserted, or an expired row taken over: the key is ours.
            let won: Option<bool> = sqlx::query_scalar(
                "insert into idempotency_keys (caller_id, key, fingerprint)
                 values ($1, $2, $3)
                 on conflict (caller_id, key) do update
                    set fingerprint = excluded.fingerprint, response = null, created_at = now()
                  where idempotency_keys.created_at < now() - make_interval(hours => $4)
                 returning true",
            )
            .bind(caller)
            .bind(&key.0)
            .bind(fingerprint)
            .bind(TTL_HOURS as i32)
            .fetch_optional(&self.pool)
            .await?;
            if won.is_some() {
                return Ok(Claim::Won);
            }
            let earlier: Option<(Vec<u8>, Option<Value>)> = sqlx::query_as(
                "select fingerprint, response from idempotency_keys
                  where caller_id = $1 and key = $2",
            )
            .bind(caller)
            .bind(&key.0)
            .fetch_optional(&self.pool)
            .await?;
            match earlier {
                // Released between the two statements: try again.
                None => continue,
                Some((theirs, _)) if theirs != fingerprint => return Err(IdempotencyError::Reused),
                Some((_, Some(answer))) => return Ok(Claim::Answered(answer)),
                Some((_, None)) if started.elapsed() >= wait => {
                    return Err(IdempotencyError::InProgress)
                }
                Some((_, None)) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Stores the answer of the request that won the key.
    pub async fn finish(
        &self,
        caller: &str,
        key: &IdempotencyKey,
        answer: &Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("update idempotency_keys set response = $3 where caller_id = $1 and key = $2")
            .bind(caller)
            .bind(&key.0)
            .bind(answer)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Frees the key: the request wrote nothing, and a retry should run.
    pub async fn release(&self, caller: &str, key: &IdempotencyKey) -> Result<(), sqlx::Error> {
        sqlx::query(
            "delete from idempotency_keys
              where caller_id = $1 and key = $2 and response is null",
        )
        .bind(caller)
        .bind(&key.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes expired keys, at most once a minute per instance; a failure is only logged.
    async fn sweep(&self) {
        let now = chrono::Utc::now().timestamp();
        let last = self.swept_at.load(Ordering::Relaxed);
        if now - last < SWEEP_EVERY_SECONDS
            || self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let swept = sqlx::query(
            "delete from idempotency_keys where created_at < now() - make_interval(hours => $1)",
        )
        .bind(TTL_HOURS as i32)
        .execute(&self.pool)
        .await;
        if let Err(error) = swept {
            tracing::warn!(%error, "cannot sweep expired idempotency keys");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(IdempotencyKey::parse("3f2a-01_retry:1").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in ["", "a b", "tab\there", "é", &"k".repeat(129)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spacing_and_key_order_do_not_change_the_fingerprint() {
        let a: Value =
            serde_json::from_str(r#"{"query":"m","variables":{"a":1,"b":2}}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{ "variables": {"b":2, "a":1}, "query": "m" }"#).expect("json");
        let c: Value =
            serde_json::from_str(r#"{"query":"m","variables":{"a":1,"b":3}}"#).expect("json");
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
    }
}
