//! The relay's view of the organisation's rules: a snapshot of users'
//! organisations and departments, the barrier matrices and who may send
//! files, rebuilt by the administration after every change and read
//! without waiting by every relay request. Refusals and message counts go
//! back through a channel to be written to the audit trail and the
//! activity table.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use kontor_relay::service::{Exchange, ReachPolicy, Refusal};
use tokio::sync::mpsc;

use crate::directory::Barriers;

/// What the relay reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// A refusal the policy caused.
    Refused(Refusal),
    /// A new message from a user to others.
    Posted {
        /// Sender's user.
        from: String,
        /// Recipients' users.
        to: Vec<String>,
    },
}

/// One organisation-wide picture of the rules.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// User id to (organisation, department).
    pub users: HashMap<String, (String, Option<String>)>,
    /// Organisation to its barriers.
    pub barriers: HashMap<String, Barriers>,
    /// Users who may not send files.
    pub no_files: HashSet<String>,
}

/// The administration's [`ReachPolicy`].
#[derive(Debug)]
pub struct DirectoryPolicy {
    snapshot: RwLock<Snapshot>,
    events: mpsc::UnboundedSender<PolicyEvent>,
}

impl DirectoryPolicy {
    /// A policy with an empty snapshot, and the receiver of its events.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<PolicyEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            DirectoryPolicy {
                snapshot: RwLock::new(Snapshot::default()),
                events: tx,
            },
            rx,
        )
    }

    /// Replaces the snapshot.
    pub fn replace(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReachPolicy for DirectoryPolicy {
    fn may_exchange(&self, from_user: &str, to_user: &str, what: Exchange) -> bool {
        let snapshot = self.read();
        let (Some((org_a, dept_a)), Some((org_b, dept_b))) =
            (snapshot.users.get(from_user), snapshot.users.get(to_user))
        else {
            // A user the administration does not know (enrolled through a
            // bare provisioning token) is in no department; no barrier
            // applies between two such users, and none lets them into a
            // closed area.
            let known = snapshot
                .users
                .get(from_user)
                .or_else(|| snapshot.users.get(to_user));
            return match known {
                None => true,
                Some((org, dept)) => snapshot
                    .barriers
                    .get(org)
                    .is_none_or(|b| b.allows(dept.as_deref(), None, what)),
            };
        };
        if org_a != org_b {
            return false;
        }
        snapshot
            .barriers
            .get(org_a)
            .is_none_or(|b| b.allows(dept_a.as_deref(), dept_b.as_deref(), what))
    }

    fn may_send_files(&self, user: &str) -> bool {
        !self.read().no_files.contains(user)
    }

    fn refused(&self, refusal: Refusal) {
        let _ = self.events.send(PolicyEvent::Refused(refusal));
    }

    fn posted(&self, from_user: &str, to_users: &[String]) {
        let _ = self.events.send(PolicyEvent::Posted {
            from: from_user.to_owned(),
            to: to_users.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organisations_never_reach_each_other_and_barriers_apply() {
        let (policy, mut events) = DirectoryPolicy::new();
        let mut s = Snapshot::default();
        s.users
            .insert("a@one.org".into(), ("one".into(), Some("hr".into())));
        s.users.insert("b@one.org".into(), ("one".into(), None));
        s.users.insert("c@two.org".into(), ("two".into(), None));
        let mut b = Barriers::default();
        b.departments.insert("hr".into(), true);
        s.barriers.insert("one".into(), b);
        s.no_files.insert("b@one.org".into());
        policy.replace(s);
        assert!(!policy.may_exchange("b@one.org", "c@two.org", Exchange::Message));
        assert!(!policy.may_exchange("a@one.org", "b@one.org", Exchange::Message));
        assert!(!policy.may_exchange("a@one.org", "stranger", Exchange::Message));
        assert!(policy.may_exchange("b@one.org", "stranger", Exchange::Message));
        assert!(policy.may_exchange("x", "y", Exchange::File));
        assert!(!policy.may_send_files("b@one.org"));
        assert!(policy.may_send_files("a@one.org"));
        policy.posted("a@one.org", &["b@one.org".into()]);
        assert!(matches!(events.try_recv(), Ok(PolicyEvent::Posted { .. })));
    }
}
