//! The workloads, open-loop: every message has a due time fixed before the
//! run, and its latency is counted from that due time, so a server that
//! falls behind cannot hide it by slowing the generator down (coordinated
//! omission).
//!
//! A run is invalid when the generator's core was saturated (its CPU time
//! above 90% of the wall time), or when any message was lost or arrived
//! twice.
//!
//! Steps and runs share one server, so a message an earlier step left
//! queued (sent after its deadline, or acknowledged too late) arrives in a
//! later one. Sequence numbers are therefore unique over the whole process:
//! each run takes its own range, and an arrival from outside it is counted
//! as stale, not as a delivery of the run.
//!
//! A workload's tasks live in a `JoinSet`: when the workload is dropped
//! unfinished (an interrupted run), they are aborted and release the peer,
//! which can then be stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::peer::{Dest, GroupRef, MessageRx, MessageTx, Peer};
use crate::procfs;

/// A due time not yet set.
const UNSENT: u64 = u64::MAX;
/// Above this share of one core the generator limits the run.
const GENERATOR_SATURATED: f64 = 0.90;

/// What one run measured.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
pub struct Outcome {
    /// Messages offered (sent).
    pub sent: u64,
    /// Deliveries expected (sent x recipients).
    pub expected: u64,
    /// Deliveries that arrived.
    pub delivered: u64,
    /// Deliveries that did not arrive before the deadline.
    pub lost: u64,
    /// Deliveries that arrived more than once.
    pub duplicated: u64,
    /// Arrivals of messages sent in an earlier step or run (left queued
    /// there); not counted as deliveries.
    #[serde(default)]
    pub stale: u64,
    /// Offered rate, messages per second.
    pub offered_per_s: f64,
    /// Delivered rate, deliveries per second, over the sending window.
    pub delivered_per_s: f64,
    /// Latency percentiles in milliseconds (from due time to arrival).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest latency.
    pub max_ms: f64,
    /// The generator's CPU share of one core during the run.
    pub generator_cpu: f64,
    /// The server's CPU share of one core during the run.
    pub server_cpu: f64,
    /// Why the run does not count, if it does not.
    pub invalid: Option<String>,
}

/// The first sequence number of the next run: every run of the process
/// takes a range of its own.
static NEXT_BASE: AtomicU64 = AtomicU64::new(0);

/// Due times and arrival counts for every sequence number of a run. The
/// run's message `i` goes out with sequence number `base + i`.
struct Tracker {
    t0: Instant,
    base: u64,
    due_ns: Vec<AtomicU64>,
    arrived: Vec<AtomicU16>,
    stale: AtomicU64,
}

impl Tracker {
    fn new(messages: usize) -> Arc<Self> {
        let base = NEXT_BASE.fetch_add(messages as u64, Ordering::Relaxed);
        Arc::new(Self {
            t0: Instant::now(),
            base,
            due_ns: (0..messages).map(|_| AtomicU64::new(UNSENT)).collect(),
            arrived: (0..messages).map(|_| AtomicU16::new(0)).collect(),
            stale: AtomicU64::new(0),
        })
    }

    /// The sequence number message `i` of this run carries.
    fn seq(&self, i: usize) -> u64 {
        self.base + i as u64
    }

