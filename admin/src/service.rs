//! The administration's core: every admin action, authorised against the
//! caller's role and organisation, written to the audit trail before it
//! takes effect, and made effective at once (relay policy snapshot,
//! provisioning directory, device commands).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kontor_managed_config::{
    EnrollmentToken as McToken, OrgId, Policy, ServerUrl, UserIdentity, android, apple,
};
use kontor_provisioning::service::Service;
use kontor_provisioning::store::{
    self as pstore, CertificateRecord, DirectoryUser, TokenBinding, UserStatus as PStatus,
};
use kontor_provisioning::token::TokenSpec;
use kontor_provisioning::{DeviceId, time::OffsetDateTime};
use kontor_relay::bus::Bus;
use kontor_relay::service::Relay;
use kontor_relay::store::RelayStore;
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, Entry, Filter, NewEntry, Outcome};
use crate::auth::{self, LoginLimiter};
use crate::directory::{
    self, Allowance, ImportRow, LineReport, RestrictionSettings, Scope, User, UserFilter,
    UserStatus,
};
use crate::erasure::UserEraser;
use crate::error::{Error, Result};
use crate::policy::{DirectoryPolicy, PolicyEvent, Snapshot};
use crate::role::{Permission, Role};
use crate::store::{Account, AdminStore, ArchiveRow, UserRow, WipeRow};

/// Password hashes computed at once (19 MiB each), on as many threads.
const HASHING_THREADS: usize = 4;

/// How long message counts are summed in memory before they are written
/// to the activity table (see [`Admin::record_events`]).
pub const ACTIVITY_FLUSH: Duration = Duration::from_secs(1);

/// Settings of the administration.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// The organisation `kontor serve` runs for (created at start).
    pub org_id: String,
    /// Its display name.
    pub org_name: String,
    /// The enrollment URL written into managed configurations and QR codes.
    pub enroll_url: String,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute: Duration,
    /// Invitation tokens expire after this long.
    pub invite_lifetime: Duration,
    /// Failed sign-ins per account or address before a pause.
    pub login_failures_max: u32,
    /// Activity counts are kept this long (data minimisation).
    pub activity_retention: Duration,
    /// Archive requests and their sealed parts are kept this long.
    pub archive_retention: Duration,
    /// Audit entries are kept this long; `None` keeps them for ever. The
    /// oldest go behind a checkpoint the trail verifies from.
    pub audit_retention: Option<Duration>,
    /// The key that seals each organisation's audit pseudonym key at rest
    /// (`kontor serve` passes the deployment's KEK, which seals the CA keys
    /// too). [`AdminConfig::new`] makes a random one, which suits only a
    /// database that lives no longer than the process.
    pub pseudonym_kek: kontor_provisioning::Kek,
    /// The pause.
    pub login_window: Duration,
    /// Most lines in one CSV import.
    pub import_rows_max: usize,
    /// Sign-in attempts (of any outcome) one client address may make per
    /// second, sustained...
    pub sign_in_per_address_per_s: f64,
    /// ... and at once.
    pub sign_in_per_address_burst: u32,
}

impl AdminConfig {
    /// Defaults for an organisation.
    pub fn new(org_id: &str, org_name: &str, enroll_url: &str) -> Self {
        AdminConfig {
            org_id: org_id.to_owned(),
            org_name: org_name.to_owned(),
            enroll_url: enroll_url.to_owned(),
            session_idle: Duration::from_secs(15 * 60),
            session_absolute: Duration::from_secs(8 * 3600),
            invite_lifetime: Duration::from_secs(14 * 24 * 3600),
            login_failures_max: 5,
            activity_retention: Duration::from_secs(400 * 24 * 3600),
            archive_retention: Duration::from_secs(90 * 24 * 3600),
            audit_retention: None,
            pseudonym_kek: {
                let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
                auth::fill_random(&mut bytes[..]);
                kontor_provisioning::Kek::from_bytes(*bytes)
            },
            login_window: Duration::from_secs(15 * 60),
            import_rows_max: 10_000,
            sign_in_per_address_per_s: 1.0,
            sign_in_per_address_burst: 20,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Account id.
    pub account: String,
    /// Sign-in name (the audit trail's actor).
    pub login: String,
    /// Organisation.
    pub org: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token; `None` for API keys.
    pub csrf: Option<String>,
}

impl Principal {
    /// Refuses unless the role allows `permission`.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(Error::Forbidden(permission.as_str()))
        }
    }
}

/// A new session.
#[derive(Debug)]
pub struct SignedIn {
    /// The cookie value (secret).
    pub token: zeroize::Zeroizing<String>,
    /// Who.
    pub principal: Principal,
}

/// An invitation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// User id.
    pub user_id: String,
    /// Display name (defaults to the user id).
    #[serde(default)]
    pub display_name: Option<String>,
    /// Department.
    #[serde(default)]
    pub department: Option<String>,
    /// How many devices the token enrolls (1 to 10, default 1).
    #[serde(default)]
    pub devices: Option<u32>,
}

/// What a bulk operation does.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum BulkAction {
    /// Block.
    Block,
    /// Unblock.
    Unblock,
    /// Move to a department (`null`: none).
    Move {
        /// Target department.
        department: Option<String>,
    },
    /// Set user-level restrictions.
    Restrict {
        /// The settings.
        settings: RestrictionSettings,
    },
    /// Create invitation tokens.
    Invite,
    /// Wipe every device.
    Wipe,
}

impl BulkAction {
    fn permission(&self) -> Permission {
        match self {
            BulkAction::Block | BulkAction::Unblock => Permission::Block,
            BulkAction::Move { .. } | BulkAction::Restrict { .. } => Permission::ManagePolicy,
            BulkAction::Invite => Permission::Invite,
            BulkAction::Wipe => Permission::Wipe,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            BulkAction::Block => "block",
            BulkAction::Unblock => "unblock",
            BulkAction::Move { .. } => "move",
            BulkAction::Restrict { .. } => "restrict",
            BulkAction::Invite => "invite",
            BulkAction::Wipe => "wipe",
        }
    }
}

/// A bulk request: a filter or a selection, an action, and whether only to
/// preview.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// Select by filter...
    #[serde(default)]
    pub filter: Option<UserFilter>,
    /// ...or by user ids.
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// What to do.
    pub operation: BulkAction,
    /// Only say which users it would touch.
    #[serde(default)]
    pub dry_run: bool,
}

/// What happened to one user of a bulk operation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BulkResult {
    /// User.
    pub user_id: String,
    /// `done`, `would_apply` or `failed`.
    pub outcome: &'static str,
    /// Why it failed, or what it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Expired {
    /// Activity count rows (one per user and day).
    pub activity_rows: usize,
    /// Archive requests, with their devices and sealed parts.
    pub archives: usize,
    /// Audit entries, now behind the checkpoint.
    pub audit_entries: u64,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

fn day_of(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms / 1000)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| "1970-01-01".into())
}

/// The administration.
pub struct Admin<P, S, B> {
    prov: Arc<Service<P>>,
    relay: Arc<Relay<S, P, B>>,
    store: AdminStore,
    audit: AuditLog,
    policy: Arc<DirectoryPolicy>,
    limiter: LoginLimiter,
    /// Bounds concurrent argon2 runs (19 MiB each), so a burst of sign-ins
    /// cannot exhaust memory...
    hashing: tokio::sync::Semaphore,
    /// ... on threads of their own, so freed memory is reused.
    hasher: auth::Hasher,
    /// Each organisation's audit pseudonym key, opened once.
    pseudonym_keys: std::sync::Mutex<HashMap<String, zeroize::Zeroizing<[u8; 32]>>>,
    /// Pseudonyms erased since start, which late events (a revocation
    /// reported after the removal) must not map back to the clear id.
    erased: std::sync::Mutex<BTreeSet<String>>,
    /// Other components' erasure of a removed user.
    erasers: Vec<Arc<dyn UserEraser>>,
    config: AdminConfig,
}

impl<P, S, B> std::fmt::Debug for Admin<P, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("org", &self.config.org_id)
            .finish()
    }
}

