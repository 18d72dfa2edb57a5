//! The hint bus: tells the node that holds a device's live connection
//! "something arrived for this device".
//!
//! The database is the truth and the bus only a hint to look: a lost or
//! late hint delays a delivery (live connections also re-read their queue
//! every few seconds), it never loses one. Hence publishers never block: a
//! slow subscriber misses hints, and a missed hint turns into "look at
//! everything".
//!
//! [`LocalBus`] serves one node; [`NatsBus`] carries hints between nodes
//! over core NATS (at-most-once, which is all a hint needs), with one
//! wildcard subscription per node fanned out locally.
//!
//! The bus also tells every node that a certificate was revoked
//! ([`Bus::announce_revocation`]): each node keeps its deny list in memory,
//! so without the announcement a revocation made through one node would
//! not be refused by the others until they restart. The announcement is a
//! hint as well; the nodes also re-read the revocations on a timer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use kontor_provisioning::DeviceId;
use tokio::sync::{broadcast, watch};

use crate::error::{Error, Result};

/// What kind of news there is for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HintKind {
    /// A message was queued.
    Message,
    /// A command (policy, wipe) was queued.
    Command,
}

/// "Look, something arrived for `device`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// The device.
    pub device: DeviceId,
    /// What arrived.
    pub kind: HintKind,
}

/// Publishes hints and subscribes to one device's hints.
pub trait Bus: Clone + Send + Sync + 'static {
    /// Publishes a hint; never waits for subscribers.
    fn publish(&self, hint: Hint) -> impl Future<Output = Result<()>> + Send;
    /// Hints for one device, until the subscription is dropped.
    fn subscribe(&self, device: DeviceId) -> impl Future<Output = Result<Subscription>> + Send;
    /// Whether `device` holds a live subscription on this node (then it
    /// needs no push hint).
    fn subscribed_here(&self, device: DeviceId) -> bool;
    /// Tells every node (this one included) that a certificate was revoked,
    /// so each re-reads the revocations. Never waits for the nodes.
    fn announce_revocation(&self) -> impl Future<Output = Result<()>> + Send;
    /// Revocations announced by any node: the value changes with each
    /// announcement (several may fold into one change).
    fn revocations(&self) -> watch::Receiver<u64>;
}

/// How many hints may wait for one slow subscriber before it misses some.
const CHANNEL_CAPACITY: usize = 16;

/// Hints for one device.
#[derive(Debug)]
pub struct Subscription {
    device: DeviceId,
    receiver: broadcast::Receiver<HintKind>,
    /// After a miss, the command half of "look at everything" still owed.
    owe_command: bool,
}

impl Subscription {
    /// The next hint; `None` when the bus has gone.
    pub async fn recv(&mut self) -> Option<Hint> {
        if self.owe_command {
            self.owe_command = false;
            return Some(Hint {
                device: self.device,
                kind: HintKind::Command,
            });
        }
        match self.receiver.recv().await {
            Ok(kind) => Some(Hint {
                device: self.device,
                kind,
            }),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Hints were missed: look at messages now, commands next.
                self.owe_command = true;
                Some(Hint {
                    device: self.device,
                    kind: HintKind::Message,
                })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// A hint that is already waiting, without waiting for one: lets a
    /// live connection fold a burst of hints into one look at the queue.
    pub fn try_recv(&mut self) -> Option<Hint> {
        if self.owe_command {
            self.owe_command = false;
            return Some(Hint {
                device: self.device,
                kind: HintKind::Command,
            });
        }
        match self.receiver.try_recv() {
            Ok(kind) => Some(Hint {
                device: self.device,
                kind,
            }),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {
                self.owe_command = true;
                Some(Hint {
                    device: self.device,
                    kind: HintKind::Message,
                })
            }
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                None
            }
        }
    }
}

/// The in-process bus of a single node.
#[derive(Debug, Clone)]
pub struct LocalBus {
    channels: Arc<Mutex<HashMap<DeviceId, broadcast::Sender<HintKind>>>>,
    revoked: Arc<watch::Sender<u64>>,
}

impl Default for LocalBus {
    fn default() -> Self {
        Self {
            channels: Arc::default(),
            revoked: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl LocalBus {
    fn count_revocation(&self) {
        self.revoked.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn deliver(&self, hint: Hint) -> Result<()> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| Error::Bus("local bus poisoned".into()))?;
        if let Some(sender) = channels.get(&hint.device) {
            if sender.receiver_count() == 0 {
                // Nobody listens any more: forget the channel.
                channels.remove(&hint.device);
            } else {
                // Err only when there is no receiver; a hint nobody hears is fine.
                let _ = sender.send(hint.kind);
            }
        }
        Ok(())
    }

    fn attach(&self, device: DeviceId) -> Result<Subscription> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| Error::Bus("local bus poisoned".into()))?;
        let receiver = channels
            .entry(device)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe();
        Ok(Subscription {
            device,
            receiver,
            owe_command: false,
        })
    }

