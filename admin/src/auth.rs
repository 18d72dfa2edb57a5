//! Credentials (pure apart from randomness): argon2id password hashes,
//! session and API-key secrets stored only as SHA-256 hashes, RFC 6238 TOTP,
//! and the sign-in rate limiter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Shortest password accepted (ASVS 5.0 V6.2.1: at least 8; we ask 12).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted (ASVS: at least 64 must be allowed).
pub const PASSWORD_MAX_CHARS: usize = 128;

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password's length (no composition rules, per ASVS).
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
        return Err(Error::Invalid(format!(
            "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )));
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    check_password(password)?;
    let mut salt = [0u8; 16];
    fill_random(&mut salt);
    argon2()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Store(format!("password hashing failed: {e}")))
}

/// Whether `password` matches a stored PHC hash.
///
/// The argon2 memory (19 MiB for our hashes) is kept per thread and reused:
/// freed and allocated again on every sign-in, the allocator kept each
/// run's block resident (the server grew by 19 MiB per sign-in).
pub fn verify_password(password: &str, phc: &str) -> bool {
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    MEMORY.with(|memory| match memory.try_borrow_mut() {
        Ok(mut memory) => verify_in(password, phc, &mut memory),
        Err(_) => verify_in(password, phc, &mut Vec::new()),
    })
}

/// Most argon2 memory a stored hash may ask for (ours ask 19 MiB): a hash
/// with more is refused rather than computed.
const HASH_MEMORY_KIB_MAX: usize = 64 * 1024;

fn verify_in(password: &str, phc: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > HASH_MEMORY_KIB_MAX {
        return false;
    }
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::new());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.ct_eq(expected.as_bytes()))
}

/// Password hashing on a few threads of its own, each run one at a time.
///
/// An argon2 run takes 19 MiB. The allocator keeps freed blocks of that
/// size in the arena of the thread that used them, so hashing on tokio's
/// blocking pool (hundreds of threads) let the resident memory grow by up
/// to 19 MiB per thread that ever hashed: a flood of 300 sign-ins took the
/// server from 27 MiB to 363 MiB. A fixed set of threads bounds it at about
/// `threads` × 19 MiB.
pub struct Hasher {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher")
    }
}

impl Hasher {
    /// Starts `threads` hashing threads (at least one).
    pub fn new(threads: usize) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("kontor-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job.
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "a password hashing thread did not start");
            }
        }
        Hasher { jobs }
    }

    /// Runs `f` on a hashing thread; `None` if none is running.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.await.ok()
    }
}

/// A hash to verify against when the account does not exist, so a sign-in
/// takes as long for an unknown name as for a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-0000").unwrap_or_default())
}

/// Fills `out` from the operating system's generator.
pub fn fill_random(out: &mut [u8]) {
    use rand::TryRng;
    let mut rng = rand::rngs::SysRng;
    if rng.try_fill_bytes(out).is_err() {
        // No entropy means no safe secrets: stop rather than continue.
        panic!("the operating system's random generator failed");
    }
}

/// A new random secret as 64 hex digits.
pub fn new_secret() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    fill_random(&mut bytes[..]);
    Zeroizing::new(hex::encode(&bytes[..]))
}

/// A new random id of `bytes` random bytes, as hex.
pub fn new_id(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    fill_random(&mut b);
    hex::encode(b)
}

/// The stored form of a session token or API-key secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Constant-time equality of two stored hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// An API key as handed out once: `kak_<id>_<secret>`.
pub fn parse_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("kak_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 16
        && secret.len() == 64
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then_some((id, secret))
}

// --- TOTP (RFC 6238 over RFC 4226, HMAC-SHA1, 6 digits, 30 s) -------------