impl<P, S, B> Admin<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    /// The administration over provisioning, the relay (built with
    /// `policy` as its reach policy), its store and the audit trail.
    /// Creates the configured organisation and loads the policy snapshot.
    pub async fn new(
        prov: Arc<Service<P>>,
        relay: Arc<Relay<S, P, B>>,
        store: AdminStore,
        audit: AuditLog,
        policy: Arc<DirectoryPolicy>,
        config: AdminConfig,
    ) -> Result<Self> {
        store
            .ensure_org(&config.org_id, &config.org_name, now_ms())
            .await?;
        let limiter = LoginLimiter::new(config.login_failures_max, config.login_window)
            .with_attempts_per_address(
                config.sign_in_per_address_per_s,
                config.sign_in_per_address_burst,
            );
        let admin = Admin {
            prov,
            relay,
            store,
            audit,
            policy,
            limiter,
            hashing: tokio::sync::Semaphore::new(HASHING_THREADS),
            hasher: auth::Hasher::new(HASHING_THREADS),
            pseudonym_keys: std::sync::Mutex::new(HashMap::new()),
            erased: std::sync::Mutex::new(BTreeSet::new()),
            erasers: Vec::new(),
            config,
        };
        // Opens (or creates) the organisation's pseudonym key now, so a
        // wrong KEK stops the start instead of the first audited action.
        admin.pseudonym_key(&admin.config.org_id).await?;
        admin.refresh_policy().await?;
        Ok(admin)
    }

    /// Erases a removed user's rows in another component too (the MDM
    /// connector's tables): see [`Admin::remove_user`].
    pub fn with_eraser(mut self, eraser: Arc<dyn UserEraser>) -> Self {
        self.erasers.push(eraser);
        self
    }

    /// The store.
    pub fn store(&self) -> &AdminStore {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &AdminConfig {
        &self.config
    }

    /// Drops what its retention period has passed: activity counts,
    /// archives and, when a retention is set, audit entries (behind a
    /// checkpoint, recorded by an `audit.retention` entry in the same
    /// transaction). A run that dropped counts or archives is recorded as
    /// `retention.expire`.
    pub async fn expire(&self, now_ms: i64) -> Result<Expired> {
        let before_day = day_of(now_ms.saturating_sub(ms(self.config.activity_retention)));
        let archives_before = now_ms.saturating_sub(ms(self.config.archive_retention));
        let (counts, archives) = self
            .store
            .expire(before_day.clone(), archives_before)
            .await?;
        if counts + archives > 0 {
            let detail = serde_json::json!({ "activity_days_before": before_day, "activity_rows": counts, "archives": archives });
            self.write_audit(
                &self.config.org_id,
                "system",
                "retention.expire",
                "-",
                Outcome::Done,
                detail,
            )
            .await?;
        }
        let mut audit_entries = 0;
        if let Some(retention) = self.config.audit_retention {
            let before = now_ms.saturating_sub(ms(retention));
            let (audit, org) = (self.audit.clone(), self.config.org_id.clone());
            let run =
                tokio::task::spawn_blocking(move || audit.expire_before(before, &org, now_ms))
                    .await
                    .map_err(|e| Error::Audit(e.to_string()))??;
            if let Some((checkpoint, deleted, _)) = run {
                tracing::info!(
                    through_seq = checkpoint.through_seq,
                    deleted,
                    "audit entries past their retention deleted"
                );
                audit_entries = deleted;
            }
        }
        Ok(Expired {
            activity_rows: counts,
            archives,
            audit_entries,
        })
    }

    // --- pseudonyms ----------------------------------------------------------

    /// The pseudonym a personal datum (a user id) of `org` goes into the
    /// audit trail under, remembered in the mapping so reads can show the
    /// clear value until the person is erased.
    pub async fn pseudonym(&self, org: &str, clear: &str) -> Result<String> {
        let key = self.pseudonym_key(org).await?;
        let pseudonym = crate::audit::pseudonym(&key, clear);
        let (audit, org, p, clear) = (
            self.audit.clone(),
            org.to_owned(),
            pseudonym.clone(),
            clear.to_owned(),
        );
        tokio::task::spawn_blocking(move || audit.remember(&org, &p, &clear))
            .await
            .map_err(|e| Error::Audit(e.to_string()))??;
        Ok(pseudonym)
    }

    /// The pseudonym of a user named by an event (a device's request, a
    /// relay refusal): remembered only while the user is in the
    /// directory, so an event arriving after erasure does not bring the
    /// clear id back.
    async fn event_pseudonym(&self, org: &str, user: &str) -> Result<String> {
        if user == "-" {
            return Ok(user.to_owned());
        }
        let pseudonym = crate::audit::pseudonym(&*self.pseudonym_key(org).await?, user);
        let erased = self
            .erased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&pseudonym);
        if !erased && self.store.user_anywhere(user).await?.is_some() {
            self.pseudonym(org, user).await
        } else {
            Ok(pseudonym)
        }
    }

    /// Pseudonyms of several users, in order.
    async fn pseudonyms(&self, org: &str, users: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            out.push(self.pseudonym(org, user).await?);
        }
        Ok(out)
    }

    /// `org`'s audit pseudonym key: opened from its sealed form, or made,
    /// sealed under the KEK and stored on first use.
    async fn pseudonym_key(&self, org: &str) -> Result<zeroize::Zeroizing<[u8; 32]>> {
        if let Some(key) = self
            .pseudonym_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org)
        {
            return Ok(key.clone());
        }
        let (audit, kek, org_id) = (
            self.audit.clone(),
            self.config.pseudonym_kek.clone(),
            org.to_owned(),
        );
        let key = tokio::task::spawn_blocking(move || -> Result<zeroize::Zeroizing<[u8; 32]>> {
            let label = format!("audit-pseudonym:{org_id}");
            let sealed = match audit.sealed_key(&org_id)? {
                Some(sealed) => sealed,
                None => {
                    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
                    auth::fill_random(&mut fresh[..]);
                    let sealed = kontor_provisioning::keystore::seal(
                        &kek,
                        &label,
                        &fresh[..],
                        &mut rand::rng(),
                    );
                    audit.keep_sealed_key(&org_id, &sealed, now_ms())?
                }
            };
            let opened =
                kontor_provisioning::keystore::open(&kek, &label, &sealed).map_err(|_| {
                    Error::Audit(
                    "the audit pseudonym key cannot be opened with this KEK (was the KEK changed?)"
                        .into(),
                )
                })?;
            let key: [u8; 32] = opened.as_slice().try_into().map_err(|_| {
                Error::Audit("the stored audit pseudonym key has the wrong length".into())
            })?;
            Ok(zeroize::Zeroizing::new(key))
        })
        .await
        .map_err(|e| Error::Audit(e.to_string()))??;
        self.pseudonym_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(org.to_owned(), key.clone());
        Ok(key)
    }

    /// Writes the policy's events: refusals to the audit trail at once,
    /// message counts to the activity table once per [`ACTIVITY_FLUSH`].
    /// Runs until the policy is dropped, and writes what it counted then.
    ///
    /// The counts are summed in memory between writes: written per batch
    /// of events, they made a second writer on the relay's SQLite file
    /// that committed (and synced) as often as messages came, and the
    /// relay's writer waited for its lock in SQLite's busy handler, in
    /// steps of 1, 2 and 5 ms, before most of its commits under load. A
    /// crash, or a stop of `kontor serve` (which does not wait for this
    /// task), loses at most the last [`ACTIVITY_FLUSH`] of counts: they
    /// are statistics, not messages, and nothing acknowledged is among
    /// them.
    pub async fn record_events(
        self: Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<PolicyEvent>,
    ) {
        let mut open = true;
        while open {
            let Some(first) = events.recv().await else {
                return;
            };
            let flush_at = tokio::time::Instant::now() + ACTIVITY_FLUSH;
            let mut counts: BTreeMap<String, (u32, u32)> = BTreeMap::new();
            let mut next = Some(first);
            while let Some(event) = next.take() {
                match event {
                    PolicyEvent::Posted { from, to } => {
                        let sent = &mut counts.entry(from).or_default().0;
                        *sent = sent.saturating_add(1);
                        for user in to {
                            let received = &mut counts.entry(user).or_default().1;
                            *received = received.saturating_add(1);
                        }
                    }
                    PolicyEvent::Refused(r) => self.record_refusal(r).await,
                }
                // Checked here too: a steady stream of events would keep
                // the receive below ready, and the timeout unpolled.
                if tokio::time::Instant::now() >= flush_at {
                    break;
                }
                match tokio::time::timeout_at(flush_at, events.recv()).await {
                    Ok(Some(event)) => next = Some(event),
                    Ok(None) => open = false,
                    Err(_elapsed) => {}
                }
            }
            if !counts.is_empty() {
                let rows = counts.into_iter().map(|(u, (s, r))| (u, s, r)).collect();
                if let Err(e) = self.store.add_activity(day_of(now_ms()), rows).await {
                    tracing::warn!(error = %e, "activity counts not written");
                }
            }
        }
    }

    /// Writes one refusal the policy caused to the audit trail.
    async fn record_refusal(&self, r: kontor_relay::service::Refusal) {
        let org = self.org_of(&r.from_user).await;
        let written = async {
            let from = self.event_pseudonym(&org, &r.from_user).await?;
            let to = match &r.to_user {
                Some(to) => Some(self.event_pseudonym(&org, to).await?),
                None => None,
            };
            let detail = serde_json::json!({ "what": r.what, "to": to });
            self.write_audit(
                &org,
                &from,
                "relay.refused",
                to.as_deref().unwrap_or("-"),
                Outcome::Refused,
                detail,
            )
            .await
        };
        if let Err(e) = written.await {
            tracing::error!(error = %e, "a refusal was not written to the audit trail");
        }
    }

    /// Writes provisioning's events to the audit trail: every enrollment
    /// and renewal attempt (accepted or refused) and every revocation.
    /// Provisioning acts on devices' requests itself, so these entries
    /// follow the act; admin-initiated revocations are also recorded
    /// before, as the admin action that caused them.
    pub async fn record_provisioning(
        self: Arc<Self>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<
            kontor_provisioning::service::ProvisioningEvent,
        >,
    ) {
        use kontor_provisioning::service::ProvisioningEvent as E;
        while let Some(event) = events.recv().await {
            let written = match event {
                E::Attempt(a) => {
                    if a.outcome == "accepted"
                        && let Some(user) = &a.user_id
                        && let Err(e) = self.adopt(user).await
                    {
                        tracing::error!(error = %e, "an enrolled user was not added to the directory");
                    }
                    let user = a.user_id.clone().unwrap_or_else(|| "-".into());
                    let org = self.org_of(&user).await;
                    let actor = match self.event_pseudonym(&org, &user).await {
                        Ok(actor) => actor,
                        Err(e) => {
                            tracing::error!(error = %e, "a provisioning event was not written to the audit trail");
                            continue;
                        }
                    };
                    let (outcome, action) = if a.outcome == "accepted" {
                        (Outcome::Done, format!("device.{}", a.kind))
                    } else {
                        (Outcome::Refused, format!("device.{}", a.kind))
                    };
                    let detail = serde_json::json!({
                        "outcome": a.outcome, "token": a.token_id, "serial": a.serial,
                    });
                    let target = a.device_id.clone().unwrap_or_else(|| "-".into());
                    self.write_audit(&org, &actor, &action, &target, outcome, detail)
                        .await
                }
                E::Revoked {
                    serial,
                    device,
                    user,
                    reason,
                } => {
                    let org = self.org_of(&user).await;
                    match self.event_pseudonym(&org, &user).await {
                        Ok(user) => {
                            let detail = serde_json::json!({ "serial": serial.to_string(), "user": user, "reason": reason });
                            self.write_audit(
                                &org,
                                "provisioning",
                                "certificate.revoke",
                                &device.to_string(),
                                Outcome::Done,
                                detail,
                            )
                            .await
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            if let Err(e) = written {
                tracing::error!(error = %e, "a provisioning event was not written to the audit trail");
            }
        }
    }

    /// A user who enrolled with a token the administration did not make
    /// (an EMM's allow-list or department token) joins the directory of the
    /// deployment's organisation, so admins see and govern them.
    async fn adopt(&self, user_id: &str) -> Result<()> {
        if self.store.user_anywhere(user_id).await?.is_some() {
            return Ok(());
        }
        let department = self
            .prov
            .store()
            .user(user_id)
            .await?
            .and_then(|u| u.department);
        self.store
            .insert_users(vec![UserRow {
                user_id: user_id.to_owned(),
                org: self.config.org_id.clone(),
                display_name: user_id.to_owned(),
                department,
                status: UserStatus::Active,
                created_at_ms: now_ms(),
            }])
            .await?;
        self.refresh_policy().await
    }

    async fn org_of(&self, user: &str) -> String {
        match self.store.user_anywhere(user).await {
            Ok(Some(u)) => u.org,
            _ => self.config.org_id.clone(),
        }
    }

    // --- audit ---------------------------------------------------------------

    async fn write_audit(
        &self,
        org: &str,
        actor: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<Entry> {
        let audit = self.audit.clone();
        // Names come from requests (a path segment, a login typed at
        // sign-in): recorded as given, but made safe for the trail so bad
        // input is refused as such and never fails the record.
        let entry = NewEntry {
            org: org.to_owned(),
            actor: trail_safe(actor),
            action: action.to_owned(),
            target: trail_safe(target),
            outcome,
            detail,
        };
        tokio::task::spawn_blocking(move || audit.append(entry, now_ms()))
            .await
            .map_err(|e| Error::Audit(e.to_string()))?
            .map_err(Error::from)
    }

    /// Records the request, runs `action`, records how it ended. Nothing
    /// runs when the first record cannot be written.
    async fn act<T>(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        detail: serde_json::Value,
        run: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.write_audit(&p.org, &p.login, action, target, Outcome::Requested, detail)
            .await?;
        let result = run.await;
        let (outcome, detail) = match &result {
            Ok(_) => (Outcome::Done, serde_json::json!({})),
            Err(e) => (
                Outcome::Failed,
                serde_json::json!({ "error": e.code(), "message": self.scrub(e.to_string(), target).await }),
            ),
        };
        if let Err(e) = self
            .write_audit(&p.org, &p.login, action, target, outcome, detail)
            .await
        {
            tracing::error!(error = %e, action, "the outcome of an admin action was not written to the audit trail");
        }
        result
    }

    /// An error message for the trail with the clear values of the
    /// target's pseudonyms replaced by the pseudonyms (a message like
    /// "user anna@… is not on the allow-list" must not keep her id past
    /// erasure).
    async fn scrub(&self, mut message: String, target: &str) -> String {
        let pseudonyms: Vec<String> = target
            .split(',')
            .filter(|p| crate::audit::is_pseudonym(p))
            .map(str::to_owned)
            .collect();
        if pseudonyms.is_empty() {
            return message;
        }
        let audit = self.audit.clone();
        let names = tokio::task::spawn_blocking(move || audit.names_of(&pseudonyms))
            .await
            .ok()
            .and_then(|names| names.ok())
            .unwrap_or_default();
        for (pseudonym, clear) in names {
            message = message.replace(&clear, &pseudonym);
        }
        message
    }

    /// The audit trail of the caller's organisation.
    pub async fn audit_entries(&self, p: &Principal, mut filter: Filter) -> Result<Vec<Entry>> {
        self.require(p, Permission::ReadAudit).await?;
        filter.org = Some(p.org.clone());
        filter
            .validate()
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let audit = self.audit.clone();
        let entries = tokio::task::spawn_blocking(move || audit.query(&filter))
            .await
            .map_err(|e| Error::Audit(e.to_string()))??;
        Ok(entries)
    }

    /// The clear values of the pseudonyms in `entries` (of the caller's
    /// organisation) that are not erased.
    pub async fn audit_names(&self, entries: Vec<Entry>) -> Result<crate::audit::Names> {
        let audit = self.audit.clone();
        Ok(tokio::task::spawn_blocking(move || audit.names(&entries))
            .await
            .map_err(|e| Error::Audit(e.to_string()))??)
    }

    /// Refuses unless the caller's role allows `permission`; a refusal is
    /// recorded in the audit trail.
    async fn require(&self, p: &Principal, permission: Permission) -> Result<()> {
        let refused = p.require(permission);
        if refused.is_err() {
            self.write_audit(
                &p.org,
                &p.login,
                "access.refused",
                permission.as_str(),
                Outcome::Refused,
                serde_json::json!({ "role": p.role.as_str() }),
            )
            .await?;
        }
        refused
    }

    // --- sign-in -------------------------------------------------------------

    /// Signs in with a password (and a TOTP code when the account has one).
    /// Every failure answers the same, is counted and audited.
    pub async fn sign_in(
        &self,
        login: &str,
        password: &str,
        totp: Option<&str>,
        client: &str,
    ) -> Result<SignedIn> {
        self.limiter.check(login, client)?;
        let account = self.store.account_by_login(login).await?;
        let password_ok = {
            let hash = account.as_ref().map_or_else(
                || auth::dummy_hash().to_owned(),
                |a| a.password_hash.clone(),
            );
            let password = zeroize::Zeroizing::new(password.to_owned());
            let _permit = self
                .hashing
                .acquire()
                .await
                .map_err(|_| Error::Store("password hashing stopped".into()))?;
            self.hasher
                .run(move || auth::verify_password(&password, &hash))
                .await
                .unwrap_or(false)
        };
        let refuse = |reason: &'static str| async move {
            self.limiter.failed(login, client);
            let org = account_org(&self.config, None);
            let _ = self
                .write_audit(
                    &org,
                    login,
                    "session.sign_in",
                    login,
                    Outcome::Refused,
                    serde_json::json!({ "reason": reason, "client": client }),
                )
                .await;
            Err(Error::Unauthenticated("wrong name, password or code"))
        };
        let Some(account) = account.filter(|_| password_ok) else {
            return refuse("password").await;
        };
        if account.disabled_at_ms.is_some() {
            return refuse("disabled").await;
        }
        if let Some(secret) = &account.totp_secret {
            let now_s = u64::try_from(now_ms() / 1000).unwrap_or(0);
            let step = totp.and_then(|code| auth::check_totp(secret, code, now_s));
            let Some(step) = step else {
                return refuse("totp").await;
            };
            if !self
                .store
                .use_totp_step(&account.id, i64::try_from(step).unwrap_or(i64::MAX))
                .await?
            {
                return refuse("totp reused").await;
            }
        }
        self.limiter.succeeded(login);
        let token = auth::new_secret();
        let csrf = auth::new_secret();
        let principal = Principal {
            account: account.id.clone(),
            login: account.login.clone(),
            org: account.org.clone(),
            role: account.role,
            csrf: Some(csrf.to_string()),
        };
        self.write_audit(
            &account.org,
            &account.login,
            "session.sign_in",
            &account.login,
            Outcome::Done,
            serde_json::json!({ "client": client }),
        )
        .await?;
        self.store
            .insert_session(auth::secret_hash(&token), &account.id, &csrf, now_ms())
            .await?;
        Ok(SignedIn { token, principal })
    }

    /// The principal of a session cookie, if the session is live and its
    /// account enabled.
    pub async fn session(&self, token: &str) -> Result<Principal> {
        let hash = auth::secret_hash(token);
        let Some((account, csrf)) = self
            .store
            .touch_session(
                hash,
                now_ms(),
                ms(self.config.session_idle),
                ms(self.config.session_absolute),
            )
            .await?
        else {
            return Err(Error::Unauthenticated(
                "session expired or unknown; sign in",
            ));
        };
        let account = self.live_account(&account).await?;
        Ok(Principal {
            account: account.id,
            login: account.login,
            org: account.org,
            role: account.role,
            csrf: Some(csrf),
        })
    }

    /// Ends a session.
    pub async fn sign_out(&self, p: &Principal, token: &str) -> Result<()> {
        self.store.delete_session(auth::secret_hash(token)).await?;
        self.write_audit(
            &p.org,
            &p.login,
            "session.sign_out",
            &p.login,
            Outcome::Done,
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    /// The principal of an API key (`kak_<id>_<secret>`).
    pub async fn api_key(&self, key: &str) -> Result<Principal> {
        let (id, secret) =
            auth::parse_api_key(key).ok_or(Error::Unauthenticated("malformed API key"))?;
        let Some((account, stored)) = self.store.api_key(id).await? else {
            return Err(Error::Unauthenticated("unknown or revoked API key"));
        };
        if !auth::hashes_equal(&auth::secret_hash(secret), &stored) {
            return Err(Error::Unauthenticated("unknown or revoked API key"));
        }
        let account = self.live_account(&account).await?;
        Ok(Principal {
            account: account.id,
            login: account.login,
            org: account.org,
            role: account.role,
            csrf: None,
        })
    }

    async fn live_account(&self, id: &str) -> Result<Account> {
        match self.store.account(id).await? {
            Some(a) if a.disabled_at_ms.is_none() => Ok(a),
            _ => Err(Error::Unauthenticated("account disabled")),
        }
    }

    // --- accounts --------------------------------------------------------------

    /// Creates an admin account in the caller's organisation.
    pub async fn create_account(
        &self,
        p: &Principal,
        login: &str,
        password: &str,
        role: Role,
    ) -> Result<Account> {
        self.require(p, Permission::ManageAdmins).await?;
        directory::check_name("login", login)?;
        auth::check_password(password)?;
        let password = zeroize::Zeroizing::new(password.to_owned());
        let hash = {
            let _permit = self
                .hashing
                .acquire()
                .await
                .map_err(|_| Error::Store("password hashing stopped".into()))?;
            self.hasher
                .run(move || auth::hash_password(&password))
                .await
                .ok_or_else(|| Error::Store("password hashing stopped".into()))??
        };
        let account = Account {
            id: auth::new_id(8),
            org: p.org.clone(),
            login: login.to_owned(),
            role,
            password_hash: hash,
            totp_secret: None,
            totp_last_step: None,
            disabled_at_ms: None,
            created_at_ms: now_ms(),
        };
        let detail = serde_json::json!({ "role": role.as_str() });
        self.act(p, "account.create", login, detail, async {
            self.store.insert_account(&account).await
        })
        .await?;
        Ok(account)
    }

    /// The caller's organisation's accounts.
    pub async fn accounts(&self, p: &Principal) -> Result<Vec<serde_json::Value>> {
        self.require(p, Permission::ManageAdmins).await?;
        Ok(self
            .store
            .accounts(&p.org)
            .await?
            .into_iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id, "login": a.login, "role": a.role.as_str(),
                    "totp": a.totp_secret.is_some(), "disabled_at_ms": a.disabled_at_ms,
                    "created_at_ms": a.created_at_ms,
                })
            })
            .collect())
    }

    async fn account_in_org(&self, p: &Principal, id: &str) -> Result<Account> {
        match self.store.account(id).await? {
            Some(a) if a.org == p.org => Ok(a),
            _ => Err(Error::NotFound(format!("account {id}"))),
        }
    }

    /// Disables an account: its sessions and API keys end at once.
    pub async fn disable_account(&self, p: &Principal, id: &str) -> Result<()> {
        self.require(p, Permission::ManageAdmins).await?;
        let account = self.account_in_org(p, id).await?;
        if account.id == p.account {
            return Err(Error::Conflict(
                "you cannot disable your own account".into(),
            ));
        }
        self.act(
            p,
            "account.disable",
            &account.login,
            serde_json::json!({}),
            async {
                self.store.disable_account(&account.id, now_ms()).await?;
                Ok(())
            },
        )
        .await
    }

    /// Turns on TOTP for the caller; returns the secret (base32) and an
    /// `otpauth://` URI for an authenticator app. Sign-ins need a code from
    /// then on.
    pub async fn enable_totp(&self, p: &Principal) -> Result<serde_json::Value> {
        let mut secret = zeroize::Zeroizing::new([0u8; 20]);
        auth::fill_random(&mut secret[..]);
        let b32 = auth::base32(&secret[..]);
        self.act(
            p,
            "account.totp_enable",
            &p.login,
            serde_json::json!({}),
            async { self.store.set_totp(&p.account, Some(secret.to_vec())).await },
        )
        .await?;
        Ok(serde_json::json!({
            "secret": b32,
            "uri": format!("otpauth://totp/Kontor:{}?secret={b32}&issuer=Kontor&algorithm=SHA1&digits=6&period=30", p.login),
        }))
    }

    /// Creates an API key for an account of the caller's organisation; the
    /// key is shown once.
    pub async fn create_api_key(
        &self,
        p: &Principal,
        account: &str,
        label: &str,
    ) -> Result<serde_json::Value> {
        self.require(p, Permission::ManageAdmins).await?;
        directory::check_name("label", label)?;
        let account = self.account_in_org(p, account).await?;
        if account.disabled_at_ms.is_some() {
            return Err(Error::Conflict(format!(
                "account {} is disabled",
                account.login
            )));
        }
        let id = auth::new_id(8);
        let secret = auth::new_secret();
        let detail = serde_json::json!({ "key": id, "label": label });
        self.act(p, "api_key.create", &account.login, detail, async {
            self.store
                .insert_api_key(
                    &id,
                    &account.id,
                    auth::secret_hash(&secret),
                    label,
                    now_ms(),
                )
                .await
        })
        .await?;
        Ok(serde_json::json!({
            "id": id,
            "key": format!("kak_{id}_{}", secret.as_str()),
            "account": account.login,
            "role": account.role.as_str(),
        }))
    }

    /// The API keys of the caller's organisation (never their secrets).
    pub async fn api_keys(&self, p: &Principal) -> Result<Vec<serde_json::Value>> {
        self.require(p, Permission::ManageAdmins).await?;
        self.store.api_keys(&p.org).await
    }

    /// Revokes an API key.
    pub async fn revoke_api_key(&self, p: &Principal, id: &str) -> Result<()> {
        self.require(p, Permission::ManageAdmins).await?;
        self.act(p, "api_key.revoke", id, serde_json::json!({}), async {
            if self.store.revoke_api_key(&p.org, id, now_ms()).await? {
                Ok(())
            } else {
                Err(Error::NotFound(format!("API key {id}")))
            }
        })
        .await
    }

    // --- users -----------------------------------------------------------------

    async fn current_certs(&self, user_id: &str) -> Result<Vec<CertificateRecord>> {
        let now_s = now_ms() / 1000;
        let deny = self.prov.deny_list();
        let mut newest: HashMap<DeviceId, CertificateRecord> = HashMap::new();
        for cert in self.prov.store().certificates_of_user(user_id).await? {
            if cert.not_after <= now_s || deny.contains(&cert.serial) {
                continue;
            }
            match newest.get(&cert.device_id) {
                Some(c) if c.issued_at >= cert.issued_at => {}
                _ => {
                    newest.insert(cert.device_id, cert);
                }
            }
        }
        let mut out = Vec::new();
        for (device, cert) in newest {
            let wiped = self
                .relay
                .store()
                .device_state(device)
                .await?
                .is_some_and(|s| s.wiped_at_ms.is_some());
            if !wiped {
                out.push(cert);
            }
        }
        out.sort_by_key(|c| c.issued_at);
        Ok(out)
    }

    async fn view(&self, row: &UserRow) -> Result<User> {
        let certs = self.current_certs(&row.user_id).await?;
        let mut last_seen = None;
        for cert in &certs {
            if let Some(state) = self.relay.store().device_state(cert.device_id).await? {
                last_seen = last_seen.max(state.last_seen_ms);
            }
        }
        let mut platforms: Vec<String> = certs.iter().map(|c| c.platform.clone()).collect();
        platforms.sort();
        platforms.dedup();
        let status = match row.status {
            UserStatus::Blocked => UserStatus::Blocked,
            _ if !certs.is_empty() => UserStatus::Active,
            other => other,
        };
        Ok(User {
            user_id: row.user_id.clone(),
            display_name: row.display_name.clone(),
            department: row.department.clone(),
            status,
            created_at_ms: row.created_at_ms,
            last_seen_ms: last_seen,
            platforms,
            devices: certs.len(),
        })
    }

    async fn user_row(&self, p: &Principal, user_id: &str) -> Result<UserRow> {
        self.store
            .user(&p.org, user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id}")))
    }

    /// Users of the caller's organisation matching a filter.
    pub async fn users(&self, p: &Principal, filter: &UserFilter) -> Result<Vec<User>> {
        self.require(p, Permission::ReadDirectory).await?;
        filter.validate()?;
        let now = now_ms();
        let mut out = Vec::new();
        for row in self.store.users(&p.org).await? {
            let user = self.view(&row).await?;
            if filter.matches(&user, now) {
                out.push(user);
            }
        }
        Ok(out)
    }

    /// One user with devices, activity and effective restrictions.
    pub async fn user(&self, p: &Principal, user_id: &str) -> Result<serde_json::Value> {
        self.require(p, Permission::ReadDirectory).await?;
        let row = self.user_row(p, user_id).await?;
        let user = self.view(&row).await?;
        let mut devices = Vec::new();
        for cert in self.current_certs(user_id).await? {
            let state = self.relay.store().device_state(cert.device_id).await?;
            devices.push(serde_json::json!({
                "device_id": cert.device_id.to_string(),
                "platform": cert.platform,
                "name": cert.device_name,
                "enrolled_at": cert.issued_at,
                "certificate_serial": cert.serial.to_string(),
                "certificate_expires": cert.not_after,
                "last_seen_ms": state.as_ref().and_then(|s| s.last_seen_ms),
            }));
        }
        let activity: Vec<serde_json::Value> = self
            .store
            .activity(user_id)
            .await?
            .into_iter()
            .map(|(day, sent, received)| serde_json::json!({ "day": day, "sent": sent, "received": received }))
            .collect();
        let restrictions = self.effective_for(&p.org, &row).await?;
        Ok(serde_json::json!({
            "user": user,
            "devices": devices,
            "activity": activity,
            "restrictions": directory::restriction_keys(&restrictions),
        }))
    }

    /// Every personal datum Kontor's server holds about a user, as JSON
    /// (DSGVO Art. 15 and 20): the directory entry (administration and
    /// enrollment), user-level restrictions and allow-list entry,
    /// invitation tokens and enrollment attempts (naming the user, their
    /// devices, serials or tokens), every device and certificate ever
    /// issued, device state, commands to their devices, group memberships,
    /// the counts of every relay row erasure would delete (queued
    /// messages, message ids sent, attachments and grants), what each
    /// registered [`UserEraser`] holds (the MDM connector's device
    /// mappings and commands, SCIM's attributes), activity counts, wipes,
    /// archive requests naming them and their devices, and every audit
    /// entry by, about or naming them, pseudonyms resolved.
    /// Message content is not there: the server never holds it. The export
    /// itself is audited.
    pub async fn export_user(&self, p: &Principal, user_id: &str) -> Result<serde_json::Value> {
        self.require(p, Permission::RemoveUser).await?;
        let row = self.user_row(p, user_id).await?;
        let pseudonym = self.pseudonym(&p.org, user_id).await?;
        self.write_audit(
            &p.org,
            &p.login,
            "user.export",
            &pseudonym,
            Outcome::Done,
            serde_json::json!({}),
        )
        .await?;
        let mut certificates = Vec::new();
        let mut devices = Vec::new();
        let mut commands = Vec::new();
        let user_certs = self.prov.store().certificates_of_user(user_id).await?;
        let mut device_ids: Vec<DeviceId> = user_certs.iter().map(|c| c.device_id).collect();
        device_ids.sort_by_key(|d| d.to_string());
        device_ids.dedup();
        for device in &device_ids {
            for c in self.relay.store().commands_of_device(*device).await? {
                commands.push(serde_json::json!({
                    "device_id": device.to_string(), "id": c.id, "kind": c.kind, "payload": c.payload,
                    "created_at_ms": c.created_at_ms, "delivered_at_ms": c.delivered_at_ms,
                    "acked_at_ms": c.acked_at_ms, "receipt": c.receipt,
                }));
            }
        }
        // What the relay's erasure would delete, counted by its own
        // statements: queued messages, message ids sent, attachments and
        // grants the lists above do not show one by one.
        let rows = self.relay.store().user_rows(user_id, &device_ids).await?;
        let relay_rows = serde_json::json!({
            "device_states": rows.devices, "queued_messages": rows.queued,
            "message_bodies_only_for_them": rows.bodies, "sent_message_ids": rows.seen,
            "attachments_uploaded": rows.blobs, "attachment_grants": rows.grants,
            "commands": rows.commands, "group_memberships": rows.memberships,
            "groups_only_they_are_in": rows.groups_deleted,
            "groups_they_created": rows.groups_creator_cleared,
        });
        let mut others = serde_json::Map::new();
        for eraser in &self.erasers {
            let held = eraser.export_user(&p.org, user_id, &device_ids).await?;
            others.insert(eraser.name().to_owned(), held);
        }
        for cert in user_certs {
            certificates.push(serde_json::json!({
                "serial": cert.serial.to_string(), "device_id": cert.device_id.to_string(),
                "platform": cert.platform, "device_name": cert.device_name,
                "issued_at": cert.issued_at, "not_before": cert.not_before, "not_after": cert.not_after,
                "identity_key": hex::encode(cert.identity_key), "token_id": cert.token_id,
                "revoked": self.prov.deny_list().contains(&cert.serial),
            }));
            if let Some(state) = self.relay.store().device_state(cert.device_id).await? {
                let push = match &state.push {
                    Some(kontor_relay::store::PushTarget::Apns(_)) => Some("apns"),
                    Some(kontor_relay::store::PushTarget::Fcm(_)) => Some("fcm"),
                    None => None,
                };
                devices.push(serde_json::json!({
                    "device_id": cert.device_id.to_string(), "last_seen_ms": state.last_seen_ms,
                    "wiped_at_ms": state.wiped_at_ms, "push_service": push,
                }));
            }
        }
        let groups: Vec<serde_json::Value> = self
            .relay
            .store()
            .groups_of_user(user_id)
            .await?
            .into_iter()
            .map(|g| serde_json::json!({ "group": hex::encode(g.id), "name": g.name, "members": g.members.len() }))
            .collect();
        let activity: Vec<serde_json::Value> = self
            .store
            .activity(user_id)
            .await?
            .into_iter()
            .map(|(day, sent, received)| serde_json::json!({ "day": day, "sent": sent, "received": received }))
            .collect();
        let wipes: Vec<serde_json::Value> = self
            .store
            .wipes(&p.org)
            .await?
            .into_iter()
            .filter(|w| w.user_id == user_id)
            .map(|w| serde_json::json!({ "device": w.device, "requested_by": w.requested_by, "requested_at_ms": w.requested_at_ms }))
            .collect();
        let mut archives = Vec::new();
        for id in self.store.archive_ids(&p.org).await? {
            if let Some((a, _)) = self.store.archive(&p.org, &id).await?
                && a.users.iter().any(|u| u == user_id)
            {
                archives.push(serde_json::json!({ "id": a.id, "from_ms": a.from_ms, "to_ms": a.to_ms, "requested_by": a.requested_by }));
            }
        }
        let mut archive_devices = Vec::new();
        for id in self.store.archive_ids(&p.org).await? {
            if let Some((a, devices)) = self.store.archive(&p.org, &id).await? {
                for (device, user, command) in devices {
                    if user == user_id {
                        archive_devices.push(serde_json::json!({ "archive": a.id, "device": device, "command": command }));
                    }
                }
            }
        }
        let tokens: Vec<_> = self
            .prov
            .list_tokens()
            .await?
            .into_iter()
            .filter(|t| t.binding == "user" && t.bound_to == user_id)
            .collect();
        // Attempts naming the user, one of their devices, serials or
        // tokens: what provisioning's erasure deletes.
        let named: BTreeSet<String> = device_ids
            .iter()
            .map(|d| d.to_string())
            .chain(
                certificates
                    .iter()
                    .filter_map(|c| c["serial"].as_str().map(str::to_owned)),
            )
            .chain(tokens.iter().map(|t| t.id.clone()))
            .collect();
        let names = |v: &Option<String>| v.as_ref().is_some_and(|v| named.contains(v));
        let attempts: Vec<serde_json::Value> = self
            .prov
            .store()
            .attempts()
            .await?
            .into_iter()
            .filter(|a| {
                a.user_id.as_deref() == Some(user_id)
                    || names(&a.device_id)
                    || names(&a.serial)
                    || names(&a.token_id)
            })
            .map(|a| {
                serde_json::json!({
                    "at": a.at, "kind": a.kind, "outcome": a.outcome, "token_id": a.token_id,
                    "device_id": a.device_id, "serial": a.serial,
                })
            })
            .collect();
        let directory_entry = self.prov.store().user(user_id).await?.map(|u| {
            serde_json::json!({ "department": u.department, "status": format!("{:?}", u.status).to_lowercase() })
        });
        let user_restrictions: Vec<serde_json::Value> = self
            .store
            .restrictions(&p.org)
            .await?
            .into_iter()
            .filter(|(scope, id, _)| *scope == Scope::User && id == user_id)
            .map(|(_, _, settings)| serde_json::to_value(settings).unwrap_or_default())
            .collect();
        let on_allow_list = self
            .store
            .allow_list(&p.org)
            .await?
            .iter()
            .any(|e| e == user_id);
        // Entries by or about the user, in clear (before pseudonyms) or
        // under the pseudonym, with the pseudonyms resolved.
        let (log, org, clear) = (self.audit.clone(), p.org.clone(), user_id.to_owned());
        let audit = tokio::task::spawn_blocking(move || -> crate::audit::Result<_> {
            let entries = log.concerning(&org, &clear, &pseudonym)?;
            let names = log.names(&entries)?;
            Ok(entries
                .iter()
                .map(|e| {
                    serde_json::from_str::<serde_json::Value>(&crate::audit::json_line_named(
                        e, &names,
                    ))
                    .unwrap_or_default()
                })
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| Error::Audit(e.to_string()))??;
        let restrictions = self.effective_for(&p.org, &row).await?;
        Ok(serde_json::json!({
            "user": {
                "user_id": row.user_id, "display_name": row.display_name, "department": row.department,
                "status": row.status, "created_at_ms": row.created_at_ms, "organisation": row.org,
            },
            "effective_restrictions": directory::restriction_keys(&restrictions),
            "user_restrictions": user_restrictions,
            "on_allow_list": on_allow_list,
            "enrollment_directory": directory_entry,
            "enrollment_tokens": tokens.iter().map(|t| serde_json::to_value(t).unwrap_or_default()).collect::<Vec<_>>(),
            "enrollment_attempts": attempts,
            "certificates": certificates,
            "devices": devices,
            "groups": groups,
            "device_commands": commands,
            "relay_rows": relay_rows,
            "other_components": others,
            "activity": activity,
            "wipes": wipes,
            "archive_requests": archives,
            "archive_devices": archive_devices,
            "audit_entries": audit,
            "not_held": "message and file contents (end-to-end encrypted; the server has no keys), contacts, phone numbers",
        }))
    }

    /// A user's message counts per day.
    pub async fn activity(&self, p: &Principal, user_id: &str) -> Result<serde_json::Value> {
        self.require(p, Permission::ReadDirectory).await?;
        self.user_row(p, user_id).await?;
        let days: Vec<serde_json::Value> = self
            .store
            .activity(user_id)
            .await?
            .into_iter()
            .map(|(day, sent, received)| serde_json::json!({ "day": day, "sent": sent, "received": received }))
            .collect();
        Ok(serde_json::json!({ "user_id": user_id, "days": days }))
    }

    async fn check_admitted(
        &self,
        org: &str,
        user_id: &str,
        department: Option<&str>,
    ) -> Result<()> {
        let list = self.store.allow_list(org).await?;
        if !list.is_empty()
            && !list
                .iter()
                .any(|e| directory::allow_list_admits(e, user_id, department))
        {
            return Err(Error::Invalid(format!(
                "user {user_id} is not on the allow-list"
            )));
        }
        Ok(())
    }

    async fn check_department(&self, org: &str, department: Option<&str>) -> Result<()> {
        if let Some(d) = department
            && !self.store.barriers(org).await?.departments.contains_key(d)
        {
            return Err(Error::Invalid(format!("unknown department {d:?}")));
        }
        Ok(())
    }

    async fn mirror(&self, user_id: &str, department: Option<&str>, blocked: bool) -> Result<()> {
        self.prov
            .store()
            .put_user(&DirectoryUser {
                user_id: user_id.to_owned(),
                department: department.map(str::to_owned),
                status: if blocked {
                    PStatus::Blocked
                } else {
                    PStatus::Active
                },
            })
            .await?;
        Ok(())
    }

    /// Records an outside call (an EMM's request, a webhook, an outbound
    /// MDM command) in the audit trail under the caller's name.
    pub async fn record(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.write_audit(&p.org, &p.login, action, target, outcome, detail)
            .await
            .map(|_| ())
    }

    /// Creates a user without an invitation (directory sync: SCIM, CSV).
    pub async fn create_user(
        &self,
        p: &Principal,
        user_id: &str,
        display_name: &str,
        department: Option<&str>,
    ) -> Result<User> {
        self.require(p, Permission::Invite).await?;
        directory::check_user_id(user_id)?;
        directory::check_name("display name", display_name)?;
        if self.store.user_anywhere(user_id).await?.is_some() {
            return Err(Error::Conflict(format!("user {user_id} exists")));
        }
        self.check_department(&p.org, department).await?;
        self.check_admitted(&p.org, user_id, department).await?;
        let row = UserRow {
            user_id: user_id.to_owned(),
            org: p.org.clone(),
            display_name: display_name.to_owned(),
            department: department.map(str::to_owned),
            status: UserStatus::Invited,
            created_at_ms: now_ms(),
        };
        let detail = serde_json::json!({ "department": department });
        let target = self.pseudonym(&p.org, user_id).await?;
        self.act(p, "user.create", &target, detail, async {
            self.store.insert_users(vec![row.clone()]).await?;
            self.mirror(user_id, department, false).await?;
            self.refresh_policy().await
        })
        .await?;
        self.view(&row).await
    }

    /// Changes a user's display name.
    pub async fn rename_user(
        &self,
        p: &Principal,
        user_id: &str,
        display_name: &str,
    ) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        directory::check_name("display name", display_name)?;
        self.user_row(p, user_id).await?;
        let target = self.pseudonym(&p.org, user_id).await?;
        self.act(p, "user.rename", &target, serde_json::json!({}), async {
            self.store
                .rename_user(&p.org, user_id, display_name)
                .await?;
            Ok(())
        })
        .await
    }

    /// A user as the directory shows them (status, devices, last seen).
    pub async fn user_view(&self, p: &Principal, user_id: &str) -> Result<User> {
        self.require(p, Permission::ReadDirectory).await?;
        let row = self.user_row(p, user_id).await?;
        self.view(&row).await
    }

    /// The current devices of a user: (device id, platform, token id the
    /// device enrolled with).
    pub async fn user_devices(
        &self,
        p: &Principal,
        user_id: &str,
    ) -> Result<Vec<(DeviceId, String, Option<String>)>> {
        self.require(p, Permission::ReadDirectory).await?;
        self.user_row(p, user_id).await?;
        Ok(self
            .current_certs(user_id)
            .await?
            .into_iter()
            .map(|c| (c.device_id, c.platform, c.token_id))
            .collect())
    }

    /// A bulk enrollment token for a department: any user of it may enroll
    /// up to `uses` devices with it.
    pub async fn department_token(
        &self,
        p: &Principal,
        department: &str,
        uses: u32,
    ) -> Result<(String, String)> {
        self.require(p, Permission::Invite).await?;
        if !(1..=100_000).contains(&uses) {
            return Err(Error::Invalid("uses must be 1 to 100000".into()));
        }
        if !self
            .store
            .barriers(&p.org)
            .await?
            .departments
            .contains_key(department)
        {
            return Err(Error::NotFound(format!("department {department}")));
        }
        let detail = serde_json::json!({ "uses": uses });
        self.act(p, "department.token", department, detail, async {
            let spec = TokenSpec {
                binding: TokenBinding::Department(department.to_owned()),
                max_uses: uses,
                lifetime_seconds: i64::try_from(self.config.invite_lifetime.as_secs())
                    .unwrap_or(i64::MAX),
                label: format!("bulk token for {department}"),
            };
            let (token, info) = self
                .prov
                .create_token(&spec, OffsetDateTime::now_utc())
                .await?;
            Ok((token.expose_secret().to_owned(), info.id))
        })
        .await
    }

    /// The user a current device belongs to (in the caller's organisation).
    pub async fn device_owner(&self, p: &Principal, device: &str) -> Result<String> {
        self.require(p, Permission::ReadDirectory).await?;
        Ok(self.device_user(p, device).await?.1.user_id)
    }

    /// The effective restrictions of a user.
    pub async fn effective_restrictions(
        &self,
        p: &Principal,
        user_id: &str,
    ) -> Result<kontor_managed_config::Restrictions> {
        self.require(p, Permission::ReadDirectory).await?;
        let row = self.user_row(p, user_id).await?;
        self.effective_for(&p.org, &row).await
    }

    /// Invites a user (creating them if new): an enrollment token bound to
    /// them, a ready managed configuration for iOS and Android, and a QR
    /// code.
    pub async fn invite(&self, p: &Principal, req: &InviteRequest) -> Result<serde_json::Value> {
        self.require(p, Permission::Invite).await?;
        directory::check_user_id(&req.user_id)?;
        let display_name = req
            .display_name
            .clone()
            .unwrap_or_else(|| req.user_id.clone());
        directory::check_name("display name", &display_name)?;
        if let Some(d) = &req.department {
            directory::check_name("department", d)?;
        }
        let devices = req.devices.unwrap_or(1);
        if !(1..=10).contains(&devices) {
            return Err(Error::Invalid("devices must be 1 to 10".into()));
        }
        let existing = self.store.user_anywhere(&req.user_id).await?;
        let department = match &existing {
            Some(u) if u.org != p.org => {
                return Err(Error::Conflict(format!("user id {} is taken", req.user_id)));
            }
            Some(u) if u.status == UserStatus::Blocked => {
                return Err(Error::Conflict(format!(
                    "user {} is blocked; unblock first",
                    req.user_id
                )));
            }
            Some(u) => u.department.clone(),
            None => req.department.clone(),
        };
        self.check_department(&p.org, department.as_deref()).await?;
        self.check_admitted(&p.org, &req.user_id, department.as_deref())
            .await?;
        let detail = serde_json::json!({ "department": department, "devices": devices });
        let target = self.pseudonym(&p.org, &req.user_id).await?;
        self.act(p, "user.invite", &target, detail, async {
            if existing.is_none() {
                self.store
                    .insert_users(vec![UserRow {
                        user_id: req.user_id.clone(),
                        org: p.org.clone(),
                        display_name: display_name.clone(),
                        department: department.clone(),
                        status: UserStatus::Invited,
                        created_at_ms: now_ms(),
                    }])
                    .await?;
            }
            self.mirror(&req.user_id, department.as_deref(), false)
                .await?;
            self.refresh_policy().await?;
            self.invitation(&p.org, &req.user_id, department.as_deref(), devices)
                .await
        })
        .await
    }

    async fn invitation(
        &self,
        org: &str,
        user_id: &str,
        department: Option<&str>,
        devices: u32,
    ) -> Result<serde_json::Value> {
        let spec = TokenSpec {
            binding: TokenBinding::User(user_id.to_owned()),
            max_uses: devices,
            lifetime_seconds: i64::try_from(self.config.invite_lifetime.as_secs())
                .unwrap_or(i64::MAX),
            label: format!("invitation for {user_id}"),
        };
        let (token, info) = self
            .prov
            .create_token(&spec, OffsetDateTime::now_utc())
            .await?;
        let bad = |e: kontor_managed_config::Error| Error::Invalid(e.to_string());
        let mut policy = Policy::new(
            ServerUrl::parse(&self.config.enroll_url).map_err(bad)?,
            OrgId::parse(org).map_err(bad)?,
        );
        policy.enrollment_token = Some(McToken::parse(token.expose_secret()).map_err(bad)?);
        policy.user_identity = Some(UserIdentity::parse(user_id).map_err(bad)?);
        if let Some(d) = department {
            policy.department = Some(kontor_managed_config::Department::parse(d).map_err(bad)?);
        }
        if let Some(row) = self.store.user(org, user_id).await? {
            policy.restrictions = self.effective_for(org, &row).await?;
        }
        let qr_svg = token.qr_svg(&self.config.enroll_url)?;
        Ok(serde_json::json!({
            "user_id": user_id,
            "token": token.expose_secret(),
            "token_id": info.id,
            "expires_at": info.expires_at,
            "max_uses": info.max_uses,
            "managed_config": {
                "apple_plist": apple::configuration_plist(&policy).map_err(bad)?,
                "android_json": android::bundle_json(&policy).map_err(bad)?,
            },
            "qr_svg": qr_svg,
        }))
    }

    async fn rows_of(&self, p: &Principal, users: &[String]) -> Result<Vec<UserRow>> {
        let mut rows = Vec::new();
        let mut unknown = Vec::new();
        for user in users {
            match self.store.user(&p.org, user).await? {
                Some(r) => rows.push(r),
                None => unknown.push(user.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::NotFound(format!("users {}", unknown.join(", "))));
        }
        Ok(rows)
    }

    /// Blocks or unblocks users, all or none: their connections are refused
    /// and their queued messages held from the next request on.
    pub async fn set_blocked(&self, p: &Principal, users: &[String], blocked: bool) -> Result<()> {
        self.require(p, Permission::Block).await?;
        let rows = self.rows_of(p, users).await?;
        let action = if blocked {
            "user.block"
        } else {
            "user.unblock"
        };
        let target = self.pseudonyms(&p.org, users).await?.join(",");
        self.act(
            p,
            action,
            &target,
            serde_json::json!({ "users": users.len() }),
            async {
                let changes = rows
                    .iter()
                    .map(|r| {
                        let status = if blocked {
                            UserStatus::Blocked
                        } else {
                            UserStatus::Active
                        };
                        (r.user_id.clone(), status, r.department.clone())
                    })
                    .collect();
                self.store.update_users(&p.org, changes).await?;
                for r in &rows {
                    self.mirror(&r.user_id, r.department.as_deref(), blocked)
                        .await?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Moves users to a department (or none), all or none; the new
    /// barriers and restrictions apply at once.
    pub async fn move_users(
        &self,
        p: &Principal,
        users: &[String],
        department: Option<&str>,
    ) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        let rows = self.rows_of(p, users).await?;
        self.check_department(&p.org, department).await?;
        let detail = serde_json::json!({ "department": department });
        let target = self.pseudonyms(&p.org, users).await?.join(",");
        self.act(p, "user.move", &target, detail, async {
            let changes = rows
                .iter()
                .map(|r| (r.user_id.clone(), r.status, department.map(str::to_owned)))
                .collect();
            self.store.update_users(&p.org, changes).await?;
            for r in &rows {
                self.mirror(&r.user_id, department, r.status == UserStatus::Blocked)
                    .await?;
            }
            self.refresh_policy().await?;
            self.push_policy(&p.org, users).await
        })
        .await
    }

    /// Removes and erases a user (DSGVO Art. 17). First they are refused
    /// everywhere: blocked, every certificate revoked (the deny-list at
    /// once, the CRL next) and their invitations revoked. Then everything
    /// held about them goes: the relay's rows of the user and their
    /// devices (device state and push tokens, queued messages, message ids
    /// sent, attachments and grants, commands, group memberships), every
    /// registered [`UserEraser`]'s (the MDM connector's and SCIM's),
    /// provisioning's (certificate records, tokens bound to them,
    /// enrollment attempts, directory and allow-list entries), the audit
    /// trail's mapping from their pseudonym to the clear id, and last the
    /// administration's own rows (directory entry, activity counts, user
    /// restrictions, allow-list entry, wipe records). The trail keeps what
    /// was done under `pseudonym:<hex>` only, with a `user.erase` entry
    /// counting the rows each store deleted.
    ///
    /// Every step is idempotent, and the steps that need to know the
    /// user's devices run before provisioning's erasure deletes that list,
    /// and the directory entry (the handle a retry needs) goes last: a
    /// removal that failed half-way is retried and finishes.
    pub async fn remove_user(&self, p: &Principal, user_id: &str) -> Result<()> {
        self.require(p, Permission::RemoveUser).await?;
        let row = self.user_row(p, user_id).await?;
        let target = self.pseudonym(&p.org, user_id).await?;
        self.act(p, "user.remove", &target, serde_json::json!({}), async {
            // Refused from now on, whatever follows.
            self.mirror(user_id, None, true).await?;
            let now = OffsetDateTime::now_utc();
            match self.prov.revoke_user(user_id, "removed", now).await {
                Ok(_) | Err(kontor_provisioning::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            for token in self.prov.list_tokens().await? {
                if token.binding == "user"
                    && token.bound_to == user_id
                    && token.revoked_at.is_none()
                {
                    self.prov.revoke_token(&token.id, now).await?;
                }
            }
            // Then erased, store by store.
            let mut devices: Vec<DeviceId> = self
                .prov
                .store()
                .certificates_of_user(user_id)
                .await?
                .into_iter()
                .map(|c| c.device_id)
                .collect();
            devices.sort_by_key(|d| d.to_string());
            devices.dedup();
            let relay = self.relay.store().erase_user(user_id, &devices).await?;
            let mut others = serde_json::Map::new();
            for eraser in &self.erasers {
                let n = eraser.erase_user(&row.org, user_id, &devices).await?;
                others.insert(eraser.name().to_owned(), n.into());
            }
            let provisioning = self.prov.erase_user(user_id, "removed", now).await?;
            let detail = serde_json::json!({
                "devices": devices.len(),
                "relay": {
                    "devices": relay.devices, "queued": relay.queued, "bodies": relay.bodies,
                    "seen": relay.seen, "blobs": relay.blobs, "grants": relay.grants,
                    "commands": relay.commands, "memberships": relay.memberships,
                    "groups_deleted": relay.groups_deleted,
                    "groups_creator_cleared": relay.groups_creator_cleared,
                },
                "provisioning": {
                    "certificates": provisioning.certificates, "tokens": provisioning.tokens,
                    "attempts": provisioning.attempts, "directory": provisioning.directory,
                    "allow_list": provisioning.allow_list,
                },
                "others": others,
            });
            self.write_audit(
                &row.org,
                &p.login,
                "user.erase",
                &target,
                Outcome::Done,
                detail,
            )
            .await?;
            // Erasure (DSGVO Art. 17): the trail keeps what was done, under
            // the pseudonym only; its mapping to the clear id goes before
            // the directory entry does, so a retry still finds the user.
            self.erased
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(target.clone());
            let (audit, org, user) = (self.audit.clone(), row.org.clone(), user_id.to_owned());
            let pseudonyms = vec![target.clone()];
            tokio::task::spawn_blocking(move || audit.forget(&org, &user, &pseudonyms))
                .await
                .map_err(|e| Error::Audit(e.to_string()))??;
            self.store.erase_user(&row.org, user_id).await?;
            self.refresh_policy().await
        })
        .await
    }

    // --- CSV import and bulk operations ------------------------------------------

    /// Imports users from CSV: every line is checked first; with `dry_run`
    /// nothing is written, otherwise every accepted line is created in one
    /// transaction. The report names each refused line and why.
    pub async fn import(
        &self,
        p: &Principal,
        csv: &[u8],
        dry_run: bool,
    ) -> Result<serde_json::Value> {
        self.require(p, Permission::ManagePolicy).await?;
        let (rows, mut report) = directory::parse_import(csv, self.config.import_rows_max)?;
        let departments = self.store.barriers(&p.org).await?.departments;
        let mut accepted: Vec<ImportRow> = Vec::new();
        for row in rows {
            let refuse = |reason: String| LineReport {
                line: row.line,
                user_id: Some(row.user_id.clone()),
                outcome: "refused",
                reason: Some(reason),
            };
            if let Some(d) = &row.department
                && !departments.contains_key(d)
            {
                report.push(refuse(format!("unknown department {d:?}")));
                continue;
            }
            if self.store.user_anywhere(&row.user_id).await?.is_some() {
                report.push(refuse(format!("user {} exists", row.user_id)));
                continue;
            }
            if let Err(e) = self
                .check_admitted(&p.org, &row.user_id, row.department.as_deref())
                .await
            {
                report.push(refuse(e.to_string()));
                continue;
            }
            accepted.push(row);
        }
        let outcome = if dry_run { "would_create" } else { "created" };
        for row in &accepted {
            report.push(LineReport {
                line: row.line,
                user_id: Some(row.user_id.clone()),
                outcome,
                reason: None,
            });
        }
        report.sort_by_key(|r| r.line);
        let refused = report.iter().filter(|r| r.outcome == "refused").count();
        if !dry_run && !accepted.is_empty() {
            let detail = serde_json::json!({ "created": accepted.len(), "refused": refused });
            self.act(p, "user.import", "-", detail, async {
                let now = now_ms();
                self.store
                    .insert_users(
                        accepted
                            .iter()
                            .map(|r| UserRow {
                                user_id: r.user_id.clone(),
                                org: p.org.clone(),
                                display_name: r.display_name.clone(),
                                department: r.department.clone(),
                                status: UserStatus::Invited,
                                created_at_ms: now,
                            })
                            .collect(),
                    )
                    .await?;
                for r in &accepted {
                    self.mirror(&r.user_id, r.department.as_deref(), false)
                        .await?;
                }
                self.refresh_policy().await
            })
            .await?;
        }
        Ok(serde_json::json!({
            "dry_run": dry_run,
            "accepted": accepted.len(),
            "refused": refused,
            "lines": report,
        }))
    }

    /// Applies an action to a filtered set or a selection. Block, unblock
    /// and move apply to all or none; restrict, invite and wipe report
    /// each user's outcome.
    pub async fn bulk(&self, p: &Principal, req: &BulkRequest) -> Result<serde_json::Value> {
        self.require(p, Permission::ReadDirectory).await?;
        self.require(p, req.operation.permission()).await?;
        let users: Vec<String> = match (&req.filter, &req.users) {
            (Some(filter), None) => self
                .users(p, filter)
                .await?
                .into_iter()
                .map(|u| u.user_id)
                .collect(),
            (None, Some(users)) => {
                if users.is_empty() || users.len() > 10_000 {
                    return Err(Error::Invalid("select 1 to 10000 users".into()));
                }
                let unique: BTreeSet<&String> = users.iter().collect();
                self.rows_of(p, users).await?;
                unique.into_iter().cloned().collect()
            }
            _ => {
                return Err(Error::Invalid(
                    "give either a filter or a list of users".into(),
                ));
            }
        };
        if let BulkAction::Move { department } = &req.operation {
            self.check_department(&p.org, department.as_deref()).await?;
        }
        if let BulkAction::Restrict { settings } = &req.operation {
            settings.validate()?;
        }
        if req.dry_run || users.is_empty() {
            return Ok(serde_json::json!({
                "dry_run": req.dry_run, "action": req.operation.name(),
                "count": users.len(), "users": users,
            }));
        }
        let results: Vec<BulkResult> = match &req.operation {
            BulkAction::Block | BulkAction::Unblock => {
                self.set_blocked(p, &users, req.operation == BulkAction::Block)
                    .await?;
                done_all(&users)
            }
            BulkAction::Move { department } => {
                self.move_users(p, &users, department.as_deref()).await?;
                done_all(&users)
            }
            BulkAction::Restrict { settings } => {
                let mut out = Vec::new();
                for user in &users {
                    let r = self
                        .set_restrictions(p, Scope::User, user, Some(settings.clone()))
                        .await;
                    out.push(result_of(user, r.map(|_| None)));
                }
                out
            }
            BulkAction::Invite => {
                let mut out = Vec::new();
                for user in &users {
                    let req = InviteRequest {
                        user_id: user.clone(),
                        display_name: None,
                        department: None,
                        devices: None,
                    };
                    let r = self.invite(p, &req).await.map(|mut v| {
                        // The QR code is large; the token is what a bulk caller hands on.
                        if let Some(o) = v.as_object_mut() {
                            o.remove("qr_svg");
                        }
                        Some(v)
                    });
                    out.push(result_of(user, r));
                }
                out
            }
            BulkAction::Wipe => {
                let mut out = Vec::new();
                for user in &users {
                    let r = self.wipe_user(p, user, false).await.map(Some);
                    out.push(result_of(user, r));
                }
                out
            }
        };
        let failed = results.iter().filter(|r| r.outcome == "failed").count();
        Ok(serde_json::json!({
            "dry_run": false, "action": req.operation.name(),
            "count": users.len(), "failed": failed, "results": results,
        }))
    }

    // --- departments, barriers, allow-list, restrictions ---------------------------

    /// Departments and barrier matrix.
    pub async fn barriers(&self, p: &Principal) -> Result<serde_json::Value> {
        self.require(p, Permission::ReadDirectory).await?;
        let b = self.store.barriers(&p.org).await?;
        let departments: Vec<serde_json::Value> = b
            .departments
            .iter()
            .map(|(name, closed)| serde_json::json!({ "name": name, "closed": closed }))
            .collect();
        let matrix: Vec<serde_json::Value> = b
            .matrix
            .iter()
            .map(|((a, c), allow)| {
                serde_json::json!({ "a": a, "b": c, "messages": allow.messages, "groups": allow.groups, "files": allow.files })
            })
            .collect();
        Ok(serde_json::json!({ "departments": departments, "matrix": matrix }))
    }

    /// Creates or changes a department.
    pub async fn put_department(&self, p: &Principal, name: &str, closed: bool) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        directory::check_name("department", name)?;
        if name.starts_with("department:") {
            return Err(Error::Invalid(
                "a department name cannot start with department:".into(),
            ));
        }
        self.act(
            p,
            "department.put",
            name,
            serde_json::json!({ "closed": closed }),
            async {
                self.store.put_department(&p.org, name, closed).await?;
                self.refresh_policy().await
            },
        )
        .await
    }

    /// Deletes an empty department.
    pub async fn delete_department(&self, p: &Principal, name: &str) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        self.act(p, "department.delete", name, serde_json::json!({}), async {
            if !self.store.delete_department(&p.org, name).await? {
                return Err(Error::NotFound(format!("department {name}")));
            }
            self.refresh_policy().await
        })
        .await
    }

    /// Sets what two departments (or one and "no department", `""`) may
    /// exchange.
    pub async fn put_barrier(
        &self,
        p: &Principal,
        a: &str,
        b: &str,
        allow: Allowance,
    ) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        let known = self.store.barriers(&p.org).await?.departments;
        for d in [a, b] {
            if !d.is_empty() && !known.contains_key(d) {
                return Err(Error::NotFound(format!("department {d}")));
            }
        }
        if a == b {
            return Err(Error::Invalid(
                "a barrier is between two different departments".into(),
            ));
        }
        let detail = serde_json::to_value(allow).map_err(|e| Error::Store(e.to_string()))?;
        self.act(p, "barrier.put", &format!("{a}|{b}"), detail, async {
            self.store.put_barrier(&p.org, a, b, allow).await?;
            self.refresh_policy().await
        })
        .await
    }

    /// The allow-list.
    pub async fn allow_list(&self, p: &Principal) -> Result<Vec<String>> {
        self.require(p, Permission::ReadDirectory).await?;
        self.store.allow_list(&p.org).await
    }

    /// Adds or removes an allow-list entry. While the list has entries,
    /// nobody it does not admit can be invited or imported, and an entry's
    /// removal revokes the open invitations of users no longer admitted.
    pub async fn set_allow_list_entry(
        &self,
        p: &Principal,
        entry: &str,
        present: bool,
    ) -> Result<()> {
        self.require(p, Permission::ManagePolicy).await?;
        directory::check_allow_list_entry(entry)?;
        let action = if present {
            "allow_list.add"
        } else {
            "allow_list.remove"
        };
        // A user id on the list is a personal datum; a domain or a
        // department is not.
        let target = if entry.starts_with('@') || entry.starts_with("department:") {
            entry.to_owned()
        } else {
            self.pseudonym(&p.org, entry).await?
        };
        self.act(p, action, &target, serde_json::json!({}), async {
            let changed = self
                .store
                .set_allow_list_entry(&p.org, entry, present)
                .await?;
            if !present && !changed {
                return Err(Error::NotFound(format!("allow-list entry {entry}")));
            }
            // Provisioning's allow-list (for allow-list enrollment tokens)
            // belongs to the deployment's own organisation, whose CA it is.
            let own = p.org == self.config.org_id;
            if present {
                if own {
                    self.prov.store().add_allow_list_entry(entry).await?;
                }
                return Ok(());
            }
            if own {
                self.prov.store().remove_allow_list_entry(entry).await?;
            }
            let now = OffsetDateTime::now_utc();
            for token in self.prov.list_tokens().await? {
                if token.binding != "user" || token.revoked_at.is_some() {
                    continue;
                }
                if let Some(u) = self.store.user(&p.org, &token.bound_to).await?
                    && self
                        .check_admitted(&p.org, &u.user_id, u.department.as_deref())
                        .await
                        .is_err()
                {
                    self.prov.revoke_token(&token.id, now).await?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Every restriction setting of the organisation.
    pub async fn restrictions(&self, p: &Principal) -> Result<serde_json::Value> {
        self.require(p, Permission::ReadDirectory).await?;
        let rows: Vec<serde_json::Value> = self
            .store
            .restrictions(&p.org)
            .await?
            .into_iter()
            .map(|(scope, id, settings)| serde_json::json!({ "scope": scope, "id": id, "settings": settings }))
            .collect();
        Ok(serde_json::json!({ "restrictions": rows }))
    }

    /// Sets (or clears) restrictions at a scope, pushes the new effective
    /// policy to every affected device at once, and tells the relay.
    pub async fn set_restrictions(
        &self,
        p: &Principal,
        scope: Scope,
        id: &str,
        settings: Option<RestrictionSettings>,
    ) -> Result<usize> {
        self.require(p, Permission::ManagePolicy).await?;
        if let Some(s) = &settings {
            s.validate()?;
        }
        let affected: Vec<String> = match scope {
            Scope::Org => {
                if id != p.org {
                    return Err(Error::NotFound(format!("organisation {id}")));
                }
                self.store
                    .users(&p.org)
                    .await?
                    .into_iter()
                    .map(|u| u.user_id)
                    .collect()
            }
            Scope::Department => {
                if !self
                    .store
                    .barriers(&p.org)
                    .await?
                    .departments
                    .contains_key(id)
                {
                    return Err(Error::NotFound(format!("department {id}")));
                }
                self.store
                    .users(&p.org)
                    .await?
                    .into_iter()
                    .filter(|u| u.department.as_deref() == Some(id))
                    .map(|u| u.user_id)
                    .collect()
            }
            Scope::Group => self.group_members(p, id).await?,
            Scope::User => vec![self.user_row(p, id).await?.user_id],
        };
        let detail = serde_json::json!({ "scope": scope, "settings": settings });
        // A user's restrictions name the user by pseudonym (the detail says
        // the scope); other scopes keep `scope:id`.
        let target = match scope {
            Scope::User => self.pseudonym(&p.org, id).await?,
            _ => format!("{}:{id}", scope.as_str()),
        };
        self.act(p, "restrictions.set", &target, detail, async {
            self.store
                .set_restrictions(&p.org, scope, id, settings.as_ref())
                .await?;
            self.refresh_policy().await?;
            self.push_policy(&p.org, &affected).await?;
            Ok(affected.len())
        })
        .await
    }

    /// Members of a chat group, if every member is in the caller's
    /// organisation (a group is only as visible as its members).
    async fn group_members(&self, p: &Principal, id: &str) -> Result<Vec<String>> {
        let not_found = || Error::NotFound(format!("group {id}"));
        let bytes: [u8; 16] = hex::decode(id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(not_found)?;
        let group = self
            .relay
            .store()
            .group(bytes)
            .await?
            .ok_or_else(not_found)?;
        let mut members = Vec::new();
        for m in group.members {
            if self.store.user(&p.org, &m.user_id).await?.is_none() {
                return Err(not_found());
            }
            members.push(m.user_id);
        }
        Ok(members)
    }

    async fn effective_for(
        &self,
        org: &str,
        row: &UserRow,
    ) -> Result<kontor_managed_config::Restrictions> {
        let all = self.store.restrictions(org).await?;
        let groups: BTreeSet<String> = if all.iter().any(|(s, _, _)| *s == Scope::Group) {
            self.relay
                .store()
                .groups_of_user(&row.user_id)
                .await?
                .into_iter()
                .map(|g| hex::encode(g.id))
                .collect()
        } else {
            BTreeSet::new()
        };
        let applicable = all.iter().filter_map(|(scope, id, s)| {
            let applies = match scope {
                Scope::Org => id == org,
                Scope::Department => row.department.as_deref() == Some(id.as_str()),
                Scope::Group => groups.contains(id),
                Scope::User => *id == row.user_id,
            };
            applies.then_some(s)
        });
        Ok(directory::effective(applicable))
    }

    /// Queues the effective restrictions as a policy command to every
    /// current device of `users`.
    async fn push_policy(&self, org: &str, users: &[String]) -> Result<()> {
        for user in users {
            let Some(row) = self.store.user(org, user).await? else {
                continue;
            };
            let keys = directory::restriction_keys(&self.effective_for(org, &row).await?);
            for cert in self.current_certs(user).await? {
                self.relay
                    .queue_command(cert.device_id, "policy", &keys)
                    .await?;
            }
        }
        Ok(())
    }

    /// Rebuilds the relay's snapshot from the directory.
    pub async fn refresh_policy(&self) -> Result<()> {
        let mut snapshot = Snapshot::default();
        let rows = self.store.all_users().await?;
        for org in self.store.orgs().await? {
            snapshot
                .barriers
                .insert(org.clone(), self.store.barriers(&org).await?);
        }
        for row in &rows {
            snapshot.users.insert(
                row.user_id.clone(),
                (row.org.clone(), row.department.clone()),
            );
            if self
                .effective_for(&row.org, row)
                .await?
                .attachments
                .is_empty()
            {
                snapshot.no_files.insert(row.user_id.clone());
            }
        }
        self.policy.replace(snapshot);
        Ok(())
    }

    // --- broadcast -----------------------------------------------------------------

    /// Sends an admin message to every device of the organisation, or of
    /// one department, as a system message.
    pub async fn broadcast(
        &self,
        p: &Principal,
        text: &str,
        department: Option<&str>,
    ) -> Result<usize> {
        self.require(p, Permission::Broadcast).await?;
        let n = text.chars().count();
        if n == 0 || n > 4000 || text.trim().is_empty() {
            return Err(Error::Invalid(
                "broadcast text must be 1 to 4000 characters".into(),
            ));
        }
        if let Some(d) = department
            && !self
                .store
                .barriers(&p.org)
                .await?
                .departments
                .contains_key(d)
        {
            return Err(Error::NotFound(format!("department {d}")));
        }
        let scope = department.map_or_else(|| "all".to_owned(), |d| format!("department:{d}"));
        let users: Vec<UserRow> = self
            .store
            .users(&p.org)
            .await?
            .into_iter()
            .filter(|u| department.is_none() || u.department.as_deref() == department)
            .collect();
        let detail = serde_json::json!({ "scope": scope, "characters": n });
        self.act(p, "broadcast.send", &scope, detail, async {
            let sent_at = now_ms();
            let payload =
                serde_json::json!({ "text": text, "sent_at_ms": sent_at, "scope": scope });
            let mut devices = 0;
            for u in &users {
                for cert in self.current_certs(&u.user_id).await? {
                    self.relay
                        .queue_command(cert.device_id, "broadcast", &payload)
                        .await?;
                    devices += 1;
                }
            }
            self.store
                .insert_broadcast(&p.org, &p.login, &scope, devices, sent_at)
                .await?;
            Ok(devices)
        })
        .await
    }

    // --- wipe --------------------------------------------------------------------------

    async fn device_user(&self, p: &Principal, device: &str) -> Result<(DeviceId, UserRow)> {
        let not_found = || Error::NotFound(format!("device {device}"));
        let id = DeviceId::from_hex(device).ok_or_else(not_found)?;
        let cert = self
            .prov
            .store()
            .certificates_of_device(&id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(not_found)?;
        let row = self
            .store
            .user(&p.org, &cert.user_id)
            .await?
            .ok_or_else(not_found)?;
        Ok((id, row))
    }

    async fn wipe_one(
        &self,
        p: &Principal,
        device: DeviceId,
        user: &str,
        revoke_now: bool,
    ) -> Result<i64> {
        let command = self.relay.wipe_device(device, "admin").await?;
        if revoke_now {
            match self
                .prov
                .revoke_device(&device, "wipe requested", OffsetDateTime::now_utc())
                .await
            {
                Ok(_) | Err(kontor_provisioning::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.store
            .insert_wipe(WipeRow {
                id: 0,
                org: p.org.clone(),
                user_id: user.to_owned(),
                device: device.to_string(),
                command_id: i64::try_from(command).unwrap_or(i64::MAX),
                requested_by: p.login.clone(),
                requested_at_ms: now_ms(),
            })
            .await
    }

    /// Wipes one device: its queue is dropped and a wipe command queued;
    /// its certificate is revoked when the device confirms, or at once with
    /// `revoke_now` (for a device that must not connect again, which then
    /// never receives the command).
    pub async fn wipe_device(
        &self,
        p: &Principal,
        device: &str,
        revoke_now: bool,
    ) -> Result<serde_json::Value> {
        self.require(p, Permission::Wipe).await?;
        let (id, row) = self.device_user(p, device).await?;
        let user = self.pseudonym(&p.org, &row.user_id).await?;
        let detail = serde_json::json!({ "user": user, "revoke_now": revoke_now });
        let wipe = self
            .act(
                p,
                "device.wipe",
                device,
                detail,
                self.wipe_one(p, id, &row.user_id, revoke_now),
            )
            .await?;
        Ok(serde_json::json!({ "wipe": wipe, "device": device, "state": "requested" }))
    }

    /// Wipes every current device of a user.
    pub async fn wipe_user(
        &self,
        p: &Principal,
        user_id: &str,
        revoke_now: bool,
    ) -> Result<serde_json::Value> {
        self.require(p, Permission::Wipe).await?;
        self.user_row(p, user_id).await?;
        let certs = self.current_certs(user_id).await?;
        if certs.is_empty() {
            return Err(Error::NotFound(format!("a current device of {user_id}")));
        }
        let detail = serde_json::json!({ "devices": certs.len(), "revoke_now": revoke_now });
        let wipes = self
            .act(
                p,
                "user.wipe",
                &self.pseudonym(&p.org, user_id).await?,
                detail,
                async {
                    let mut out = Vec::new();
                    for cert in &certs {
                        out.push(
                            self.wipe_one(p, cert.device_id, user_id, revoke_now)
                                .await?,
                        );
                    }
                    Ok(out)
                },
            )
            .await?;
        Ok(serde_json::json!({ "wipes": wipes, "devices": certs.len(), "state": "requested" }))
    }

    /// Every wipe of the organisation with its state: `requested`,
    /// `delivered` (the device fetched the command) or `confirmed` (its
    /// receipt arrived).
    pub async fn wipes(&self, p: &Principal) -> Result<Vec<serde_json::Value>> {
        self.require(p, Permission::Wipe).await?;
        let mut out = Vec::new();
        for w in self.store.wipes(&p.org).await? {
            let command = match DeviceId::from_hex(&w.device) {
                Some(d) => self
                    .relay
                    .store()
                    .commands_of_device(d)
                    .await?
                    .into_iter()
                    .find(|c| i64::try_from(c.id).ok() == Some(w.command_id)),
                None => None,
            };
            let (state, delivered, confirmed) = match &command {
                Some(c) if c.acked_at_ms.is_some() => {
                    ("confirmed", c.delivered_at_ms, c.acked_at_ms)
                }
                Some(c) if c.delivered_at_ms.is_some() => ("delivered", c.delivered_at_ms, None),
                _ => ("requested", None, None),
            };
            out.push(serde_json::json!({
                "id": w.id, "user_id": w.user_id, "device": w.device, "state": state,
                "requested_by": w.requested_by, "requested_at_ms": w.requested_at_ms,
                "delivered_at_ms": delivered, "confirmed_at_ms": confirmed,
            }));
        }
        Ok(out)
    }

    // --- archive -----------------------------------------------------------------------

    /// Sets the organisation's archive public key (X25519, 64 hex digits);
    /// its private half stays with the archivists, never on the server.
    pub async fn set_archive_key(&self, p: &Principal, key_hex: &str) -> Result<()> {
        self.require(p, Permission::ManageAdmins).await?;
        let key = key_hex.trim().to_ascii_lowercase();
        if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) || key == "0".repeat(64) {
            return Err(Error::Invalid(
                "archive key must be an X25519 public key as 64 hex digits (kontor archive keygen)"
                    .into(),
            ));
        }
        self.act(
            p,
            "archive.set_key",
            &p.org,
            serde_json::json!({ "key": key }),
            async { self.store.set_archive_key(&p.org, &key).await },
        )
        .await
    }

    /// Asks every current device of `users` to export its chats of
    /// [from_ms, to_ms), sealed to the archive key.
    pub async fn request_archive(
        &self,
        p: &Principal,
        users: &[String],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<serde_json::Value> {
        self.require(p, Permission::Archive).await?;
        if users.is_empty() || users.len() > 1000 {
            return Err(Error::Invalid("name 1 to 1000 users".into()));
        }
        if from_ms < 0 || from_ms >= to_ms {
            return Err(Error::Invalid("the range must have from_ms < to_ms".into()));
        }
        self.rows_of(p, users).await?;
        let key = self
            .store
            .archive_key(&p.org)
            .await?
            .ok_or_else(|| Error::Conflict("no archive key set for the organisation".into()))?;
        let id = auth::new_id(16);
        let detail = serde_json::json!({ "users": self.pseudonyms(&p.org, users).await?, "from_ms": from_ms, "to_ms": to_ms });
        self.act(p, "archive.request", &id, detail, async {
            let payload = serde_json::json!({ "request": id, "from_ms": from_ms, "to_ms": to_ms, "archive_key": key });
            let mut devices = Vec::new();
            for user in users {
                for cert in self.current_certs(user).await? {
                    let command = self.relay.queue_command(cert.device_id, "archive", &payload).await?;
                    devices.push((cert.device_id.to_string(), user.clone(), i64::try_from(command).unwrap_or(i64::MAX)));
                }
            }
            let count = devices.len();
            self.store
                .insert_archive(
                    ArchiveRow {
                        id: id.clone(),
                        org: p.org.clone(),
                        requested_by: p.login.clone(),
                        users: users.to_vec(),
                        from_ms,
                        to_ms,
                        created_at_ms: now_ms(),
                    },
                    devices,
                )
                .await?;
            Ok(serde_json::json!({ "id": id, "devices": count }))
        })
        .await
    }

    /// The archive requests of the organisation.
    pub async fn archives(&self, p: &Principal) -> Result<Vec<serde_json::Value>> {
        self.require(p, Permission::Archive).await?;
        let mut out = Vec::new();
        for id in self.store.archive_ids(&p.org).await? {
            out.push(self.archive(p, &id).await?);
        }
        Ok(out)
    }

    /// An archive request with each device's state (`requested`,
    /// `delivered`, `exported`, `refused`) and its parts; parts a device
    /// reported are collected from the relay's attachment store.
    pub async fn archive(&self, p: &Principal, id: &str) -> Result<serde_json::Value> {
        self.require(p, Permission::Archive).await?;
        let (row, devices) = self
            .store
            .archive(&p.org, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("archive {id}")))?;
        let mut states = Vec::new();
        for (device, user, command_id) in &devices {
            let Some(device_id) = DeviceId::from_hex(device) else {
                continue;
            };
            let command = self
                .relay
                .store()
                .commands_of_device(device_id)
                .await?
                .into_iter()
                .find(|c| i64::try_from(c.id).ok() == Some(*command_id));
            let mut state = "requested";
            let mut reason = None;
            if let Some(c) = &command {
                if c.delivered_at_ms.is_some() {
                    state = "delivered";
                }
                if let Some(receipt) = &c.receipt {
                    let receipt: serde_json::Value =
                        serde_json::from_str(receipt).unwrap_or_default();
                    if receipt["archived"] == true {
                        state = "exported";
                        self.collect_parts(&row.id, device_id, &receipt).await?;
                    } else {
                        state = "refused";
                        reason = receipt["reason"].as_str().map(str::to_owned);
                    }
                }
            }
            states.push(serde_json::json!({ "device": device, "user_id": user, "state": state, "reason": reason }));
        }
        let parts: Vec<serde_json::Value> = self
            .store
            .archive_parts(&row.id)
            .await?
            .into_iter()
            .map(|(device, blob, bytes)| serde_json::json!({ "device": device, "part": blob, "bytes": bytes.len() }))
            .collect();
        Ok(serde_json::json!({
            "id": row.id, "requested_by": row.requested_by, "users": row.users,
            "from_ms": row.from_ms, "to_ms": row.to_ms, "created_at_ms": row.created_at_ms,
            "devices": states, "parts": parts,
        }))
    }

    async fn collect_parts(
        &self,
        archive: &str,
        device: DeviceId,
        receipt: &serde_json::Value,
    ) -> Result<()> {
        for part in receipt["parts"].as_array().cloned().unwrap_or_default() {
            let Some(blob_hex) = part["blob"].as_str() else {
                continue;
            };
            let Some(blob) = hex::decode(blob_hex)
                .ok()
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
            else {
                continue;
            };
            if let Some(record) = self.relay.store().blob_for(blob, device, now_ms()).await?
                && record.owner_device == device
            {
                self.store
                    .put_archive_part(archive, &device.to_string(), blob_hex, record.bytes)
                    .await?;
            }
        }
        Ok(())
    }

    /// One sealed part, for `kontor archive open`; every download is
    /// audited.
    pub async fn archive_part(&self, p: &Principal, id: &str, part: &str) -> Result<Vec<u8>> {
        self.require(p, Permission::Archive).await?;
        self.store
            .archive(&p.org, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("archive {id}")))?;
        let bytes = self
            .store
            .archive_parts(id)
            .await?
            .into_iter()
            .find(|(_, blob, _)| blob == part)
            .map(|(_, _, bytes)| bytes)
            .ok_or_else(|| Error::NotFound(format!("archive part {part}")))?;
        self.write_audit(
            &p.org,
            &p.login,
            "archive.download",
            &format!("{id}/{part}"),
            Outcome::Done,
            serde_json::json!({ "bytes": bytes.len() }),
        )
        .await?;
        Ok(bytes)
    }
}

/// A name as the audit trail takes it: control characters replaced, at
/// most 512 characters, never empty.
fn trail_safe(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(crate::audit::FIELD_CHARS_MAX)
        .collect();
    if safe.is_empty() { "-".into() } else { safe }
}

fn account_org(config: &AdminConfig, account: Option<&Account>) -> String {
    account.map_or_else(|| config.org_id.clone(), |a| a.org.clone())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn done_all(users: &[String]) -> Vec<BulkResult> {
    users
        .iter()
        .map(|u| BulkResult {
            user_id: u.clone(),
            outcome: "done",
            detail: None,
        })
        .collect()
}

fn result_of(user: &str, r: Result<Option<serde_json::Value>>) -> BulkResult {
    match r {
        Ok(detail) => BulkResult {
            user_id: user.to_owned(),
            outcome: "done",
            detail,
        },
        Err(e) => BulkResult {
            user_id: user.to_owned(),
            outcome: "failed",
            detail: Some(serde_json::json!({ "error": e.code(), "message": e.to_string() })),
        },
    }
}

/// Creates an owner account outside any session (`kontor admin
/// create-owner` on the server's data directory), recorded in the audit
/// trail as done by `system`.
pub async fn create_owner(
    store: &AdminStore,
    audit: &AuditLog,
    org: &str,
    org_name: &str,
    login: &str,
    password: &str,
) -> Result<Account> {
    directory::check_name("login", login)?;
    if OrgId::parse(org).is_err() {
        return Err(Error::Invalid(format!(
            "organisation id {org:?} is not valid"
        )));
    }
    let password = zeroize::Zeroizing::new(password.to_owned());
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| Error::Store(e.to_string()))??;
    store.ensure_org(org, org_name, now_ms()).await?;
    let account = Account {
        id: auth::new_id(8),
        org: org.to_owned(),
        login: login.to_owned(),
        role: Role::Owner,
        password_hash: hash,
        totp_secret: None,
        totp_last_step: None,
        disabled_at_ms: None,
        created_at_ms: now_ms(),
    };
    let entry = NewEntry {
        org: org.to_owned(),
        actor: "system".into(),
        action: "account.create".into(),
        target: login.to_owned(),
        outcome: Outcome::Requested,
        detail: serde_json::json!({ "role": "owner" }),
    };
    let log = audit.clone();
    tokio::task::spawn_blocking(move || log.append(entry, now_ms()))
        .await
        .map_err(|e| Error::Audit(e.to_string()))??;
    let result = store.insert_account(&account).await;
    let entry = NewEntry {
        org: org.to_owned(),
        actor: "system".into(),
        action: "account.create".into(),
        target: login.to_owned(),
        outcome: if result.is_ok() {
            Outcome::Done
        } else {
            Outcome::Failed
        },
        detail: serde_json::json!({}),
    };
    let log = audit.clone();
    tokio::task::spawn_blocking(move || log.append(entry, now_ms()))
        .await
        .map_err(|e| Error::Audit(e.to_string()))??;
    result.map(|()| account)
}