    fn has_subscriber(&self, device: DeviceId) -> bool {
        self.channels
            .lock()
            .map(|c| c.get(&device).is_some_and(|s| s.receiver_count() > 0))
            .unwrap_or(false)
    }

    /// Devices with at least one live subscription on this node.
    pub fn subscribed_devices(&self) -> usize {
        self.channels
            .lock()
            .map(|c| c.values().filter(|s| s.receiver_count() > 0).count())
            .unwrap_or(0)
    }
}

impl Bus for LocalBus {
    async fn publish(&self, hint: Hint) -> Result<()> {
        self.deliver(hint)
    }

    async fn subscribe(&self, device: DeviceId) -> Result<Subscription> {
        self.attach(device)
    }

    fn subscribed_here(&self, device: DeviceId) -> bool {
        self.has_subscriber(device)
    }

    async fn announce_revocation(&self) -> Result<()> {
        self.count_revocation();
        Ok(())
    }

    fn revocations(&self) -> watch::Receiver<u64> {
        self.revoked.subscribe()
    }
}

/// The payload of a revocation announcement (the subject says it all).
const REVOKED_PAYLOAD: &[u8] = b"r";

/// The longest a hint may wait to be handed to the NATS client.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(250);

/// Hints between nodes over NATS. Each node keeps one wildcard
/// subscription and fans hints out to its local subscribers.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    prefix: String,
    revoked_subject: String,
    local: LocalBus,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects to NATS; `namespace` separates deployments (and tests) on
    /// one NATS server: letters, digits, `-` and `_`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        if namespace.is_empty()
            || !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Config(
                "NATS namespace must be letters, digits, - or _".into(),
            ));
        }
        let client = async_nats::connect(url)
            .await
            .map_err(|e| Error::Bus(format!("cannot connect to NATS: {e}")))?;
        let prefix = format!("kontor.{namespace}.device");
        let revoked_subject = format!("kontor.{namespace}.revoked");
        let mut subscriber = client
            .subscribe(format!("{prefix}.*"))
            .await
            .map_err(|e| Error::Bus(format!("cannot subscribe: {e}")))?;
        let mut revocations = client
            .subscribe(revoked_subject.clone())
            .await
            .map_err(|e| Error::Bus(format!("cannot subscribe: {e}")))?;
        let local = LocalBus::default();
        let counter = local.clone();
        // NATS echoes a node's own announcement back to it: one more
        // re-read of the revocations on the announcing node, which is fine.
        tokio::spawn(async move {
            while revocations.next().await.is_some() {
                counter.count_revocation();
            }
        });
        let fan_out = local.clone();
        let strip = format!("{prefix}.");
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Some(device) = message
                    .subject
                    .strip_prefix(strip.as_str())
                    .and_then(DeviceId::from_hex)
                else {
                    continue;
                };
                let kind = match &message.payload[..] {
                    b"c" => HintKind::Command,
                    _ => HintKind::Message,
                };
                let _ = fan_out.deliver(Hint { device, kind });
            }
        });
        Ok(Self {
            client,
            prefix,
            revoked_subject,
            local,
        })
    }
}

impl NatsBus {
    /// Publishes, waiting at most [`PUBLISH_TIMEOUT`]. While NATS is
    /// unreachable the client buffers publishes until its queue is full and
    /// then waits: a hint must never hold up the answer to a message that
    /// is already stored, so wait briefly only.
    async fn publish_briefly(&self, subject: String, payload: &'static [u8]) -> Result<()> {
        tokio::time::timeout(
            PUBLISH_TIMEOUT,
            self.client.publish(subject, payload.into()),
        )
        .await
        .map_err(|_| Error::Bus("publish timed out: NATS unreachable".into()))?
        .map_err(|e| Error::Bus(format!("cannot publish: {e}")))
    }
}

impl Bus for NatsBus {
    async fn publish(&self, hint: Hint) -> Result<()> {
        let payload: &'static [u8] = match hint.kind {
            HintKind::Message => b"m",
            HintKind::Command => b"c",
        };
        self.publish_briefly(format!("{}.{}", self.prefix, hint.device), payload)
            .await
    }

    async fn subscribe(&self, device: DeviceId) -> Result<Subscription> {
        self.local.attach(device)
    }

    fn subscribed_here(&self, device: DeviceId) -> bool {
        self.local.has_subscriber(device)
    }

    async fn announce_revocation(&self) -> Result<()> {
        self.publish_briefly(self.revoked_subject.clone(), REVOKED_PAYLOAD)
            .await
    }

    fn revocations(&self) -> watch::Receiver<u64> {
        self.local.revocations()
    }
}
