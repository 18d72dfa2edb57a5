//! Hand-off: a message for a device that holds a live connection on this
//! node goes straight to that connection, and is stored only for the
//! devices that did not acknowledge it in time.
//!
//! The sender's 2xx still means "nothing can lose this now": either the
//! recipient device acknowledged the frame (it keeps the message in its own
//! store; the relay's copy would be deleted by that acknowledgement anyway)
//! or the relay stored it. What a device did not acknowledge within
//! `RelayConfig::handoff_wait` (or whose connection refused the offer,
//! ended, or had no room) is stored and delivered as before, so a late
//! acknowledgement can leave the device with a second copy, which it drops
//! as already seen (the agent keeps a digest of every message it stored).
//!
//! Frames handed off carry sequence numbers from [`HANDOFF_SEQ_BASE`] up,
//! apart from the store's: an acknowledgement of one goes to the offer's
//! waiting sender, never to the store.
//!
//! [`Handoffs`] is the node's registry of live connections willing to take
//! offers (one [`Inbox`] per connection), kept apart from the bus: a
//! hand-off never crosses nodes (a device live on another node gets the
//! stored message and a hint over the bus, as before).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kontor_provisioning::DeviceId;
use tokio::sync::{Notify, oneshot};

/// The first sequence number of a handed-off frame (2^52: far above any
/// store's sequence, and still exact in a JSON number read as a double).
pub const HANDOFF_SEQ_BASE: u64 = 1 << 52;

/// Whether an acknowledged sequence number names a handed-off frame.
pub fn is_handoff_seq(seq: u64) -> bool {
    seq >= HANDOFF_SEQ_BASE
}

/// One frame offered to a live connection.
#[derive(Debug)]
pub struct Offer {
    /// Its sequence number (from [`HANDOFF_SEQ_BASE`] up).
    pub seq: u64,
    /// The encoded message frame (`wire::encode_frame`).
    pub frame: Vec<u8>,
    /// Told once the device acknowledged the frame. Dropping it unsent is
    /// the refusal: the sender's request then stores the message.
    pub taken: oneshot::Sender<()>,
}

/// One connection's waiting offers. A `VecDeque` rather than a channel:
/// an idle connection's inbox allocates nothing (a bounded tokio channel
/// allocates a block of 32 slots at once, about 1.5 KiB per connection),
/// and its room is given back once it runs empty.
#[derive(Debug)]
struct Slot {
    queue: Mutex<VecDeque<Offer>>,
    ready: Notify,
    capacity: usize,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Offer>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Room kept in an inbox that ran empty; more is given back.
const KEPT_ROOM: usize = 4;

type Inboxes = HashMap<DeviceId, Vec<(u64, Arc<Slot>)>>;

/// The live connections on this node that take offers.
#[derive(Debug, Default)]
pub struct Handoffs {
    inboxes: Mutex<Inboxes>,
    next_inbox: AtomicU64,
    next_seq: AtomicU64,
}

impl Handoffs {
    /// Registers one live connection of `device`; at most `capacity`
    /// offers wait in it, further ones are refused at once.
    pub fn open(self: &Arc<Self>, device: DeviceId, capacity: usize) -> Inbox {
        let slot = Arc::new(Slot {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity: capacity.max(1),
        });
        let id = self.next_inbox.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(device)
            .or_default()
            .push((id, Arc::clone(&slot)));
        Inbox {
            handoffs: Arc::clone(self),
            device,
            id,
            slot,
        }
    }

