//! How long the XMPP side takes to get ready, and how many idle
//! connections it holds: `setup()`, provisioning 1,000 users, starting each
//! server pinned to core 0, then opening idle connections (default 2,000;
//! the first argument overrides) and a few handshakes.
//!
//! `cargo run --release -p bench --example xmpp_startup -- 2000`

use std::time::{Duration, Instant};

use bench::peer::Peer;
use bench::xmpp::{XmppKind, XmppOptions, XmppPeer, server, setup};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let idle: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(2000);
    let users = 1000;
    let t = Instant::now();
    setup()?;
    println!("setup (packages present): {:?}", t.elapsed());
    for kind in [XmppKind::Prosody, XmppKind::Ejabberd] {
        let scratch = tempfile::tempdir()?;
        let t = Instant::now();
        let layout = server::Layout {
            dir: scratch.path().to_path_buf(),
            port: 1,
        };
        server::prepare(&kind, &layout, users)?;
        println!(
            "{kind}: certificate, configuration and {users} users written in {:?}",
            t.elapsed()
        );

        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        let opts = XmppOptions {
            kind,
            users,
            payload: 100,
            cpu: Some(0),
            dir: dir.path().to_path_buf(),
        };
        let peer = XmppPeer::start(opts).await?;
        println!(
            "{kind}: start with {users} users until u0 logs in: {:?}",
            t.elapsed()
        );

        let t = Instant::now();
        for u in 0..50 {
            peer.handshake(u).await?;
        }
        println!(
            "{kind}: 50 sequential handshakes: {:?} each",
            t.elapsed() / 50
        );

        let t = Instant::now();
        let mut held = Vec::new();
        let mut failure = None;
        'open: for batch in 0..idle.div_ceil(100) {
            let mut pending = Vec::new();
            for n in batch * 100..((batch + 1) * 100).min(idle) {
                pending.push(peer.connect_idle(n % users, n / users));
            }
            for r in futures_util::future::join_all(pending).await {
                match r {
                    Ok(c) => held.push(c),
                    Err(e) => {
                        failure = Some(format!("{e:#}"));
                        break 'open;
                    }
                }
            }
        }
        println!(
            "{kind}: {} idle connections open in {:?}{}",
            held.len(),
            t.elapsed(),
            failure
                .map(|f| format!(" (stopped at: {f})"))
                .unwrap_or_default()
        );
        let rss: u64 = peer
            .pids()
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum();
        println!("{kind}: server RSS with them: {} MiB", rss / 1024);
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
        let t = Instant::now();
        peer.stop().await?;
        println!("{kind}: stop: {:?}", t.elapsed());
    }
    Ok(())
}
