//! Self-service routes: whoever holds a key sees themselves and manages their own keys.

use super::auth::presented_secret_hash;
use super::auth::Caller;
use super::error::ApiError;
use super::http::Request;
use super::idempotency::{self, user_scope, Idem};
use super::keys::Issuer;
use super::{body, App, Reply, Result};
use crate::domain::names::Role;
use crate::domain::time::rfc3339;
use crate::store::users::{self, User};
use crate::store::Platform;
use serde::Serialize;
use std::borrow::Cow;

// `GET /api/v1/me`: the caller and the key they called with.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Me"))]
pub struct MeView<'a> {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::Username")
    )]
    pub username: Cow<'a, str>,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub tenant_id: Cow<'a, str>,
    pub role: Role,
    /// The key this request authenticated with.
    pub api_key: MyKeyView<'a>,
}

// The key a `GET /api/v1/me` was sent with.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(inline))]
pub struct MyKeyView<'a> {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyId")
    )]
    pub id: Cow<'a, str>,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AccessKey")
    )]
    pub access_key: Cow<'a, str>,
    /// When this key stops working; null when it never expires.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub expires_at: Option<String>,
}

pub(crate) fn me(caller: &Caller) -> Reply {
    Reply::ok(MeView {
        username: (&caller.username).into(),
        tenant_id: (&caller.tenant_id).into(),
        role: caller.role,
        api_key: MyKeyView {
            id: (&caller.key_id).into(),
            access_key: (&caller.access_key).into(),
            expires_at: caller.expires_at.map(rfc3339),
        },
    })
}

impl<P: Platform> App<P> {
    /// Writes need the user row itself (tenant, current state).
    async fn acting_user(&self, caller: &Caller) -> Result<User> {
        users::get(self.platform.db(), &caller.username)
            .await?
            .ok_or(ApiError::Unauthorized)
    }

    pub(crate) async fn issue_my_key(&self, caller: &Caller, req: &Request) -> Result<Reply> {
        let user = self.acting_user(caller).await?;
        let body = body::parse(req)?;
        let idem = idempotency::key_of(req)?.map(|k| {
            Idem::new(
                &user_scope(&user.username),
                &k,
                idempotency::KEY_ISSUE,
                &user.username,
                &req.body,
            )
        });
        self.issue_key(self_service(caller), &user, body, idem)
            .await
    }

    pub(crate) async fn revoke_my_key(&self, caller: &Caller, id: &str) -> Result<Reply> {
        let user = self.acting_user(caller).await?;
        self.revoke_key(self_service(caller), &user, id).await
    }

    pub(crate) async fn rotate_my_key(
        &self,
        caller: &Caller,
        id: &str,
        req: &Request,
    ) -> Result<Reply> {
        let user = self.acting_user(caller).await?;
        let body = body::parse(req)?;
        let idem = idempotency::key_of(req)?.map(|k| {
            (
                Idem::new(
                    &user_scope(&user.username),
                    &k,
                    idempotency::KEY_ROTATE,
                    id,
                    &req.body,
                ),
                presented_secret_hash(req),
            )
        });
        self.rotate_key(self_service(caller), &user, id, body, idem)
            .await
    }
}

fn self_service(caller: &Caller) -> Issuer<'_> {
    Issuer::SelfService {
        username: &caller.username,
        expires_at: caller.expires_at,
    }
}
