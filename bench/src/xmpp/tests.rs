//! Each server, started for real when its Debian packages are installed:
//! 1:1 messages online and offline, a MUC of three, a handshake and idle
//! connections. Without the packages the test says it skipped.

use std::time::Duration;

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
    let outcome = tokio::time::timeout(Duration::from_secs(120), scenario(&peer)).await;
    let tails = peer.log_tails();
    peer.stop().await.expect("the server stops");
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{kind}: {e:#}\n{tails}"),
        Err(_) => panic!("{kind}: the scenario took over 120 s\n{tails}"),
    }
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
    let group = peer.create_group(&[3, 4, 5]).await?;

    // Online 1:1.
    let (mut tx0, _rx0) = peer.connect(0).await?;
    let (_tx1, mut rx1) = peer.connect(1).await?;
    for seq in 0..5 {
        tx0.send(&Dest::User(1), seq).await?;
    }
    tx0.flush().await?;
    assert_eq!(take(&mut rx1, 5).await?, [0, 1, 2, 3, 4]);

    // Store and forward: user 3 is offline while user 2 sends.
    let mut tx2 = peer.connect_sender(2).await?;
    for seq in 10..15 {
        tx2.send(&Dest::User(3), seq).await?;
    }
    tx2.flush().await?;
    let (_tx3, mut rx3) = peer.connect(3).await?;
    assert_eq!(take(&mut rx3, 5).await?, [10, 11, 12, 13, 14]);

    // A MUC of three: 3 (joined when it connected above), 4 and 5.
    let (mut tx4, mut rx4) = peer.connect(4).await?;
    let (_tx5, mut rx5) = peer.connect(5).await?;
    for seq in 20..23 {
        tx4.send(&Dest::Group(group.clone()), seq).await?;
    }
    tx4.flush().await?;
    assert_eq!(take(&mut rx3, 3).await?, [20, 21, 22]);
    assert_eq!(take(&mut rx5, 3).await?, [20, 21, 22]);
    let echo = tokio::time::timeout(Duration::from_millis(300), rx4.recv()).await;
    assert!(
        echo.is_err(),
        "the sender's own echo is not reported: {echo:?}"
    );

    // A handshake; an unknown user is an error naming the user.
    peer.handshake(0).await?;
    let err = peer
        .handshake(99)
        .await
        .expect_err("user 99 does not exist");
    assert!(format!("{err:#}").contains("user 99"), "{err:#}");

    // Idle connections of user 1 do not take its messages.
    let mut idle = Vec::new();
    for n in 0..3 {
        idle.push(peer.connect_idle(1, n).await?);
    }
    tx0.send(&Dest::User(1), 30).await?;
    tx0.flush().await?;
    assert_eq!(take(&mut rx1, 1).await?, [30]);
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