    /// Records arrivals into `hist`; returns how many were ours. Arrivals
    /// from outside the run's range are counted as stale.
    fn arrive(&self, seqs: &[u64], hist: &mut Histogram<u64>) -> u64 {
        let now = u64::try_from(self.t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut n = 0;
        for &seq in seqs {
            let i = seq
                .checked_sub(self.base)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < self.due_ns.len());
            let Some(i) = i else {
                self.stale.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let due = self.due_ns[i].load(Ordering::Relaxed);
            self.arrived[i].fetch_add(1, Ordering::Relaxed);
            n += 1;
            if due != UNSENT {
                let _ = hist.record((now.saturating_sub(due) / 1_000).max(1));
            }
        }
        n
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Server CPU seconds so far.
fn server_cpu(peer: &impl Peer) -> f64 {
    peer.pids().into_iter().map(procfs::tree_cpu_seconds).sum()
}

/// Messages flowing from senders to destinations at a fixed total rate.
struct Flow {
    /// (sender, destination, deliveries per message).
    routes: Vec<(usize, Dest, u16)>,
    /// Receiving users.
    receivers: Vec<usize>,
}

/// 1:1 with recipients online: user 2i sends to user 2i+1.
pub async fn one_to_one<P: Peer>(
    peer: &P,
    pairs: usize,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        2 * pairs <= peer.users(),
        "{pairs} pairs need {} users, the peer has {}",
        2 * pairs,
        peer.users()
    );
    let flow = Flow {
        routes: (0..pairs)
            .map(|i| (2 * i, Dest::User(2 * i + 1), 1))
            .collect(),
        receivers: (0..pairs).map(|i| 2 * i + 1).collect(),
    };
    run_flow(peer, &flow, rate, seconds).await
}

/// Groups of `size` members, all online; member 0 of each group sends.
pub async fn groups<P: Peer>(
    peer: &P,
    groups: &[GroupRef],
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let mut receivers: Vec<usize> = groups
        .iter()
        .flat_map(|g| g.members[1..].iter().copied())
        .collect();
    receivers.sort_unstable();
    receivers.dedup();
    let flow = Flow {
        routes: groups
            .iter()
            .map(|g| {
                let fanout = u16::try_from(g.members.len() - 1).unwrap_or(u16::MAX);
                (g.members[0], Dest::Group(g.clone()), fanout)
            })
            .collect(),
        receivers,
    };
    run_flow(peer, &flow, rate, seconds).await
}

/// Creates `count` groups of `size` members from disjoint users.
pub async fn make_groups<P: Peer>(
    peer: &P,
    count: usize,
    size: usize,
) -> anyhow::Result<Vec<GroupRef>> {
    anyhow::ensure!(
        count * size <= peer.users(),
        "{count} groups of {size} need {} users, the peer has {}",
        count * size,
        peer.users()
    );
    let mut out = Vec::new();
    for g in 0..count {
        let members: Vec<usize> = (g * size..(g + 1) * size).collect();
        out.push(peer.create_group(&members).await?);
    }
    Ok(out)
}

async fn run_flow<P: Peer>(
    peer: &P,
    flow: &Flow,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        rate > 0.0 && seconds > 0.0,
        "rate and duration must be positive"
    );
    let messages = (rate * seconds).ceil() as usize;
    let tracker = Tracker::new(messages);
    let expected_per_seq: Vec<u16> = (0..messages)
        .map(|seq| flow.routes[seq % flow.routes.len()].2)
        .collect();
    let expected: u64 = expected_per_seq.iter().map(|&n| u64::from(n)).sum();

    // Connect everybody first; receivers listen before anything is sent.
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    let mut receiver_of = std::collections::HashMap::new();
    for &u in &flow.receivers {
        let (tx, rx) = peer
            .connect(u)
            .await
            .with_context(|| format!("connecting user {u}"))?;
        receiver_of.insert(u, tx);
        rxs.push(rx);
    }
    for (sender, _, _) in &flow.routes {
        let tx = match receiver_of.remove(sender) {
            Some(tx) => tx,
            None => peer.connect(*sender).await?.0,
        };
        txs.push(tx);
    }

    let received = Arc::new(AtomicU64::new(0));
    let deadline = Duration::from_secs_f64(seconds) + Duration::from_secs(10);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut receiving = JoinSet::new();
    for mut rx in rxs {
        let (tracker, received, mut stop) = (tracker.clone(), received.clone(), stop_rx.clone());
        receiving.spawn(async move {
            let mut hist = histogram();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    seqs = rx.recv() => match seqs {
                        Ok(seqs) => {
                            let n = tracker.arrive(&seqs, &mut hist);
                            received.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => return Err(e),
                    },
                }
            }
            Ok::<_, anyhow::Error>((hist, rx))
        });
    }

