//! Each server, started for real when its Debian packages are installed:
//! 1:1 messages online and offline, a MUC of three, a handshake and idle
//! connections. Without the packages the test says it skipped.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;

use super::*;
use crate::peer::{Dest, MessageRx, MessageTx};

fn available(kind: XmppKind) -> bool {
    let needs: &[&str] = match kind {
        XmppKind::Prosody => &["prosody", "lua-dbi-sqlite3"],
        XmppKind::Ejabberd => &["ejabberd", "erlang-p1-sqlite3"],
    };
    let missing: Vec<&&str> = needs.iter().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!("skipped: {kind} not installed (missing {missing:?}; `setup()` installs it)");
    }
    missing.is_empty()
}

async fn run(kind: XmppKind) {
    if !available(kind) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let opts = XmppOptions {
        kind,
        users: 6,
        payload: 100,
        cpu: None,
        dir: dir.path().to_path_buf(),
    };
    let peer = XmppPeer::start(opts).await.expect("the server starts");
    // A bound against a hang, not a speed check: CI machines are busy.
    // Each step has its own, so a hang names its step; this one is a
    // backstop.
    let outcome = tokio::time::timeout(Duration::from_secs(240), scenario(&peer)).await;
    let tails = peer.log_tails();
    peer.stop().await.expect("the server stops");
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{kind}: {e:#}\n{tails}"),
        Err(_) => panic!("{kind}: the scenario took over 240 s\n{tails}"),
    }
}

/// How long one step of the scenario may take: far more than it needs on a
/// busy machine (a few hundred milliseconds), less than the client's own
/// 120 s answer timeout, so a hang is reported by the step that hung.
const STEP: Duration = Duration::from_secs(30);

/// Runs one step of the scenario within [`STEP`]; an error or a hang
/// names the step.
async fn step<T>(name: &str, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP, work)
        .await
        .map_err(|_| anyhow!("step '{name}' took over {STEP:?}"))?
        .with_context(|| format!("step '{name}'"))
}

/// Receives until `n` sequence numbers have arrived, sorted.
async fn take(rx: &mut XmppRx, n: usize) -> anyhow::Result<Vec<u64>> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(rx.recv().await?);
    }
    got.sort_unstable();
    Ok(got)
}

async fn scenario(peer: &XmppPeer) -> anyhow::Result<()> {
    assert_eq!(peer.users(), 6);
    assert!(!peer.pids().is_empty());
    let group = step("create the MUC", peer.create_group(&[3, 4, 5])).await?;

    // Online 1:1.
    let (mut tx0, _rx0) = step("connect u0", peer.connect(0)).await?;
    let (_tx1, mut rx1) = step("connect u1", peer.connect(1)).await?;
    step("u0 sends 5 to u1", async {
        for seq in 0..5 {
            tx0.send(&Dest::User(1), seq).await?;
        }
        tx0.flush().await
    })
    .await?;
    let got = step("u1 receives 5", take(&mut rx1, 5)).await?;
    assert_eq!(got, [0, 1, 2, 3, 4]);

    // Store and forward: user 3 is offline while user 2 sends.
    step("u2 sends 5 to u3, offline", async {
        let mut tx2 = peer.connect_sender(2).await?;
        for seq in 10..15 {
            tx2.send(&Dest::User(3), seq).await?;
        }
        tx2.flush().await
    })
    .await?;
    let (_tx3, mut rx3) = step("connect u3", peer.connect(3)).await?;
    let got = step("u3 receives 5 from storage", take(&mut rx3, 5)).await?;
    assert_eq!(got, [10, 11, 12, 13, 14]);

    // A MUC of three: 3 (joined when it connected above), 4 and 5.
    let (mut tx4, mut rx4) = step("connect u4", peer.connect(4)).await?;
    let (_tx5, mut rx5) = step("connect u5", peer.connect(5)).await?;
    step("u4 sends 3 to the MUC", async {
        for seq in 20..23 {
            tx4.send(&Dest::Group(group.clone()), seq).await?;
        }
        tx4.flush().await
    })
    .await?;
    let got = step("u3 receives 3 from the MUC", take(&mut rx3, 3)).await?;
    assert_eq!(got, [20, 21, 22]);
    let got = step("u5 receives 3 from the MUC", take(&mut rx5, 3)).await?;
    assert_eq!(got, [20, 21, 22]);
    let echo = tokio::time::timeout(Duration::from_millis(300), rx4.recv()).await;
    assert!(
        echo.is_err(),
        "the sender's own echo is not reported: {echo:?}"
    );

    // A handshake; an unknown user is an error naming the user.
    step("a handshake of u0", peer.handshake(0)).await?;
    let err = peer
        .handshake(99)
        .await
        .expect_err("user 99 does not exist");
    assert!(format!("{err:#}").contains("user 99"), "{err:#}");

    // Idle connections of user 1 do not take its messages.
    let mut idle = Vec::new();
    for n in 0..3 {
        idle.push(step("an idle connection of u1", peer.connect_idle(1, n)).await?);
    }
    step("u0 sends 1 to u1", async {
        tx0.send(&Dest::User(1), 30).await?;
        tx0.flush().await
    })
    .await?;
    let got = step("u1 receives 1 past its idle connections", take(&mut rx1, 1)).await?;
    assert_eq!(got, [30]);
    drop(idle);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_carries_messages_groups_handshakes_and_idle_connections() {
    run(XmppKind::Prosody).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_carries_messages_groups_handshakes_and_idle_connections() {
    run(XmppKind::Ejabberd).await;
}