/// The TOTP code for `secret` at Unix time `unix_s`.
pub fn totp(secret: &[u8], unix_s: u64) -> u32 {
    let counter = unix_s / 30;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = ring::hmac::sign(&key, &counter.to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let code = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    code % 1_000_000
}

/// Checks a 6-digit code, allowing one step of clock drift either way.
/// Returns the time step that matched, so a code cannot be used twice.
pub fn check_totp(secret: &[u8], code: &str, unix_s: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let given: u32 = code.parse().ok()?;
    let mut matched = None;
    for step in [unix_s.saturating_sub(30), unix_s, unix_s + 30] {
        // Compare every candidate, so timing does not tell which matched.
        if bool::from(totp(secret, step).ct_eq(&given)) {
            matched = Some(step / 30);
        }
    }
    matched
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(char::from(ALPHABET[((buffer >> (bits - 5)) & 31) as usize]));
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

// --- sign-in rate limiting ------------------------------------------------

/// Limits failed sign-ins per account name and per client address: after
/// `max_failures` failures within `window`, further attempts wait until the
/// window has passed. A success clears the account's count. Independently,
/// every attempt from an address takes a token from that address's bucket,
/// so a flood (each attempt costs an argon2 hash) is refused before any
/// hashing.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    attempts: kontor_provisioning::limit::RateLimiter<String>,
}

impl LoginLimiter {
    /// A limiter (attempts per address: 1 a second, 20 at once).
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
            attempts: kontor_provisioning::limit::RateLimiter::new(1.0, 20),
        }
    }

    /// Allows each address `per_s` attempts a second, `burst` at once.
    pub fn with_attempts_per_address(mut self, per_s: f64, burst: u32) -> Self {
        self.attempts = kontor_provisioning::limit::RateLimiter::new(per_s, burst);
        self
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses when the account name is over its limit, or the client
    /// address over four times that (many people may share one address),
    /// or the address has used up its attempts.
    pub fn check(&self, account: &str, address: &str) -> Result<()> {
        let now = Instant::now();
        self.attempts
            .check(&address.to_owned(), now)
            .map_err(|retry_after_s| Error::RateLimited { retry_after_s })?;
        let map = self.map();
        let limits = [
            (format!("account:{account}"), self.max_failures),
            (
                format!("address:{address}"),
                self.max_failures.saturating_mul(4),
            ),
        ];
        for (key, max) in limits {
            if let Some((count, since)) = map.get(&key)
                && *count >= max
            {
                let passed = now.duration_since(*since);
                if passed < self.window {
                    return Err(Error::RateLimited {
                        retry_after_s: (self.window - passed).as_secs().max(1),
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts a failure against the account name and the address.
    pub fn failed(&self, account: &str, address: &str) {
        let keys = [format!("account:{account}"), format!("address:{address}")];
        let now = Instant::now();
        let mut map = self.map();
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| now.duration_since(*since) < window);
        }
        for key in keys {
            let entry = map.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// Clears the account's count after a success.
    pub fn succeeded(&self, account: &str) {
        self.map().remove(&format!("account:{account}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterx", &phc));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn totp_matches_rfc_6238_vectors() {
        // RFC 6238 appendix B, SHA-1 seed, last 6 digits.
        let seed = b"12345678901234567890";
        assert_eq!(totp(seed, 59), 287_082);
        assert_eq!(totp(seed, 1_111_111_109), 81_804);
        assert_eq!(totp(seed, 1_234_567_890), 5_924);
        assert_eq!(totp(seed, 2_000_000_000), 279_037);
        assert_eq!(
            check_totp(seed, "081804", 1_111_111_109 + 25),
            Some(1_111_111_109 / 30)
        );
        assert_eq!(check_totp(seed, "081804", 1_111_111_109 + 95), None);
        assert_eq!(check_totp(seed, "81804", 1_111_111_109), None);
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn the_limiter_refuses_after_the_limit_and_forgets_on_success() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            limiter.check("anna", "127.0.0.1").unwrap();
            limiter.failed("anna", "127.0.0.1");
        }
        assert!(matches!(
            limiter.check("anna", "10.0.0.1"),
            Err(Error::RateLimited { .. })
        ));
        // The address is not yet over its (larger) limit for other names.
        assert!(limiter.check("ben", "127.0.0.1").is_ok());
        for i in 0..9 {
            limiter.failed(&format!("user{i}"), "127.0.0.1");
        }
        assert!(limiter.check("ben", "127.0.0.1").is_err());
        limiter.succeeded("anna");
        assert!(limiter.check("anna", "10.0.0.1").is_ok());
    }

    #[test]
    fn api_keys_parse_strictly() {
        let key = format!("kak_{}_{}", "0123456789abcdef", "a".repeat(64));
        assert!(parse_api_key(&key).is_some());
        assert!(parse_api_key(&key[..key.len() - 1]).is_none());
        assert!(parse_api_key("Bearer x").is_none());
    }
}
