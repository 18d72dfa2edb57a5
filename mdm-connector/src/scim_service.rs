//! SCIM 2.0 on Kontor's directory: a SCIM User is a Kontor user (`id` and
//! `userName` are the user id; `active: false` blocks at once; delete
//! removes), a SCIM Group is a department (members are its users). The
//! attributes Kontor has no column for (externalId, name parts, e-mails)
//! are kept beside the directory in `scim_users`.

use std::sync::Arc;

use kontor_admin::directory::{UserFilter, UserStatus};
use kontor_admin::service::{Admin, Principal};
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::scim::{
    self, Email, ListResponse, Meta, Name, Page, PatchRequest, ResourceKind, ScimError, ScimGroup,
    ScimUser, UserChanges,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scim_users (
    user_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    external_id TEXT,
    given_name TEXT,
    family_name TEXT,
    emails TEXT NOT NULL
);
";

/// SCIM over the administration.
pub struct Scim<P, S, B> {
    admin: Arc<Admin<P, S, B>>,
    conn: Arc<std::sync::Mutex<rusqlite::Connection>>,
    base_url: String,
}

/// Extra attributes kept for a user.
#[derive(Debug, Clone, Default)]
struct Extra {
    external_id: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    emails: Vec<Email>,
}

fn admin_error(e: kontor_admin::Error) -> ScimError {
    let status = e.status().as_u16();
    let scim_type = match status {
        409 => Some(scim::ScimType::Uniqueness),
        400 => Some(scim::ScimType::InvalidValue),
        _ => None,
    };
    if e.status().is_server_error() {
        tracing::error!(error = ?e, "scim request failed");
    }
    ScimError {
        status,
        scim_type,
        detail: e.public_message(),
    }
}

/// A failure of the SCIM attribute store: the detail goes to the log, never
/// to the client.
fn store_error(e: impl std::fmt::Display) -> ScimError {
    tracing::error!(error = %e, "scim storage failed");
    ScimError {
        status: 500,
        scim_type: None,
        detail: "internal error".to_owned(),
    }
}

impl<P, S, B> Scim<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    /// SCIM over `admin`, keeping its extra attributes in the database at
    /// `path`; resource locations start with `base_url` (…/scim/v2).
    pub fn open(
        admin: Arc<Admin<P, S, B>>,
        path: &std::path::Path,
        base_url: &str,
    ) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        Self::setup(admin, conn, base_url)
    }

    /// In memory, for tests.
    pub fn open_in_memory(admin: Arc<Admin<P, S, B>>, base_url: &str) -> rusqlite::Result<Self> {
        Self::setup(admin, rusqlite::Connection::open_in_memory()?, base_url)
    }

    fn setup(
        admin: Arc<Admin<P, S, B>>,
        conn: rusqlite::Connection,
        base_url: &str,
    ) -> rusqlite::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Scim {
            admin,
            conn: Arc::new(std::sync::Mutex::new(conn)),
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The administration (for authentication).
    pub fn admin(&self) -> &Arc<Admin<P, S, B>> {
        &self.admin
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ScimError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&guard)
        })
        .await
        .map_err(store_error)?
        .map_err(store_error)
    }

    async fn extra(&self, org: &str, user: &str) -> Result<Extra, ScimError> {
        let (org, user) = (org.to_owned(), user.to_owned());
        let row = self
            .db(move |c| {
                c.query_row(
                    "SELECT external_id, given_name, family_name, emails FROM scim_users WHERE org = ?1 AND user_id = ?2",
                    [org, user],
                    |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, String>(3)?)),
                )
                .optional()
            })
            .await?;
        Ok(match row {
            Some((external_id, given_name, family_name, emails)) => {
                let emails: Vec<Value> = serde_json::from_str(&emails).unwrap_or_default();
                Extra {
                    external_id,
                    given_name,
                    family_name,
                    emails: emails
                        .iter()
                        .filter_map(|e| {
                            Some(Email {
                                value: e["value"].as_str()?.to_owned(),
                                primary: e["primary"].as_bool().unwrap_or(false),
                                kind: e["type"].as_str().map(str::to_owned),
                            })
                        })
                        .collect(),
                }
            }
            None => Extra::default(),
        })
    }

    async fn put_extra(&self, org: &str, user: &str, x: &Extra) -> Result<(), ScimError> {
        let emails: Vec<Value> = x
            .emails
            .iter()
            .map(|e| serde_json::json!({ "value": e.value, "primary": e.primary, "type": e.kind }))
            .collect();
        let (org, user, x, emails) = (
            org.to_owned(),
            user.to_owned(),
            x.clone(),
            Value::Array(emails).to_string(),
        );
        self.db(move |c| {
            c.execute(
                "INSERT INTO scim_users (user_id, org, external_id, given_name, family_name, emails) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (user_id) DO UPDATE SET external_id = excluded.external_id, given_name = excluded.given_name, family_name = excluded.family_name, emails = excluded.emails",
                params![user, org, x.external_id, x.given_name, x.family_name, emails],
            )
            .map(|_| ())
        })
        .await
    }

    async fn delete_extra(&self, org: &str, user: &str) -> Result<(), ScimError> {
        let (org, user) = (org.to_owned(), user.to_owned());
        self.db(move |c| {
            c.execute(
                "DELETE FROM scim_users WHERE org = ?1 AND user_id = ?2",
                [org, user],
            )
            .map(|_| ())
        })
        .await
    }

    async fn resource(&self, p: &Principal, user_id: &str) -> Result<ScimUser, ScimError> {
        let user = self
            .admin
            .user_view(p, user_id)
            .await
            .map_err(|e| match e {
                kontor_admin::Error::NotFound(_) => {
                    ScimError::not_found(format!("user {user_id} not found"))
                }
                other => admin_error(other),
            })?;
        let x = self.extra(&p.org, user_id).await?;
        Ok(ScimUser {
            id: Some(user.user_id.clone()),
            external_id: x.external_id,
            user_name: user.user_id.clone(),
            name: Name {
                given_name: x.given_name,
                family_name: x.family_name,
                formatted: Some(user.display_name.clone()),
            },
            display_name: Some(user.display_name.clone()),
            emails: x.emails,
            active: user.status != UserStatus::Blocked,
            department: user.department.clone(),
            meta: Meta {
                created: time::OffsetDateTime::from_unix_timestamp(user.created_at_ms / 1000).ok(),
                last_modified: None,
                version: None,
            },
        })
    }

    fn display_name(u: &ScimUser) -> String {
        u.display_name
            .clone()
            .or_else(|| u.name.formatted.clone())
            .or_else(|| match (&u.name.given_name, &u.name.family_name) {
                (Some(g), Some(f)) => Some(format!("{g} {f}")),
                (Some(n), None) | (None, Some(n)) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| u.user_name.clone())
    }

    async fn ensure_department(&self, p: &Principal, department: &str) -> Result<(), ScimError> {
        let known = self.admin.barriers(p).await.map_err(admin_error)?;
        let exists = known["departments"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["name"] == department));
        if !exists {
            self.admin
                .put_department(p, department, false)
                .await
                .map_err(admin_error)?;
        }
        Ok(())
    }

    /// `POST /Users`.
    pub async fn create_user(&self, p: &Principal, body: &[u8]) -> Result<Value, ScimError> {
        let incoming = ScimUser::from_json(body)?;
        if self.admin.user_view(p, &incoming.user_name).await.is_ok() {
            return Err(ScimError::uniqueness(format!(
                "userName {} exists",
                incoming.user_name
            )));
        }
        if let Some(d) = &incoming.department {
            self.ensure_department(p, d).await?;
        }
        self.admin
            .create_user(
                p,
                &incoming.user_name,
                &Self::display_name(&incoming),
                incoming.department.as_deref(),
            )
            .await
            .map_err(admin_error)?;
        let x = Extra {
            external_id: incoming.external_id.clone(),
            given_name: incoming.name.given_name.clone(),
            family_name: incoming.name.family_name.clone(),
            emails: incoming.emails.clone(),
        };
        self.put_extra(&p.org, &incoming.user_name, &x).await?;
        if !incoming.active {
            self.admin
                .set_blocked(p, std::slice::from_ref(&incoming.user_name), true)
                .await
                .map_err(admin_error)?;
        }
        Ok(self
            .resource(p, &incoming.user_name)
            .await?
            .to_json(&self.base_url))
    }

    /// `GET /Users/{id}`.
    pub async fn get_user(&self, p: &Principal, id: &str) -> Result<Value, ScimError> {
        Ok(self.resource(p, id).await?.to_json(&self.base_url))
    }

    /// `GET /Users?filter=…`.
    pub async fn list_users(
        &self,
        p: &Principal,
        filter: Option<&str>,
        page: Page,
    ) -> Result<Value, ScimError> {
        let filter = filter
            .map(|f| scim::parse_filter(f, ResourceKind::User))
            .transpose()?;
        let mut matching = Vec::new();
        for user in self
            .admin
            .users(p, &UserFilter::default())
            .await
            .map_err(admin_error)?
        {
            let resource = self.resource(p, &user.user_id).await?;
            if filter.as_ref().is_none_or(|f| f.matches_user(&resource)) {
                matching.push(resource);
            }
        }
        let total = matching.len();
        let resources = matching
            .into_iter()
            .skip(page.offset())
            .take(page.count)
            .map(|u| u.to_json(&self.base_url))
            .collect();
        Ok(ListResponse {
            total_results: total,
            start_index: page.start_index,
            resources,
        }
        .to_json())
    }

    async fn apply(
        &self,
        p: &Principal,
        id: &str,
        before: &ScimUser,
        after: &ScimUser,
        changes: &UserChanges,
    ) -> Result<(), ScimError> {
        if changes.user_name.is_some() {
            return Err(ScimError::from(scim::Error::Mutability(
                "userName (Kontor's user id)".into(),
            )));
        }
        if let Some(department) = &changes.department {
            if let Some(d) = department {
                self.ensure_department(p, d).await?;
            }
            self.admin
                .move_users(p, &[id.to_owned()], department.as_deref())
                .await
                .map_err(admin_error)?;
        }
        let name_before = Self::display_name(before);
        let name_after = Self::display_name(after);
        if name_before != name_after {
            self.admin
                .rename_user(p, id, &name_after)
                .await
                .map_err(admin_error)?;
        }
        if let Some(active) = changes.active {
            self.admin
                .set_blocked(p, &[id.to_owned()], !active)
                .await
                .map_err(admin_error)?;
        }
        let x = Extra {
            external_id: after.external_id.clone(),
            given_name: after.name.given_name.clone(),
            family_name: after.name.family_name.clone(),
            emails: after.emails.clone(),
        };
        self.put_extra(&p.org, id, &x).await
    }

    /// `PATCH /Users/{id}`.
    pub async fn patch_user(
        &self,
        p: &Principal,
        id: &str,
        body: &[u8],
    ) -> Result<Value, ScimError> {
        let patch = PatchRequest::from_json(body)?;
        let before = self.resource(p, id).await?;
        let mut after = before.clone();
        let changes = scim::apply_user_patch(&mut after, &patch)?;
        self.apply(p, id, &before, &after, &changes).await?;
        Ok(self.resource(p, id).await?.to_json(&self.base_url))
    }

    /// `PUT /Users/{id}`.
    pub async fn replace_user(
        &self,
        p: &Principal,
        id: &str,
        body: &[u8],
    ) -> Result<Value, ScimError> {
        let incoming = ScimUser::from_json(body)?;
        let before = self.resource(p, id).await?;
        let mut after = before.clone();
        let changes = scim::replace_user(&mut after, incoming)?;
        self.apply(p, id, &before, &after, &changes).await?;
        Ok(self.resource(p, id).await?.to_json(&self.base_url))
    }

    /// `DELETE /Users/{id}`: the user is removed (certificates revoked,
    /// queues dropped, data erased).
    pub async fn delete_user(&self, p: &Principal, id: &str) -> Result<(), ScimError> {
        self.resource(p, id).await?;
        self.admin.remove_user(p, id).await.map_err(admin_error)?;
        self.delete_extra(&p.org, id).await
    }

    async fn group(&self, p: &Principal, name: &str) -> Result<ScimGroup, ScimError> {
        let known = self.admin.barriers(p).await.map_err(admin_error)?;
        if !known["departments"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x["name"] == name))
        {
            return Err(ScimError::not_found(format!("group {name} not found")));
        }
        let filter = UserFilter {
            department: Some(name.to_owned()),
            ..Default::default()
        };
        let members = self
            .admin
            .users(p, &filter)
            .await
            .map_err(admin_error)?
            .into_iter()
            .map(|u| scim::Member {
                value: u.user_id,
                display: Some(u.display_name),
            })
            .collect();
        Ok(ScimGroup {
            id: Some(name.to_owned()),
            external_id: None,
            display_name: name.to_owned(),
            members,
            meta: Meta::default(),
        })
    }

    /// `GET /Groups?filter=…`.
    pub async fn list_groups(
        &self,
        p: &Principal,
        filter: Option<&str>,
        page: Page,
    ) -> Result<Value, ScimError> {
        let filter = filter
            .map(|f| scim::parse_filter(f, ResourceKind::Group))
            .transpose()?;
        let known = self.admin.barriers(p).await.map_err(admin_error)?;
        let mut matching = Vec::new();
        for d in known["departments"].as_array().cloned().unwrap_or_default() {
            let name = d["name"].as_str().unwrap_or_default().to_owned();
            let group = self.group(p, &name).await?;
            if filter.as_ref().is_none_or(|f| f.matches_group(&group)) {
                matching.push(group);
            }
        }
        let total = matching.len();
        let resources = matching
            .into_iter()
            .skip(page.offset())
            .take(page.count)
            .map(|g| g.to_json(&self.base_url, true))
            .collect();
        Ok(ListResponse {
            total_results: total,
            start_index: page.start_index,
            resources,
        }
        .to_json())
    }

    /// `GET /Groups/{id}`.
    pub async fn get_group(&self, p: &Principal, id: &str) -> Result<Value, ScimError> {
        Ok(self.group(p, id).await?.to_json(&self.base_url, true))
    }

    /// `POST /Groups`: a department, its members moved into it.
    pub async fn create_group(&self, p: &Principal, body: &[u8]) -> Result<Value, ScimError> {
        let incoming = ScimGroup::from_json(body)?;
        if self.group(p, &incoming.display_name).await.is_ok() {
            return Err(ScimError::uniqueness(format!(
                "group {} exists",
                incoming.display_name
            )));
        }
        let members: Vec<String> = incoming.members.iter().map(|m| m.value.clone()).collect();
        for m in &members {
            self.resource(p, m).await.map_err(|_| {
                ScimError::from(scim::Error::InvalidValue(format!(
                    "member {m} is not a user"
                )))
            })?;
        }
        self.admin
            .put_department(p, &incoming.display_name, false)
            .await
            .map_err(admin_error)?;
        if !members.is_empty() {
            self.admin
                .move_users(p, &members, Some(&incoming.display_name))
                .await
                .map_err(admin_error)?;
        }
        Ok(self
            .group(p, &incoming.display_name)
            .await?
            .to_json(&self.base_url, true))
    }

    /// `PATCH /Groups/{id}`: members added move into the department,
    /// members removed move out of it.
    pub async fn patch_group(
        &self,
        p: &Principal,
        id: &str,
        body: &[u8],
    ) -> Result<Value, ScimError> {
        let patch = PatchRequest::from_json(body)?;
        let before = self.group(p, id).await?;
        let mut after = before.clone();
        let changes = scim::apply_group_patch(&mut after, &patch)?;
        if changes.display_name.is_some() {
            return Err(ScimError::from(scim::Error::Mutability(
                "displayName (Kontor's department name)".into(),
            )));
        }
        let added: Vec<String> = changes
            .members_added
            .iter()
            .map(|m| m.value.clone())
            .collect();
        for m in &added {
            self.resource(p, m).await.map_err(|_| {
                ScimError::from(scim::Error::InvalidValue(format!(
                    "member {m} is not a user"
                )))
            })?;
        }
        if !added.is_empty() {
            self.admin
                .move_users(p, &added, Some(id))
                .await
                .map_err(admin_error)?;
        }
        if !changes.members_removed.is_empty() {
            self.admin
                .move_users(p, &changes.members_removed, None)
                .await
                .map_err(admin_error)?;
        }
        Ok(self.group(p, id).await?.to_json(&self.base_url, true))
    }

    /// `DELETE /Groups/{id}`: members leave it, then it is deleted.
    pub async fn delete_group(&self, p: &Principal, id: &str) -> Result<(), ScimError> {
        let group = self.group(p, id).await?;
        let members: Vec<String> = group.members.iter().map(|m| m.value.clone()).collect();
        if !members.is_empty() {
            self.admin
                .move_users(p, &members, None)
                .await
                .map_err(admin_error)?;
        }
        self.admin
            .delete_department(p, id)
            .await
            .map_err(admin_error)
    }
}

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config() -> Value {
    serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
        "filter": { "supported": true, "maxResults": 200 },
        "changePassword": { "supported": false },
        "sort": { "supported": false },
        "etag": { "supported": false },
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "API key",
            "description": "The integration's Kontor API key as a bearer token", "primary": true
        }],
    })
}
