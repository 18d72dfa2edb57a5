//! Admin roles and what each may do (pure).
//!
//! The matrix is the one place that decides authorisation; every endpoint
//! names the [`Permission`] it needs and the HTTP layer checks it before the
//! service runs, and the service scopes every object to the caller's
//! organisation.

use serde::{Deserialize, Serialize};

/// An administrator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including admin accounts and organisation settings.
    Owner,
    /// Everything about users, policies and devices; not admin accounts.
    Admin,
    /// Block, unblock, wipe, invite; read users and devices.
    Helpdesk,
    /// Reads the audit trail only.
    Auditor,
    /// Requests and reads archives only.
    Archivist,
    /// An EMM platform's integration (API keys only): reads the directory,
    /// invites, blocks, wipes, sets restrictions and syncs users (SCIM);
    /// no admin accounts, no audit trail, no archives, no broadcasts.
    Emm,
}

/// Something an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// List and show users, devices, departments, policies, activity.
    ReadDirectory,
    /// Invite users (enrollment tokens).
    Invite,
    /// Block and unblock users.
    Block,
    /// Wipe devices and users.
    Wipe,
    /// Remove users (revocation and erasure).
    RemoveUser,
    /// Change departments, barriers, restrictions, the allow-list, users'
    /// departments; import users.
    ManagePolicy,
    /// Send a broadcast.
    Broadcast,
    /// Read and export the audit trail.
    ReadAudit,
    /// Request and read archives.
    Archive,
    /// Manage admin accounts, API keys and organisation settings.
    ManageAdmins,
}

impl Permission {
    /// Every permission, for tests and documentation.
    pub const ALL: [Permission; 10] = [
        Permission::ReadDirectory,
        Permission::Invite,
        Permission::Block,
        Permission::Wipe,
        Permission::RemoveUser,
        Permission::ManagePolicy,
        Permission::Broadcast,
        Permission::ReadAudit,
        Permission::Archive,
        Permission::ManageAdmins,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadDirectory => "read_directory",
            Permission::Invite => "invite",
            Permission::Block => "block",
            Permission::Wipe => "wipe",
            Permission::RemoveUser => "remove_user",
            Permission::ManagePolicy => "manage_policy",
            Permission::Broadcast => "broadcast",
            Permission::ReadAudit => "read_audit",
            Permission::Archive => "archive",
            Permission::ManageAdmins => "manage_admins",
        }
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Admin,
        Role::Helpdesk,
        Role::Auditor,
        Role::Archivist,
        Role::Emm,
    ];

    /// Whether this role may do `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(permission, P::ManageAdmins | P::Archive),
            Role::Helpdesk => matches!(
                permission,
                P::ReadDirectory | P::Invite | P::Block | P::Wipe
            ),
            Role::Auditor => matches!(permission, P::ReadAudit),
            Role::Archivist => matches!(permission, P::Archive),
            Role::Emm => matches!(
                permission,
                P::ReadDirectory | P::Invite | P::Block | P::Wipe | P::ManagePolicy | P::RemoveUser
            ),
        }
    }

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
            Role::Auditor => "auditor",
            Role::Archivist => "archivist",
            Role::Emm => "emm",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owners_manage_admins_and_only_auditors_owners_and_admins_read_the_trail() {
        for role in Role::ALL {
            assert_eq!(
                role.allows(Permission::ManageAdmins),
                role == Role::Owner,
                "{role:?}"
            );
            assert_eq!(
                role.allows(Permission::ReadAudit),
                matches!(role, Role::Owner | Role::Admin | Role::Auditor),
                "{role:?}"
            );
        }
        assert!(!Role::Archivist.allows(Permission::ReadDirectory));
        assert!(!Role::Auditor.allows(Permission::Wipe));
        assert!(Role::Helpdesk.allows(Permission::Wipe));
        assert!(!Role::Helpdesk.allows(Permission::ManagePolicy));
        assert!(!Role::Admin.allows(Permission::Archive));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
