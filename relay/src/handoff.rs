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
//! Three rules keep it from costing more than the store:
//! - **Order.** Once a message is stored for a device, its connections on
//!   this node are told ([`Handoffs::stored`], before the sender's 2xx);
//!   each reads its queue before it takes another offer, so a message
//!   handed off never overtakes one stored before it was posted. (Across
//!   nodes the store's hint travels over the bus and this is not promised.)
//! - **A silent device costs one wait.** When an offer's sender gives up
//!   waiting, that connection takes no more offers until its device
//!   acknowledges something.
//! - **Bounded room.** At most `capacity` frames and [`INBOX_BYTES_MAX`]
//!   bytes wait per connection; a frame is encoded only for a connection
//!   that takes offers; an offer whose sender gave up is not sent.
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

/// One connection's waiting offers and what its senders must know of it.
/// A `VecDeque` rather than a channel: an idle connection's inbox
/// allocates nothing (a bounded tokio channel allocates a block of 32
/// slots at once, about 1.5 KiB per connection), and its room is given
/// back once it runs empty.
#[derive(Debug)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct SlotState {
    queue: VecDeque<Offer>,
    /// Bytes of the frames in `queue`.
    bytes: usize,
    /// The connection ended: nothing more is taken.
    closed: bool,
    /// A message was stored for this device since the connection last
    /// read its queue: the next offer is refused and the queue read, so
    /// that no handed-off message overtakes a stored one.
    stored: bool,
    /// An offer went unacknowledged until its sender gave up: no more are
    /// taken until the device acknowledges something. A connection that
    /// went silent (a phone that lost its network) thus costs one wait,
    /// not one per message.
    stalled: bool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Room kept in an inbox that ran empty; more is given back.
const KEPT_ROOM: usize = 4;

