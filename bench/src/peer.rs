//! What the workloads need of a system under test, whatever its protocol.
//!
//! A [`Peer`] is a running server with `users()` provisioned accounts,
//! numbered from 0. A connected user is a [`MessageTx`] and a
//! [`MessageRx`]; the workloads drive them and never see the protocol.
//!
//! Every message carries a harness sequence number (`u64`) that the
//! receiving side reports back; the workloads record when each one was due
//! and when it arrived. The payload size is fixed per peer at start.

use std::future::Future;

/// Where a message goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// One user (1:1 chat).
    User(usize),
    /// A group created by [`Peer::create_group`].
    Group(GroupRef),
}

/// A group (Kontor group, XMPP MUC room) and its members.
#[derive(Debug, Clone)]
pub struct GroupRef {
    /// The peer's name for it (a hex group id, a room JID).
    pub id: String,
    /// The members' user indices; the first one created it.
    pub members: Vec<usize>,
}

/// A running server under test.
pub trait Peer: Send + Sync + 'static {
    /// The sending half of a connected user.
    type Tx: MessageTx;
    /// The receiving half of a connected user.
    type Rx: MessageRx;
    /// A connection held open and otherwise idle.
    type Idle: Send + 'static;

    /// Name in results: "kontor-sqlite", "prosody", ...
    fn name(&self) -> String;
    /// The server's processes (for memory and CPU readings).
    fn pids(&self) -> Vec<u32>;
    /// Provisioned users.
    fn users(&self) -> usize;
    /// How a group message reaches its members, for the write-up.
    fn group_mode(&self) -> &'static str;

    /// Connects `user` and makes it available ("online"): after this
    /// returns, messages to the user are delivered to the `Rx`.
    fn connect(
        &self,
        user: usize,
    ) -> impl Future<Output = anyhow::Result<(Self::Tx, Self::Rx)>> + Send;

    /// Connects `user` only to send: the user stays offline, so messages to
    /// it are stored (store and forward).
    fn connect_sender(&self, user: usize) -> impl Future<Output = anyhow::Result<Self::Tx>> + Send;

    /// Opens one authenticated, online connection of `user` that receives
    /// nothing further (idle connections); `n` numbers it (a resource, a
    /// device) so many may exist per user.
    fn connect_idle(
        &self,
        user: usize,
        n: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Idle>> + Send;

    /// One complete new session for `user`: TCP, a full TLS handshake (no
    /// resumption), authentication and one answered request; then closes.
    fn handshake(&self, user: usize) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Creates a group of `members` (the first is its creator and owner).
    fn create_group(
        &self,
        members: &[usize],
    ) -> impl Future<Output = anyhow::Result<GroupRef>> + Send;
}

/// The sending half of a connected user.
pub trait MessageTx: Send + 'static {
    /// Sends message `seq` to `dest`. It returns when the send is handed to
    /// the connection (XMPP) or accepted by the server (Kontor's 2xx); it
    /// may be called again before an earlier call's message arrives.
    fn send(&mut self, dest: &Dest, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Returns when the server has taken every message sent so far (stored
    /// it for offline recipients or routed it).
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The receiving half of a connected user.
pub trait MessageRx: Send + 'static {
    /// The harness sequence numbers of the next message(s) to arrive
    /// (acknowledging them to the server where the protocol asks for it).
    /// Messages the user sent itself (a MUC echo) are not reported.
    fn recv(&mut self) -> impl Future<Output = anyhow::Result<Vec<u64>>> + Send;
}

/// The payload every peer sends: `seq` as 8 bytes, then filler up to
/// `size` (at least 8 bytes).
pub fn payload(seq: u64, size: usize) -> Vec<u8> {
    let mut p = vec![0x5a; size.max(8)];
    p[..8].copy_from_slice(&seq.to_be_bytes());
    p
}

/// The sequence number a payload carries, if it is one of ours.
pub fn payload_seq(payload: &[u8]) -> Option<u64> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

/// A shared peer is a peer: the connection storm clones it into each loop.
impl<P: Peer> Peer for std::sync::Arc<P> {
    type Tx = P::Tx;
    type Rx = P::Rx;
    type Idle = P::Idle;

    fn name(&self) -> String {
        (**self).name()
    }
    fn pids(&self) -> Vec<u32> {
        (**self).pids()
    }
    fn users(&self) -> usize {
        (**self).users()
    }
    fn group_mode(&self) -> &'static str {
        (**self).group_mode()
    }
    fn connect(
        &self,
        user: usize,
    ) -> impl Future<Output = anyhow::Result<(Self::Tx, Self::Rx)>> + Send {
        (**self).connect(user)
    }
    fn connect_sender(&self, user: usize) -> impl Future<Output = anyhow::Result<Self::Tx>> + Send {
        (**self).connect_sender(user)
    }
    fn connect_idle(
        &self,
        user: usize,
        n: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Idle>> + Send {
        (**self).connect_idle(user, n)
    }
    fn handshake(&self, user: usize) -> impl Future<Output = anyhow::Result<()>> + Send {
        (**self).handshake(user)
    }
    fn create_group(
        &self,
        members: &[usize],
    ) -> impl Future<Output = anyhow::Result<GroupRef>> + Send {
        (**self).create_group(members)
    }
}
