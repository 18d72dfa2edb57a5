//! Criterion benchmarks of protocol v1: seal and open by size, the cost of
//! each extra recipient device, the store key file's scrypt, and the bare
//! primitives (CBC + HMAC) that `openssl speed` is compared with.
//!
//! Run: `cargo bench -p kontor-crypto --bench crypto`; BENCHMARKS.md has
//! the figures and the openssl commands of the same run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kontor_crypto::__primitives as p;
use kontor_crypto::{DeviceId, IdentitySecret, MessageId, Recipient, Sender, open, seal, store};

const SIZES: [(usize, &str); 4] = [
    (256, "256 B"),
    (4 * 1024, "4 KiB"),
    (64 * 1024, "64 KiB"),
    (1024 * 1024, "1 MiB"),
];

fn devices(n: usize) -> Vec<(DeviceId, IdentitySecret)> {
    let mut rng = kontor_crypto::os_rng();
    (0..n)
        .map(|_| {
            (
                DeviceId::random(&mut rng),
                IdentitySecret::generate(&mut rng),
            )
        })
        .collect()
}

fn recipients(devices: &[(DeviceId, IdentitySecret)]) -> Vec<Recipient> {
    devices
        .iter()
        .map(|(d, s)| Recipient {
            device_id: *d,
            identity: s.public(),
        })
        .collect()
}

fn seal_and_open(c: &mut Criterion) {
    let mut rng = kontor_crypto::os_rng();
    let alice = IdentitySecret::generate(&mut rng);
    let alice_device = DeviceId::random(&mut rng);
    let bob = devices(1);
    let to_bob = recipients(&bob);
    let sender = Sender {
        device_id: alice_device,
        identity: &alice,
    };

    let mut group = c.benchmark_group("protocol-v1");
    for (size, label) in SIZES {
        let plaintext = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("seal", label), |b| {
            b.iter(|| {
                seal(
                    &mut rng,
                    MessageId([1; 16]),
                    sender,
                    &to_bob,
                    black_box(&plaintext),
                )
                .unwrap()
            })
        });
        let envelope = seal(&mut rng, MessageId([1; 16]), sender, &to_bob, &plaintext).unwrap();
        let sealed = envelope.sealed_for(bob[0].0).unwrap();
        group.bench_function(BenchmarkId::new("open", label), |b| {
            b.iter(|| {
                open(
                    black_box(&sealed),
                    &bob[0].1,
                    Some(bob[0].0),
                    &alice.public(),
                )
                .unwrap()
            })
        });
        group.bench_function(BenchmarkId::new("seal+open", label), |b| {
            b.iter(|| {
                let env = seal(
                    &mut rng,
                    MessageId([1; 16]),
                    sender,
                    &to_bob,
                    black_box(&plaintext),
                )
                .unwrap();
                let sealed = env.deliveries()[0].sealed_message(env.body());
                open(&sealed, &bob[0].1, Some(bob[0].0), &alice.public()).unwrap()
            })
        });
    }
    group.finish();
}

/// The extra cost of each recipient device: a 256-byte message sealed for
/// 1, 10 and 50 devices (two X25519, one HKDF, one 96-byte CBC and one HMAC each).
fn per_recipient_wrap(c: &mut Criterion) {
    let mut rng = kontor_crypto::os_rng();
    let alice = IdentitySecret::generate(&mut rng);
    let sender = Sender {
        device_id: DeviceId::random(&mut rng),
        identity: &alice,
    };
    let plaintext = vec![0x5au8; 256];
    let mut group = c.benchmark_group("protocol-v1-recipients");
    for n in [1usize, 10, 50] {
        let list = recipients(&devices(n));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("seal 256 B", n), |b| {
            b.iter(|| {
                seal(
                    &mut rng,
                    MessageId([1; 16]),
                    sender,
                    black_box(&list),
                    &plaintext,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

/// Unlocking the store key file at the product's cost, N = 2^17.
fn store_key_file(c: &mut Criterion) {
    let mut rng = kontor_crypto::os_rng();
    let (_, file) = kontor_crypto::create_key_file(&mut rng, "482913").unwrap();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.bench_function("open key file (scrypt N=2^17, r=8, p=1)", |b| {
        b.iter(|| store::open_key_file(black_box(&file), "482913").unwrap())
    });
    group.finish();
}

/// The bare primitives over 64 KiB, as `openssl speed` measures them.
fn primitives(c: &mut Criterion) {
    let key = [7u8; 32];
    let iv = [9u8; 16];
    let data = vec![0x5au8; 64 * 1024];
    let ct = p::cbc_encrypt(&key, &iv, &data);
    let mut group = c.benchmark_group("primitives");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("aes-256-cbc encrypt 64 KiB", |b| {
        b.iter(|| p::cbc_encrypt(&key, &iv, black_box(&data)))
    });
    group.bench_function("aes-256-cbc decrypt 64 KiB", |b| {
        b.iter(|| p::cbc_decrypt(&key, &iv, black_box(&ct)).unwrap())
    });
    group.bench_function("hmac-sha256 64 KiB", |b| {
        b.iter(|| p::hmac(&key, &[black_box(&data)]))
    });
    group.bench_function("sha256 64 KiB", |b| b.iter(|| p::sha256(black_box(&data))));
    group.finish();
    let mut group = c.benchmark_group("primitives-x25519");
    group.bench_function("x25519", |b| {
        b.iter(|| p::x25519(black_box([3u8; 32]), black_box([9u8; 32])))
    });
    group.finish();
}

criterion_group!(
    benches,
    seal_and_open,
    per_recipient_wrap,
    store_key_file,
    primitives
);
criterion_main!(benches);