/// Most bytes of frames waiting in one inbox (one frame is always taken
/// into an empty inbox, whatever its size).
pub const INBOX_BYTES_MAX: usize = 1 << 20;

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
    /// offers (and [`INBOX_BYTES_MAX`]) wait in it, further ones are
    /// refused at once.
    pub fn open(self: &Arc<Self>, device: DeviceId, capacity: usize) -> Inbox {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::default()),
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

    /// The newest live connection of `device` on this node, if it takes
    /// offers now; look before encoding a frame for it.
    pub fn target(&self, device: DeviceId) -> Option<Target> {
        let inboxes = self.lock();
        let (_, slot) = inboxes.get(&device)?.last()?;
        let state = slot.lock();
        if state.closed || state.stalled || state.stored || state.queue.len() >= slot.capacity {
            return None;
        }
        drop(state);
        Some(Target {
            slot: Arc::clone(slot),
        })
    }

    /// A fresh sequence number for a frame about to be offered.
    pub fn next_seq(&self) -> u64 {
        HANDOFF_SEQ_BASE + self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Tells every live connection of `device` on this node that a
    /// message was stored for it (after the store committed it, before
    /// the sender is answered): each reads its queue before it takes
    /// another offer.
    pub fn stored(&self, device: DeviceId) {
        let inboxes = self.lock();
        for (_, slot) in inboxes.get(&device).into_iter().flatten() {
            slot.lock().stored = true;
        }
    }

    /// How many live connections take offers (for tests and metrics).
    pub fn open_inboxes(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Inboxes> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A live connection chosen for an offer ([`Handoffs::target`]).
#[derive(Debug)]
pub struct Target {
    slot: Arc<Slot>,
}

impl Target {
    /// Offers `frame`; `None` when the connection ended, stalled, owes a
    /// look or has no room since it was chosen.
    pub fn offer(&self, seq: u64, frame: Vec<u8>) -> Option<Handed> {
        let mut state = self.slot.lock();
        let full = state.queue.len() >= self.slot.capacity
            || (state.bytes > 0 && state.bytes + frame.len() > INBOX_BYTES_MAX);
        if state.closed || state.stalled || state.stored || full {
            return None;
        }
        let (taken, told) = oneshot::channel();
        state.bytes += frame.len();
        state.queue.push_back(Offer { seq, frame, taken });
        drop(state);
        self.slot.ready.notify_one();
        Some(Handed {
            told,
            slot: Arc::clone(&self.slot),
        })
    }
}

/// An offer made, waiting for the device's acknowledgement.
#[derive(Debug)]
pub struct Handed {
    told: oneshot::Receiver<()>,
    slot: Arc<Slot>,
}

impl Handed {
    /// Whether the device acknowledged the frame by `deadline`. `false`
    /// when the connection refused it or ended; when the deadline passed,
    /// the connection also takes no more offers until the device
    /// acknowledges something.
    pub async fn acknowledged(self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.told).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.slot.lock().stalled = true;
                false
            }
        }
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
    /// The next offer whose sender still waits (cancel safe: an offer is
    /// taken out only when returned).
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
        let mut state = self.slot.lock();
        let mut offer = None;
        while let Some(next) = state.queue.pop_front() {
            state.bytes -= next.frame.len();
            // A sender that gave up stored the message: sending it here
            // too would only make a second copy.
            if !next.taken.is_closed() {
                offer = Some(next);
                break;
            }
        }
        if state.queue.is_empty() && state.queue.capacity() > KEPT_ROOM {
            state.queue.shrink_to(KEPT_ROOM);
        }
        offer
    }

    /// Whether a message was stored for the device since the last call:
    /// called before the connection reads its queue (whatever was stored
    /// before is then in what it reads) and before it takes an offer.
    pub fn take_stored(&mut self) -> bool {
        std::mem::take(&mut self.slot.lock().stored)
    }

    /// The device acknowledged something: a connection stalled by an
    /// offer its sender gave up on takes offers again.
    pub fn heard(&mut self) {
        self.slot.lock().stalled = false;
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        {
            let mut inboxes = self.handoffs.lock();
            if let Some(list) = inboxes.get_mut(&self.device) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    inboxes.remove(&self.device);
                }
            }
        }
        // A sender that chose this connection before it left the registry
        // finds it closed; what waits is refused (dropped) here.
        let mut state = self.slot.lock();
        state.closed = true;
        state.bytes = 0;
        let waiting = std::mem::take(&mut state.queue);
        drop(state);
        drop(waiting);
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
    use tokio::time::{Duration, Instant};

    fn device(n: u8) -> DeviceId {
        DeviceId::from_bytes([n; 16])
    }

    fn offer(handoffs: &Handoffs, device: DeviceId, frame: Vec<u8>) -> Option<Handed> {
        handoffs.target(device)?.offer(handoffs.next_seq(), frame)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn an_offer_reaches_the_newest_connection_and_its_acknowledgement_the_sender() {
        let handoffs = Arc::new(Handoffs::default());
        let mut older = handoffs.open(device(1), 4);
        let mut newer = handoffs.open(device(1), 4);
        let handed = offer(&handoffs, device(1), vec![7]).expect("offered");
        let offer = newer.recv().await;
        assert!(is_handoff_seq(offer.seq));
        assert_eq!(offer.frame, vec![7]);
        assert!(older.try_recv().is_none(), "only one connection gets it");

        let mut offered = Offered::default();
        let seq = offer.seq;
        offered.sent(offer.seq, offer.taken);
        let mut acks = vec![3, seq, seq + 1, 5];
        offered.acknowledge(&mut acks);
        assert_eq!(acks, vec![3, 5], "store acknowledgements stay");
        assert!(offered.is_empty());
        assert!(handed.acknowledged(soon()).await, "the sender is told");

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
        assert!(handoffs.target(device(2)).is_none(), "nobody live");
        let mut inbox = handoffs.open(device(2), 1);
        let refused = offer(&handoffs, device(2), vec![]).expect("room");
        assert!(offer(&handoffs, device(2), vec![]).is_none(), "inbox full");
        drop(inbox.recv().await);
        assert!(!refused.acknowledged(soon()).await);

        let target = handoffs.target(device(2)).expect("room again");
        let waiting = target.offer(handoffs.next_seq(), vec![]).expect("room");
        drop(inbox);
        assert!(
            !waiting.acknowledged(soon()).await,
            "a closed connection refuses"
        );
        assert!(
            target.offer(handoffs.next_seq(), vec![]).is_none(),
            "a connection chosen before it closed takes nothing after"
        );
        assert_eq!(handoffs.open_inboxes(), 0);
        assert!(handoffs.target(device(2)).is_none());
    }

    #[tokio::test]
    async fn a_stored_message_is_read_before_the_next_offer_is_taken() {
        let handoffs = Arc::new(Handoffs::default());
        let mut inbox = handoffs.open(device(3), 4);
        let chosen = handoffs.target(device(3)).expect("live");
        handoffs.stored(device(3));
        handoffs.stored(device(4)); // nobody live: nothing to tell
        assert!(handoffs.target(device(3)).is_none());
        assert!(
            chosen.offer(handoffs.next_seq(), vec![]).is_none(),
            "chosen before the store, offered after: refused"
        );
        assert!(inbox.take_stored(), "the connection reads its queue");
        assert!(!inbox.take_stored());
        assert!(offer(&handoffs, device(3), vec![1]).is_some());
    }

    #[tokio::test]
    async fn a_connection_whose_device_does_not_acknowledge_takes_no_more_offers() {
        let handoffs = Arc::new(Handoffs::default());
        let mut inbox = handoffs.open(device(5), 4);
        let handed = offer(&handoffs, device(5), vec![1]).expect("live");
        let unanswered = inbox.recv().await;
        assert!(!handed.acknowledged(Instant::now()).await, "gave up");
        assert!(handoffs.target(device(5)).is_none(), "stalled");
        inbox.heard();
        assert!(offer(&handoffs, device(5), vec![2]).is_some());
        drop(unanswered);
    }

    #[tokio::test]
    async fn an_offer_its_sender_gave_up_on_is_not_sent() {
        let handoffs = Arc::new(Handoffs::default());
        let mut inbox = handoffs.open(device(6), 4);
        drop(offer(&handoffs, device(6), vec![1]).expect("live"));
        let kept = offer(&handoffs, device(6), vec![2]).expect("live");
        assert_eq!(inbox.recv().await.frame, vec![2], "the first is skipped");
        assert!(inbox.try_recv().is_none());
        drop(kept);
    }

    #[test]
    fn an_inbox_holds_at_most_its_bytes_but_always_one_frame() {
        let handoffs = Arc::new(Handoffs::default());
        let mut inbox = handoffs.open(device(7), 8);
        let big = offer(&handoffs, device(7), vec![0; INBOX_BYTES_MAX + 1]);
        assert!(big.is_some(), "an empty inbox takes any one frame");
        assert!(
            offer(&handoffs, device(7), vec![0]).is_none(),
            "over the bytes"
        );
        let first = inbox.try_recv().expect("waiting");
        assert!(offer(&handoffs, device(7), vec![0; 10]).is_some());
        assert!(offer(&handoffs, device(7), vec![0; 10]).is_some());
        drop((first, big));
    }
}
