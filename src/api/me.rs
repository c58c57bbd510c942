//! Self-service routes: whoever holds a key sees themselves and manages their own keys.

use super::auth::presented_secret_hash;
use super::error::ApiError;
use super::http::Request;
use super::idempotency::{self, user_scope, Idem};
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
        let (caller, touch) = match self.authenticate(req).await {
            // The replay of a rotation without grace comes with the secret that rotation ended;
            // it is honoured for that one replay only (auth.rs, rotation_replay_caller). A key
            // that does not parse proves nothing: the request stays unauthenticated.
            Err(ApiError::Unauthorized) => match (&route, idempotency::key_of(req)) {
                (Route::MyKeyRotate(id), Ok(Some(key))) => (
                    self.rotation_replay_caller(req, id, &key)
                        .await?
                        .ok_or(ApiError::Unauthorized)?,
                    None,
                ),
                _ => return Err(ApiError::Unauthorized),
            },
            other => other?,
        };
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
                let scope = user_scope(&user.username);
                match (method, route) {
                    ("POST", Route::MyKeys) => {
                        let body = body::parse(req)?;
                        let idem = idempotency::key_of(req)?.map(|k| {
                            Idem::new(
                                &scope,
                                &k,
                                idempotency::KEY_ISSUE,
                                &user.username,
                                &req.body,
                            )
                        });
                        self.issue_key(actor, &user, body, idem).await?
                    }
                    ("DELETE", Route::MyKey(id)) => self.revoke_key(actor, &user, &id).await?,
                    ("POST", Route::MyKeyRotate(id)) => {
                        let body = body::parse(req)?;
                        let idem = idempotency::key_of(req)?.map(|k| {
                            (
                                Idem::new(&scope, &k, idempotency::KEY_ROTATE, &id, &req.body),
                                presented_secret_hash(req),
                            )
                        });
                        self.rotate_key(actor, &user, &id, body, idem).await?
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
