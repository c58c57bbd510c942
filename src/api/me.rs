//! Self-service routes: whoever holds a key sees themselves and manages their own keys.

use super::error::ApiError;
use super::http::Request;
use super::keys::Issuer;
use super::routes::Route;
use super::{body, App, Reply, Result};
use crate::domain::time::rfc3339;
use crate::store::{users, Platform};
use serde_json::json;

impl<P: Platform> App<P> {
    pub(crate) async fn self_service(
        &self,
        method: &str,
        route: Route,
        req: &Request,
    ) -> Result<Reply> {
        let (caller, touch) = self.authenticate(req).await?;
        let reply = match (method, route) {
            ("GET", Route::Me) => Reply::ok(json!({
                "username": caller.username,
                "tenant_id": caller.tenant_id,
                "role": caller.role.as_str(),
                "api_key": {
                    "id": caller.key_id,
                    "access_key": caller.access_key,
                    "expires_at": caller.expires_at.map(rfc3339),
                },
            })),
            ("GET", Route::MyKeys) => self.list_keys(&caller.username, req).await?,
            ("GET", Route::MyLimits) => {
                self.key_limits(&caller.username, caller.expires_at).await?
            }
            (method, route) => {
                // Writes need the user row itself (tenant, current state).
                let user = users::get(self.platform.db(), &caller.username)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                let actor = Issuer::SelfService {
                    username: &caller.username,
                    expires_at: caller.expires_at,
                };
                match (method, route) {
                    ("POST", Route::MyKeys) => {
                        self.issue_key(actor, &user, body::parse(req)?).await?
                    }
                    ("DELETE", Route::MyKey(id)) => self.revoke_key(actor, &user, &id).await?,
                    ("POST", Route::MyKeyRotate(id)) => {
                        self.rotate_key(actor, &user, &id, body::parse(req)?)
                            .await?
                    }
                    _ => {
                        return Err(ApiError::Internal(
                            "self-service route without a handler".into(),
                        ))
                    }
                }
            }
        };
        Ok(reply.after(touch))
    }
}