    /// A fresh sequence number for a frame about to be offered.
    pub fn next_seq(&self) -> u64 {
        HANDOFF_SEQ_BASE + self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Offers `frame` to the newest live connection of `device` on this
    /// node. `None` when there is none or its inbox is full; otherwise the
    /// receiver is told when the device acknowledged it, and fails when
    /// the connection refused the offer or ended first.
    pub fn offer(
        &self,
        device: DeviceId,
        seq: u64,
        frame: Vec<u8>,
    ) -> Option<oneshot::Receiver<()>> {
        // Pushed under the registry's lock: an inbox being dropped is
        // taken out of the registry first, so nothing lands in it after.
        let inboxes = self.lock();
        let (_, slot) = inboxes.get(&device)?.last()?;
        let mut queue = slot.lock();
        if queue.len() >= slot.capacity {
            return None;
        }
        let (taken, told) = oneshot::channel();
        queue.push_back(Offer { seq, frame, taken });
        drop(queue);
        slot.ready.notify_one();
        Some(told)
    }

    /// How many live connections take offers (for tests and metrics).
    pub fn open_inboxes(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inboxes> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One live connection's offers; unregistered when dropped, and every
/// offer still waiting in it is refused.
#[derive(Debug)]
pub struct Inbox {
    handoffs: Arc<Handoffs>,
    device: DeviceId,
    id: u64,
    slot: Arc<Slot>,
}

impl Inbox {
    /// The next offer (cancel safe: an offer is taken out only when
    /// returned).
    pub async fn recv(&mut self) -> Offer {
        loop {
            if let Some(offer) = self.try_recv() {
                return offer;
            }
            // `notify_one` keeps a permit when nobody waits, so an offer
            // pushed between the look above and this wait is not missed.
            self.slot.ready.notified().await;
        }
    }

    fn try_recv(&mut self) -> Option<Offer> {
        let mut queue = self.slot.lock();
        let offer = queue.pop_front();
        if queue.is_empty() && queue.capacity() > KEPT_ROOM {
            queue.shrink_to(KEPT_ROOM);
        }
        offer
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut inboxes = self.handoffs.lock();
        if let Some(list) = inboxes.get_mut(&self.device) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                inboxes.remove(&self.device);
            }
        }
    }
}

/// The offers a live connection sent and the device has not yet
/// acknowledged.
#[derive(Debug, Default)]
pub struct Offered {
    waiting: HashMap<u64, oneshot::Sender<()>>,
}

impl Offered {
    /// Remembers a sent offer.
    pub fn sent(&mut self, seq: u64, taken: oneshot::Sender<()>) {
        self.waiting.insert(seq, taken);
    }

    /// How many sent offers wait for their acknowledgement.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Forgets the offers whose senders stopped waiting (and stored the
    /// message): a device that never acknowledges them must not fill the
    /// connection's room for offers for good.
    pub fn forget_given_up(&mut self) {
        self.waiting.retain(|_, taken| !taken.is_closed());
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes the handed-off sequence numbers out of `acks`, telling each
    /// offer's sender; what remains is for the store. An acknowledgement
    /// of a frame this connection never sent (or one whose sender gave up)
    /// changes nothing.
    pub fn acknowledge(&mut self, acks: &mut Vec<u64>) {
        acks.retain(|seq| {
            if !is_handoff_seq(*seq) {
                return true;
            }
            if let Some(taken) = self.waiting.remove(seq) {
                // The sender may have given up waiting: it stored the
                // message, which the device then receives again.
                let _ = taken.send(());
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(n: u8) -> DeviceId {
        DeviceId::from_bytes([n; 16])
    }

    #[tokio::test]
    async fn an_offer_reaches_the_newest_connection_and_its_acknowledgement_the_sender() {
        let handoffs = Arc::new(Handoffs::default());
        let mut older = handoffs.open(device(1), 4);
        let mut newer = handoffs.open(device(1), 4);
        let seq = handoffs.next_seq();
        assert!(is_handoff_seq(seq));
        let told = handoffs.offer(device(1), seq, vec![7]).expect("offered");
        let offer = newer.recv().await;
        assert_eq!((offer.seq, offer.frame.as_slice()), (seq, &[7u8][..]));
        assert!(older.try_recv().is_none(), "only one connection gets it");

        let mut offered = Offered::default();
        offered.sent(offer.seq, offer.taken);
        let mut acks = vec![3, seq, seq + 1, 5];
        offered.acknowledge(&mut acks);
        assert_eq!(acks, vec![3, 5], "store acknowledgements stay");
        assert!(offered.is_empty());
        told.await.expect("the sender is told");

        let (given_up, _) = oneshot::channel();
        let (still, _told) = oneshot::channel();
        offered.sent(1 + seq, given_up);
        offered.sent(2 + seq, still);
        offered.forget_given_up();
        assert_eq!(
            offered.len(),
            1,
            "only the offer whose sender waits is kept"
        );
    }

    #[tokio::test]
    async fn a_refused_or_dropped_offer_fails_its_sender() {
        let handoffs = Arc::new(Handoffs::default());
        assert!(
            handoffs.offer(device(2), 1, vec![]).is_none(),
            "nobody live"
        );
        let mut inbox = handoffs.open(device(2), 1);
        let refused = handoffs
            .offer(device(2), handoffs.next_seq(), vec![])
            .expect("room");
        assert!(
            handoffs
                .offer(device(2), handoffs.next_seq(), vec![])
                .is_none(),
            "inbox full"
        );
        drop(inbox.recv().await);
        assert!(refused.await.is_err());

        let waiting = handoffs
            .offer(device(2), handoffs.next_seq(), vec![])
            .expect("room");
        drop(inbox);
        assert!(waiting.await.is_err(), "a closed connection refuses");
        assert_eq!(handoffs.open_inboxes(), 0);
        assert!(handoffs.offer(device(2), 9, vec![]).is_none());
    }
}
