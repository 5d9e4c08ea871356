//! `GET /api/whoami`: the key a client signed in with (the admin page shows its role).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The caller's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Whoami {
    /// The key's name in the config (api.keys), never the key itself.
    pub name: String,
    /// `read` (sees everything, changes nothing) or `admin`.
    pub role: String,
    /// The node that answered.
    pub observer: String,
    pub cluster: String,
}
