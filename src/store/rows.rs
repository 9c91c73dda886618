//! Row mapping both backends share.

use super::error::{StoreError, StoreResult};
use crate::domain::Role;

pub(crate) fn role_of(raw: &str) -> StoreResult<Role> {
    Role::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown role {raw:?}")))
}
