//! The MDM side of the connector's actions: commands go into the persisted
//! outbox (so nothing is lost while an MDM is down) and a [`Deliverer`]
//! sends them through the NanoMDM and Android Management API clients, with
//! retries, backoff and idempotency keys.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clients::{AmapiClient, EnrollmentId, NanoMdmClient, ResourceName};
use crate::outbox::{Deliverer, DelivererConfig, NewEntry, Outbox};
use crate::service::{BoxFuture, MdmSide};

/// [`MdmSide`] over the outbox.
pub struct OutboxMdm {
    outbox: Arc<Outbox>,
    nanomdm: Option<Arc<NanoMdmClient>>,
    amapi: Option<Arc<AmapiClient>>,
    wake: Arc<Notify>,
}

impl OutboxMdm {
    /// The MDM side and the deliverer to run (`Deliverer::run`).
    pub fn new(
        outbox: Arc<Outbox>,
        nanomdm: Option<NanoMdmClient>,
        amapi: Option<AmapiClient>,
        config: DelivererConfig,
    ) -> (Self, Deliverer) {
        let nanomdm = nanomdm.map(Arc::new);
        let amapi = amapi.map(Arc::new);
        let mut deliverer = Deliverer::new(outbox.clone(), config);
        if let Some(n) = &nanomdm {
            let target = n.target().to_owned();
            deliverer = deliverer.route(&target, n.clone());
        }
        if let Some(a) = &amapi {
            let target = a.target().to_owned();
            deliverer = deliverer.route(&target, a.clone());
        }
        let wake = deliverer.waker();
        (
            OutboxMdm {
                outbox,
                nanomdm,
                amapi,
                wake,
            },
            deliverer,
        )
    }

    async fn enqueue(&self, entries: Vec<NewEntry>) -> Result<(), String> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || {
            let now = time::OffsetDateTime::now_utc();
            for entry in &entries {
                outbox.enqueue(entry, now).map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })
        .await
        .map_err(|e| e.to_string())??;
        self.wake.notify_one();
        Ok(())
    }
}

impl MdmSide for OutboxMdm {
    fn apple_command<'a>(
        &'a self,
        enrollment_id: &'a str,
        command_uuid: &'a str,
        plist: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let client = self
                .nanomdm
                .as_ref()
                .ok_or("no NanoMDM is configured (kontor serve --nanomdm-url)")?;
            let id = EnrollmentId::parse(enrollment_id).map_err(|e| e.to_string())?;
            // NanoMDM pushes after enqueueing; the command's UUID is the
            // idempotency key, so a retried call enqueues it once.
            let entry = client
                .enqueue_entry(&[id], plist.as_bytes(), false, command_uuid)
                .map_err(|e| e.to_string())?;
            self.enqueue(vec![entry]).await
        })
    }

    fn android_command<'a>(
        &'a self,
        device_name: &'a str,
        command_id: &'a str,
        _path: String,
        body: String,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let client = self.amapi.as_ref().ok_or(
                "no Android Management API is configured (kontor serve --amapi-token-file)",
            )?;
            let device = ResourceName::parse(device_name).map_err(|e| e.to_string())?;
            let command: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| format!("command body: {e}"))?;
            let entry = client
                .issue_command_entry(&device, &command, command_id)
                .map_err(|e| e.to_string())?;
            self.enqueue(vec![entry]).await
        })
    }
}