    let (gen0, srv0) = (procfs::own_cpu_seconds(), server_cpu(peer));
    let start = Instant::now();
    // Due times start a little after now, spaced by 1/rate, round-robin
    // over the routes; each sender sends its own share.
    let begin = tracker.t0.elapsed() + Duration::from_millis(50);
    let interval = 1.0 / rate;
    let routes = flow.routes.len();
    let mut sending = JoinSet::new();
    for (r, mut tx) in txs.into_iter().enumerate() {
        let (tracker, dest) = (tracker.clone(), flow.routes[r].1.clone());
        sending.spawn(async move {
            let mut seq = r;
            while seq < messages {
                let due = begin + Duration::from_secs_f64(seq as f64 * interval);
                tokio::time::sleep_until((tracker.t0 + due).into()).await;
                tracker.due_ns[seq].store(
                    u64::try_from(due.as_nanos()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                tx.send(&dest, tracker.seq(seq)).await?;
                seq += routes;
            }
            tx.flush().await?;
            Ok::<_, anyhow::Error>(tx)
        });
    }
    let mut senders = Vec::new();
    let mut send_error = None;
    while let Some(s) = sending.join_next().await {
        match s? {
            Ok(tx) => senders.push(tx),
            Err(e) => send_error = Some(e),
        }
    }
    // Wait for the deliveries, up to the deadline.
    while received.load(Ordering::Relaxed) < expected
        && tracker.t0.elapsed() < deadline
        && send_error.is_none()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = start.elapsed().as_secs_f64();
    let (gen1, srv1) = (procfs::own_cpu_seconds(), server_cpu(peer));
    let _ = stop_tx.send(true);
    let mut hist = histogram();
    while let Some(r) = receiving.join_next().await {
        let (h, _rx) = r??;
        hist.add(h).context("merging histograms")?;
    }
    drop(senders);
    if let Some(e) = send_error {
        return Err(e.context("a sender failed"));
    }
    let mut outcome = tally(&tracker, &expected_per_seq);
    outcome.sent = messages as u64;
    outcome.expected = expected;
    outcome.offered_per_s = rate;
    outcome.delivered_per_s = outcome.delivered as f64 / wall;
    latency(&mut outcome, &hist);
    outcome.generator_cpu = (gen1 - gen0) / wall;
    outcome.server_cpu = (srv1 - srv0) / wall;
    judge(&mut outcome);
    Ok(outcome)
}

/// Counts arrivals against what each sequence number should have had.
fn tally(tracker: &Tracker, expected_per_seq: &[u16]) -> Outcome {
    let mut o = Outcome::default();
    for (seq, &want) in expected_per_seq.iter().enumerate() {
        let got = tracker.arrived[seq].load(Ordering::Relaxed);
        o.delivered += u64::from(got.min(want));
        o.lost += u64::from(want.saturating_sub(got));
        o.duplicated += u64::from(got.saturating_sub(want));
    }
    o.stale = tracker.stale.load(Ordering::Relaxed);
    o
}

fn latency(o: &mut Outcome, hist: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    if hist.is_empty() {
        return;
    }
    o.p50_ms = ms(hist.value_at_quantile(0.50));
    o.p99_ms = ms(hist.value_at_quantile(0.99));
    o.p999_ms = ms(hist.value_at_quantile(0.999));
    o.max_ms = ms(hist.max());
}

fn judge(o: &mut Outcome) {
    let mut why = Vec::new();
    if o.generator_cpu > GENERATOR_SATURATED {
        why.push(format!(
            "generator core saturated ({:.0}%)",
            o.generator_cpu * 100.0
        ));
    }
    if o.lost > 0 {
        why.push(format!("{} deliveries lost", o.lost));
    }
    if o.duplicated > 0 {
        why.push(format!("{} deliveries duplicated", o.duplicated));
    }
    o.invalid = (!why.is_empty()).then(|| why.join("; "));
}

/// Store and forward: receivers offline while `messages` are sent as fast
/// as the server takes them (ingest), then the receivers connect and
/// drain their queues.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StoreForward {
    /// Messages sent.
    pub messages: u64,
    /// Messages per second until the server had taken them all.
    pub ingest_per_s: f64,
    /// Messages per second from the receivers' connecting to the last arrival.
    pub drain_per_s: f64,
    /// Deliveries lost.
    pub lost: u64,
    /// Deliveries duplicated.
    pub duplicated: u64,
    /// Arrivals of messages an earlier run left queued; not counted.
    #[serde(default)]
    pub stale: u64,
    /// The generator's CPU share during ingest.
    pub generator_cpu_ingest: f64,
    /// The generator's CPU share during the drain.
    pub generator_cpu_drain: f64,
    /// Why the run does not count, if it does not.
    pub invalid: Option<String>,
}

/// See [`StoreForward`]: user 2i sends `messages / pairs` to user 2i+1.
pub async fn store_and_forward<P: Peer + Clone>(
    peer: &P,
    pairs: usize,
    messages: usize,
) -> anyhow::Result<StoreForward> {
    anyhow::ensure!(
        2 * pairs <= peer.users(),
        "not enough users for {pairs} pairs"
    );
    let tracker = Tracker::new(messages);
    let mut txs = Vec::new();
    for i in 0..pairs {
        txs.push(peer.connect_sender(2 * i).await?);
    }
    let gen0 = procfs::own_cpu_seconds();
    let start = Instant::now();
    let mut sending = JoinSet::new();
    for (i, mut tx) in txs.into_iter().enumerate() {
        let tracker = tracker.clone();
        sending.spawn(async move {
            let dest = Dest::User(2 * i + 1);
            let mut seq = i;
            while seq < messages {
                tx.send(&dest, tracker.seq(seq)).await?;
                seq += pairs;
            }
            tx.flush().await?;
            Ok::<_, anyhow::Error>(tx)
        });
    }
    let mut senders = Vec::new();
    while let Some(s) = sending.join_next().await {
        senders.push(s??);
    }
    let ingest = start.elapsed().as_secs_f64();
    let gen1 = procfs::own_cpu_seconds();
    drop(senders);

    let received = Arc::new(AtomicU64::new(0));
    let gen2 = procfs::own_cpu_seconds();
    let start = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut receiving = JoinSet::new();
    // Every recipient comes online at once: a connect that waits for the
    // server (XMPP's presence is confirmed by a ping, answered after the
    // stored messages were pushed) must not hold back the next one.
    for i in 0..pairs {
        let (tracker, received, mut stop) = (tracker.clone(), received.clone(), stop_rx.clone());
        let peer = peer.clone();
        receiving.spawn(async move {
            let (tx, mut rx) = peer.connect(2 * i + 1).await?;
            // The sending half stays open while the user drains.
            let _online = tx;
            let mut hist = histogram();
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    seqs = rx.recv() => {
                        let n = tracker.arrive(&seqs?, &mut hist);
                        received.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < messages as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = start.elapsed().as_secs_f64();
    let gen3 = procfs::own_cpu_seconds();
    let _ = stop_tx.send(true);
    while let Some(r) = receiving.join_next().await {
        r??;
    }
    let per_seq = vec![1u16; messages];
    let tallied = tally(&tracker, &per_seq);
    let mut out = StoreForward {
        messages: messages as u64,
        ingest_per_s: messages as f64 / ingest,
        drain_per_s: tallied.delivered as f64 / drain,
        lost: tallied.lost,
        duplicated: tallied.duplicated,
        stale: tallied.stale,
        generator_cpu_ingest: (gen1 - gen0) / ingest,
        generator_cpu_drain: (gen3 - gen2) / drain,
        invalid: None,
    };
    let mut why = Vec::new();
    if out.generator_cpu_ingest.max(out.generator_cpu_drain) > GENERATOR_SATURATED {
        why.push("generator core saturated".to_owned());
    }
    if out.lost > 0 || out.duplicated > 0 {
        why.push(format!("{} lost, {} duplicated", out.lost, out.duplicated));
    }
    out.invalid = (!why.is_empty()).then(|| why.join("; "));
    Ok(out)
}

/// Idle connections: memory per connection from the server's RSS.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Idle {
    /// Connections held open.
    pub connections: usize,
    /// Server RSS before, in bytes.
    pub rss_before: u64,
    /// Server RSS with all connections open.
    pub rss_after: u64,
    /// (after - before) / connections.
    pub bytes_per_connection: f64,
    /// Seconds it took to open them.
    pub open_seconds: f64,
}

/// Opens `connections` authenticated, online connections spread over the
/// users and reads the server's memory.
pub async fn idle<P: Peer>(peer: &P, connections: usize) -> anyhow::Result<Idle> {
    let pids = peer.pids();
    let rss = || -> anyhow::Result<u64> { pids.iter().map(|p| procfs::tree_rss_bytes(*p)).sum() };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss()?;
    let start = Instant::now();
    let users = peer.users();
    let mut held = Vec::with_capacity(connections);
    let mut batch = Vec::new();
    for n in 0..connections {
        batch.push(peer.connect_idle(n % users, n / users));
        if batch.len() == 64 || n + 1 == connections {
            for r in futures_util::future::join_all(batch.drain(..)).await {
                held.push(r.with_context(|| format!("idle connection {}", held.len()))?);
            }
        }
    }
    let open_seconds = start.elapsed().as_secs_f64();
    // Let the server settle (buffers shrink after the handshakes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss()?;
    drop(held);
    Ok(Idle {
        connections,
        rss_before,
        rss_after,
        bytes_per_connection: rss_after.saturating_sub(rss_before) as f64 / connections as f64,
        open_seconds,
    })
}

/// Connection storm: complete new sessions per second.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Storm {
    /// Sessions completed.
    pub sessions: u64,
    /// Sessions that failed.
    pub failures: u64,
    /// Completed sessions per second.
    pub per_s: f64,
    /// The generator's CPU share.
    pub generator_cpu: f64,
    /// The server's CPU share.
    pub server_cpu: f64,
    /// The first failure, if any.
    pub first_failure: Option<String>,
}

/// `concurrency` loops opening one full session after another for `seconds`.
pub async fn storm<P: Peer + Clone>(
    peer: &P,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<Storm> {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let (gen0, srv0) = (procfs::own_cpu_seconds(), server_cpu(peer));
    let start = Instant::now();
    let mut loops = JoinSet::new();
    for c in 0..concurrency {
        let peer = peer.clone();
        loops.spawn(async move {
            let (mut ok, mut failed, mut first) = (0u64, 0u64, None);
            let mut user = c;
            while Instant::now() < end {
                match peer.handshake(user % peer.users()).await {
                    Ok(()) => ok += 1,
                    Err(e) => {
                        failed += 1;
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                user += concurrency;
            }
            (ok, failed, first)
        });
    }
    let mut out = Storm::default();
    while let Some(l) = loops.join_next().await {
        let (ok, failed, first) = l?;
        out.sessions += ok;
        out.failures += failed;
        if out.first_failure.is_none() {
            out.first_failure = first;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    out.per_s = out.sessions as f64 / wall;
    out.generator_cpu = (procfs::own_cpu_seconds() - gen0) / wall;
    out.server_cpu = (server_cpu(peer) - srv0) / wall;
    Ok(out)
}

/// How far below `first` [`step_rate`] steps down when the first step
/// fails: to `first / STEP_DOWN_FLOOR`.
const STEP_DOWN_FLOOR: f64 = 8.0;

/// Steps the 1:1 rate up by `factor` from `first` until p99 passes
/// `p99_limit_ms`, a run is invalid, or deliveries fall behind the offer.
/// When the very first step fails on latency or falling behind, steps down
/// by `factor` instead until a step passes (or the rate falls below
/// `first / 8`), so a slow system still gets a maximum. Returns every
/// step's outcome, in the order run.
pub async fn step_rate<F, Fut>(
    first: f64,
    factor: f64,
    p99_limit_ms: f64,
    max_steps: usize,
    mut run: F,
) -> anyhow::Result<Vec<Outcome>>
where
    F: FnMut(f64) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let mut steps = Vec::new();
    let mut rate = first;
    let mut down = false;
    for _ in 0..max_steps {
        let o = run(rate).await?;
        // Progress for whoever watches (a profile taken during a step
        // needs to know how the step went); results.json has it all.
        eprintln!(
            "bench:     step {:.0}/s: delivered {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, server cpu {:.2}",
            o.offered_per_s, o.delivered_per_s, o.p50_ms, o.p99_ms, o.server_cpu
        );
        let invalid = o.invalid.is_some();
        let failed = o.p99_ms > p99_limit_ms
            || invalid
            || o.delivered_per_s < 0.9 * o.offered_per_s * (o.expected as f64 / o.sent as f64);
        steps.push(o);
        if steps.len() == 1 && failed && !invalid {
            down = true;
        }
        if down {
            if !failed || invalid || rate / factor < first / STEP_DOWN_FLOOR {
                break;
            }
            rate /= factor;
        } else {
            if failed {
                break;
            }
            rate *= factor;
        }
    }
    Ok(steps)
}

/// The highest delivered rate among steps that met the latency limit and
/// were valid.
pub fn max_rate(steps: &[Outcome], p99_limit_ms: f64) -> Option<f64> {
    steps
        .iter()
        .filter(|o| o.invalid.is_none() && o.p99_ms <= p99_limit_ms)
        .map(|o| o.delivered_per_s)
        .fold(None, |m, r| Some(m.map_or(r, |m: f64| m.max(r))))
}

/// The median of `values` (the middle one, or the mean of the middle two).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_lost_and_duplicated_deliveries() {
        let t = Tracker::new(3);
        let mut h = histogram();
        t.due_ns[0].store(0, Ordering::Relaxed);
        let (s0, s1) = (t.seq(0), t.seq(1));
        assert_eq!(t.arrive(&[s0, s0, s1, t.seq(99)], &mut h), 3);
        let o = tally(&t, &[1, 2, 1]);
        assert_eq!((o.delivered, o.lost, o.duplicated), (2, 2, 1));
        assert_eq!(o.stale, 1, "a number outside the run's range");
        assert_eq!(h.len(), 2, "only seq 0 had a due time, recorded twice");
    }

    #[test]
    fn a_later_run_counts_an_earlier_runs_message_as_stale() {
        let first = Tracker::new(10);
        let second = Tracker::new(10);
        assert!(second.seq(0) > first.seq(9), "ranges do not overlap");
        let mut h = histogram();
        // Message 3 of the first run, left queued, arrives in the second.
        assert_eq!(second.arrive(&[first.seq(3), second.seq(3)], &mut h), 1);
        let o = tally(&second, &[1; 10]);
        assert_eq!((o.delivered, o.duplicated, o.stale), (1, 0, 1));
    }

    fn step(rate: f64, p99: f64) -> Outcome {
        Outcome {
            sent: 1,
            expected: 1,
            offered_per_s: rate,
            delivered_per_s: rate,
            p99_ms: p99,
            ..Outcome::default()
        }
    }

    /// Runs `step_rate` against a system whose p99 passes 50 ms above
    /// `capacity`; returns the offered rates in the order run.
    fn stepped(capacity: f64) -> Vec<f64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let steps = rt
            .block_on(step_rate(1000.0, 1.5, 50.0, 10, |rate| async move {
                Ok(step(rate, if rate > capacity { 80.0 } else { 5.0 }))
            }))
            .unwrap();
        steps.iter().map(|o| o.offered_per_s.round()).collect()
    }

    #[test]
    fn step_rate_steps_up_until_a_step_fails() {
        assert_eq!(stepped(2000.0), vec![1000.0, 1500.0, 2250.0]);
    }

    #[test]
    fn step_rate_steps_down_when_the_first_step_fails() {
        assert_eq!(stepped(500.0), vec![1000.0, 667.0, 444.0]);
        let steps = vec![step(1000.0, 80.0), step(667.0, 80.0), step(444.0, 5.0)];
        assert_eq!(max_rate(&steps, 50.0), Some(444.0));
        // Nothing passes: down to the floor (1000 / 8), then it stops.
        assert_eq!(
            stepped(10.0),
            vec![1000.0, 667.0, 444.0, 296.0, 198.0, 132.0]
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn max_rate_ignores_invalid_and_slow_steps() {
        let step = |r: f64, p99: f64, invalid: bool| Outcome {
            delivered_per_s: r,
            p99_ms: p99,
            invalid: invalid.then(|| "x".to_owned()),
            ..Outcome::default()
        };
        let steps = [
            step(100.0, 1.0, false),
            step(200.0, 5.0, false),
            step(300.0, 80.0, false),
            step(400.0, 1.0, true),
        ];
        assert_eq!(max_rate(&steps, 50.0), Some(200.0));
    }

    #[test]
    fn judge_flags_saturation_and_loss() {
        let mut o = Outcome {
            generator_cpu: 0.95,
            lost: 1,
            ..Outcome::default()
        };
        judge(&mut o);
        let why = o.invalid.unwrap();
        assert!(why.contains("saturated") && why.contains("lost"), "{why}");
    }
}
