//! A token bucket per key (a client address, say), for the unauthenticated
//! endpoints: enrollment here, the admin sign-in in `kontor-admin`.
//!
//! Pure apart from the mutex: the caller passes the time in.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Most keys remembered; past this, keys whose bucket has refilled are
/// forgotten, and if that is not enough the map is cleared (a flood of
/// distinct addresses then costs the limiter its memory, not the server).
const KEYS_MAX: usize = 100_000;

/// Allows `burst` requests at once per key, refilled at `per_s` a second.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter; `per_s` and `burst` are raised to at least a small
    /// positive value, so a zero never blocks everything by accident.
    pub fn new(per_s: f64, burst: u32) -> Self {
        RateLimiter {
            per_s: per_s.max(0.001),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` at `now`; `Err(seconds)` says how long
    /// until one is there again.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= KEYS_MAX && !buckets.contains_key(key) {
            let (per_s, burst) = (self.per_s, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_s < burst
            });
            if buckets.len() >= KEYS_MAX {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_s)
            .min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            // Rounded up to whole seconds, at least one.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let wait = ((1.0 - *tokens) / self.per_s).ceil().max(1.0) as u64;
            return Err(wait);
        }
        *tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_gets_its_burst_then_waits_for_the_refill_and_other_keys_are_untouched() {
        let limiter = RateLimiter::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(&"a", t0).unwrap();
        }
        assert_eq!(limiter.check(&"a", t0), Err(1));
        limiter.check(&"b", t0).unwrap();
        // Half a second later one token (2 a second) is back.
        limiter
            .check(&"a", t0 + Duration::from_millis(500))
            .unwrap();
        assert!(
            limiter
                .check(&"a", t0 + Duration::from_millis(500))
                .is_err()
        );
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            limiter.check(&"a", later).unwrap();
        }
        assert!(limiter.check(&"a", later).is_err());
    }

    #[test]
    fn the_map_stays_bounded_under_a_flood_of_keys() {
        let limiter = RateLimiter::new(1.0, 1);
        let t0 = Instant::now();
        for k in 0..(KEYS_MAX as u64 + 10) {
            limiter.check(&k, t0).unwrap();
        }
        assert!(limiter.buckets.lock().unwrap().len() <= KEYS_MAX);
    }
}
