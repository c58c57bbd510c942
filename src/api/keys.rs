//! User API keys as both the admin and the user manage them: issue, list, revoke, rotate.

use super::error::ApiError;
use super::http::Request;
use super::idempotency::{self, twin_or, Idem};
use super::page::{Cursor, PageRequest};
use super::{App, Reply, Result};
use crate::domain::keys::{generate_access_key, Secret};
use crate::domain::names::Description;
use crate::domain::new_id;
use crate::domain::time::{rfc3339, MS_PER_MINUTE};
use crate::store::keys::{self as key_store, KeyRecord};
use crate::store::settings::{self, KeyPolicy};
use crate::store::{audit, users::User, Batch, Platform};
use serde::{Deserialize, Serialize};

/// The longest lifetime a key may be given even when the setting says "no limit" (100 years),
/// so `now + ttl` can never overflow.
pub const ABSOLUTE_MAX_TTL_MINUTES: i64 = 100 * 365 * 24 * 60;
/// Longest grace period a rotation may leave the old secret valid for (../API.md).
pub const MAX_GRACE_MINUTES: i64 = 1440;

/// Who asks for a key change, and so what bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer<'a> {
    /// The admin token: bounded by the settings only.
    Admin,
    /// A user through one of their own keys, which expires at `expires_at`: what it creates or
    /// rotates may not outlive it.
    SelfService {
        username: &'a str,
        expires_at: Option<i64>,
    },
}

impl<'a> Issuer<'a> {
    pub fn actor(self) -> audit::Actor<'a> {
        match self {
            Issuer::Admin => audit::Actor::Admin,
            Issuer::SelfService { username, .. } => audit::Actor::User(username),
        }
    }
}

/// Optional fields may also be null, which means the same as leaving them out.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "CreateApiKeyRequest"))]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Free text of at most 256 characters; default empty.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::api::doc::scalars::KeyDescription>")
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Lifetime in minutes. At most auth_token_max_ttl_minutes when that is not 0 (a greater value
    /// is a 400 naming the maximum); default is that maximum, or no expiry when it is 0.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 52560000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_minutes: Option<i64>,
}

/// Optional fields may also be null, which means the same as leaving them out.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "RotateApiKeyRequest"))]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the previous secret keeps working, in minutes.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1440, "default" = 0)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_minutes: Option<i64>,
}

// How a key is listed: never a secret or a hash.
/// A key as listed: never a secret or a token.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiKey"))]
pub struct KeyView {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyId")
    )]
    pub id: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AccessKey")
    )]
    pub access_key: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::SecretHint")
    )]
    pub secret_hint: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyDescription")
    )]
    pub description: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub tenant_id: String,
    /// When the key was created.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// When the key was last changed (e.g. rotated).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub update_date: String,
    /// When the key stops working; null when it never expires.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub expires_at: Option<String>,
    /// When the key last authenticated (updated at most once a minute); null if never.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub last_used_at: Option<String>,
}

pub fn key_json(k: &KeyRecord) -> KeyView {
    KeyView {
        id: k.id.clone(),
        access_key: k.access_key.clone(),
        secret_hint: k.secret_hint.clone(),
        description: k.description.clone(),
        tenant_id: k.tenant_id.clone(),
        create_date: rfc3339(k.create_date),
        update_date: rfc3339(k.update_date),
        expires_at: k.expires_at.map(rfc3339),
        last_used_at: k.last_used_at.map(rfc3339),
    }
}

// `GET /api/v1/me/limits`: what the caller's next key may be.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct KeyLimits {
    // The longest `ttl_minutes` the next key may have; `null`: no bound.
    /// The longest `ttl_minutes` a key created now by this caller may ask for: the admin maximum,
    /// bounded by what the calling key has left (a key cannot create a key that outlives it); null
    /// means no limit.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub max_ttl_minutes: Option<i64>,
    /// The deployment's `auth_token_max_ttl_minutes`; 0 means no limit.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub admin_max_ttl_minutes: i64,
    /// Whether this caller may create keys for themselves.
    pub self_service_keys: bool,
    /// The most unexpired keys one user may hold.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1)))]
    pub max_keys_per_user: i64,
    /// How many unexpired keys the caller holds now.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub active_keys: i64,
}

// The one answer that carries a secret: the creation (or rotation) of a key.
/// A newly created key, with its secret (shown this once).
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiKeyCreated"))]
pub struct CreatedKey {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyId")
    )]
    pub id: String,
    /// `<access_key>:<secret_key>`, the credential to send as `Authorization: Bearer <token>`.
    /// Returned only by this call.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38}$")))]
    pub token: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AccessKey")
    )]
    pub access_key: String,
    /// `kws_`, 32 random base62 characters and a 6-character base62 CRC32 checksum. Returned only
    /// by this call; only its SHA-256 is stored.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^kws_[0-9A-Za-z]{38}$")))]
    pub secret_key: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::SecretHint")
    )]
    pub secret_hint: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyDescription")
    )]
    pub description: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub tenant_id: String,
    /// When the key was created.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// When the key stops working; null when it never expires.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub expires_at: Option<String>,
}

// A rotation's answer: the creation shape plus until when the replaced secret still works.
// (Its fields are spelled out rather than a flattened [`CreatedKey`]: serde's flatten costs
// the Worker bundle several KiB.)
/// A rotated key: same id and access_key, a new secret (shown this once).
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "ApiKeyRotated"))]
pub struct RotatedKey {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyId")
    )]
    pub id: String,
    /// `<access_key>:<secret_key>`, the credential to send as `Authorization: Bearer <token>`.
    /// Returned only by this call.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^kwa_[0-9A-Za-z]{16}:kws_[0-9A-Za-z]{38}$")))]
    pub token: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::AccessKey")
    )]
    pub access_key: String,
    /// `kws_`, 32 random base62 characters and a 6-character base62 CRC32 checksum. Returned only
    /// by this call; only its SHA-256 is stored.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("pattern" = "^kws_[0-9A-Za-z]{38}$")))]
    pub secret_key: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::SecretHint")
    )]
    pub secret_hint: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::KeyDescription")
    )]
    pub description: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub tenant_id: String,
    /// When the key was created.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// When the key stops working; null when it never expires.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub expires_at: Option<String>,
    /// Until when the previous secret keeps working; null when grace_minutes was 0 (the previous
    /// secret stopped working at once).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<crate::api::doc::scalars::DateTime>", extend("format" = "date-time")))]
    pub previous_secret_valid_until: Option<String>,
}

impl<P: Platform> App<P> {
    fn random(&self) -> impl Fn(&mut [u8]) + '_ {
        move |b: &mut [u8]| self.platform.fill_random(b)
    }

    /// The settings that govern issuing keys (one read).
    pub(crate) async fn key_policy(&self) -> Result<KeyPolicy> {
        Ok(settings::key_policy(self.platform.db(), self.config.default_max_ttl_minutes).await?)
    }

    /// Issue a key for `user`, recording who asked in the audit log in the same batch. A user's own
    /// key may only create keys that expire no later than itself, and only while self-service is
    /// on; nobody may give a user more than `max_keys_per_user` unexpired keys. With an
    /// Idempotency-Key this request already carried out, the key it issued is handed over again,
    /// with a new secret (the one in the lost answer stops working): never a second key.
    pub(crate) async fn issue_key(
        &self,
        issuer: Issuer<'_>,
        user: &User,
        body: CreateKey,
        idem: Option<Idem>,
    ) -> Result<Reply> {
        let description = Description::parse(body.description.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad("description", e))?
            .into_string();
        let policy = self.key_policy().await?;
        let now = self.platform.now_ms();
        if let Issuer::SelfService { .. } = issuer {
            if !policy.self_service_keys {
                return Err(ApiError::Forbidden(
                    "Creating keys for yourself is turned off on this deployment \
                     (self_service_keys); ask an administrator to issue one"
                        .into(),
                ));
            }
        }
        let max = policy.max_ttl_minutes;
        let ttl = match body.ttl_minutes {
            Some(t) if t < 1 => {
                return Err(ApiError::bad(
                    "ttl_minutes",
                    "must be a positive number of minutes",
                ))
            }
            Some(t) if max > 0 && t > max => {
                return Err(ApiError::bad(
                    "ttl_minutes",
                    format!("must be at most {max} (auth_token_max_ttl_minutes)"),
                ))
            }
            Some(t) if t > ABSOLUTE_MAX_TTL_MINUTES => {
                return Err(ApiError::bad(
                    "ttl_minutes",
                    format!("must be at most {ABSOLUTE_MAX_TTL_MINUTES}"),
                ))
            }
            Some(t) => Some(t),
            None if max > 0 => Some(max),
            None => None,
        };
        let mut expires_at = ttl.map(|t| now + t * MS_PER_MINUTE);
        if let Issuer::SelfService {
            expires_at: Some(own),
            ..
        } = issuer
        {
            match (body.ttl_minutes, expires_at) {
                // Asked for more than the creating key has left.
                (Some(_), Some(e)) if e > own => {
                    return Err(ApiError::bad(
                        "ttl_minutes",
                        format!(
                            "must be at most {} here: the key making this request expires at {}, \
                             and a key cannot create a key that outlives it",
                            (own - now).max(0) / MS_PER_MINUTE,
                            rfc3339(own)
                        ),
                    ))
                }
                // No lifetime asked for: the default, but never past the creating key.
                (None, Some(e)) if e > own => expires_at = Some(own),
                (None, None) => expires_at = Some(own),
                _ => {}
            }
        }
        if let Some(i) = &idem {
            if let Some(earlier) = i.earlier(self.platform.db(), now).await? {
                return self
                    .resecret(issuer, user, &earlier.target, idempotency::KEY_ISSUE)
                    .await;
            }
        }
        let rand = self.random();
        let secret = Secret::generate(&rand);
        let record = KeyRecord {
            id: new_id(&rand),
            access_key: generate_access_key(&rand),
            secret_hint: secret.hint(),
            username: user.username.clone(),
            tenant_id: user.tenant_id.clone(),
            description,
            create_date: now,
            update_date: now,
            expires_at,
            last_used_at: None,
            prev_valid_until: None,
        };
        let mut batch = Batch::new();
        let created = batch
            .push(key_store::insert_within_limit(
                &record,
                &secret.hash(),
                policy.max_keys_per_user,
                now,
            ))
            .then_if_changed(audit::record_if_changed(
                now,
                issuer.actor(),
                "api_key.create",
                &format!("{}/{}", user.username, record.id),
                Some(&user.tenant_id),
                &format!("access_key={}", record.access_key),
            ))
            .handle();
        if let Some(i) = &idem {
            batch.extend(i.record(&record.id, None, now));
            // Refused at the limit: the request made no key, so it is not remembered either.
            batch.push(i.forget_unless_key(&record.id));
        }
        let done = batch
            .run(self.platform.db())
            .await
            .map_err(|e| twin_or(e, ApiError::from))?;
        if !done.did_change(created) {
            return Err(ApiError::Conflict(format!(
                "{} already holds {} unexpired keys, the most allowed (max_keys_per_user); \
                 delete one first",
                user.username, policy.max_keys_per_user
            )));
        }
        Ok(
            Reply::ok(created_json(&record, &secret))
                .with_message("API key generated successfully"),
        )
    }

    /// What `GET /api/v1/me/limits` shows: how long a key made now by this caller may live, and
    /// how many more the caller may hold.
    pub(crate) async fn key_limits(
        &self,
        username: &str,
        own_expiry: Option<i64>,
    ) -> Result<Reply> {
        let policy = self.key_policy().await?;
        let now = self.platform.now_ms();
        let active = key_store::count_active(self.platform.db(), username, now).await?;
        let by_setting = (policy.max_ttl_minutes > 0).then_some(policy.max_ttl_minutes);
        let by_own_key = own_expiry.map(|e| (e - now).max(0) / MS_PER_MINUTE);
        let max_ttl = match (by_setting, by_own_key) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Reply::ok(KeyLimits {
            max_ttl_minutes: max_ttl,
            admin_max_ttl_minutes: policy.max_ttl_minutes,
            self_service_keys: policy.self_service_keys,
            max_keys_per_user: policy.max_keys_per_user,
            active_keys: active,
        }))
    }

    /// One page of `username`'s keys, oldest first.
    pub(crate) async fn list_keys(&self, username: &str, req: &Request) -> Result<Reply> {
        let page = PageRequest::parse(req)?;
        let after = page.after.as_ref().map(|c| (c.int, c.text.as_str()));
        let rows =
            key_store::list_for_user(self.platform.db(), username, after, page.fetch()).await?;
        let (rows, next) = page.cut(rows, |k| Cursor {
            int: k.create_date,
            text: k.id.clone(),
        });
        Ok(Reply::ok(rows.iter().map(key_json).collect::<Vec<_>>()).next_page(req, next))
    }

    /// Revoke one of `user`'s keys; 404 if it is not theirs.
    pub(crate) async fn revoke_key(
        &self,
        issuer: Issuer<'_>,
        user: &User,
        id: &str,
    ) -> Result<Reply> {
        let now = self.platform.now_ms();
        let mut batch = Batch::new();
        let deleted = batch
            .push(key_store::delete_for_user(id, &user.username))
            .then_if_changed(audit::record_if_changed(
                now,
                issuer.actor(),
                "api_key.delete",
                &format!("{}/{id}", user.username),
                Some(&user.tenant_id),
                "",
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(deleted) {
            return Err(not_found_key(id));
        }
        super::auth::forget_verified(Some(id));
        Ok(Reply::ok(true))
    }

    /// Give a key a new secret; the old one keeps working for `grace_minutes`. With an
    /// Idempotency-Key this rotation already carried out, the key gets a new secret again and
    /// the grace the first attempt granted stays as it was. `caller_hash` is the SHA-256 of the
    /// secret that authenticated the request, which may then authenticate its replay.
    pub(crate) async fn rotate_key(
        &self,
        issuer: Issuer<'_>,
        user: &User,
        id: &str,
        body: Rotate,
        idem: Option<(Idem, Option<String>)>,
    ) -> Result<Reply> {
        let grace = body.grace_minutes.unwrap_or(0);
        if !(0..=MAX_GRACE_MINUTES).contains(&grace) {
            return Err(ApiError::bad(
                "grace_minutes",
                format!("must be between 0 and {MAX_GRACE_MINUTES}"),
            ));
        }
        if let Some((i, _)) = &idem {
            let now = self.platform.now_ms();
            if let Some(earlier) = i.earlier(self.platform.db(), now).await? {
                return self
                    .resecret(issuer, user, &earlier.target, idempotency::KEY_ROTATE)
                    .await;
            }
        }
        // Read first, so that once the new secret is committed nothing can fail before the caller
        // has it: a failure after the commit would leave a key whose only valid secret nobody holds.
        let mut record = key_store::get_for_user(self.platform.db(), id, &user.username)
            .await?
            .ok_or_else(|| not_found_key(id))?;
        may_rotate(issuer, &record)?;
        let now = self.platform.now_ms();
        let secret = Secret::generate(&self.random());
        let until = (grace > 0).then(|| now + grace * MS_PER_MINUTE);
        let mut batch = Batch::new();
        let rotated = batch
            .push(key_store::rotate(
                id,
                &user.username,
                &secret.hash(),
                &secret.hint(),
                until,
                now,
            ))
            .then_if_changed(audit::record_if_changed(
                now,
                issuer.actor(),
                "api_key.rotate",
                &format!("{}/{id}", user.username),
                Some(&user.tenant_id),
                &format!("grace_minutes={grace}"),
            ))
            .handle();
        if let Some((i, caller_hash)) = idem {
            batch.extend(i.record(id, caller_hash, now));
        }
        let done = batch
            .run(self.platform.db())
            .await
            .map_err(|e| twin_or(e, ApiError::from))?;
        if !done.did_change(rotated) {
            return Err(not_found_key(id));
        }
        super::auth::forget_verified(Some(id));
        record.secret_hint = secret.hint();
        record.update_date = now;
        record.prev_valid_until = until;
        Ok(Reply::ok(rotated_json(&record, &secret)).with_message("API key rotated successfully"))
    }

    /// The replay of a keyed creation or rotation (`action`) of key `id`: a new secret for the
    /// same key, answered as the first attempt would have been. One batch; a key that is gone
    /// since (revoked, purged) is a 404, and a 404 is all a replay of it will ever get.
    async fn resecret(
        &self,
        issuer: Issuer<'_>,
        user: &User,
        id: &str,
        action: &str,
    ) -> Result<Reply> {
        let gone = || {
            ApiError::NotFound(format!(
                "The key this Idempotency-Key request made or rotated ({id}) is gone"
            ))
        };
        let mut record = key_store::get_for_user(self.platform.db(), id, &user.username)
            .await?
            .ok_or_else(gone)?;
        // A replay hands over a secret too: the same lifetime rule as the request itself.
        may_rotate(issuer, &record)?;
        let now = self.platform.now_ms();
        let secret = Secret::generate(&self.random());
        let mut batch = Batch::new();
        let resecreted = batch
            .push(key_store::resecret(
                id,
                &user.username,
                &secret.hash(),
                &secret.hint(),
                now,
            ))
            .then_if_changed(audit::record_if_changed(
                now,
                issuer.actor(),
                action,
                &format!("{}/{id}", user.username),
                Some(&user.tenant_id),
                "replayed (Idempotency-Key): new secret",
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(resecreted) {
            return Err(gone());
        }
        super::auth::forget_verified(Some(id));
        record.secret_hint = secret.hint();
        record.update_date = now;
        Ok(if action == idempotency::KEY_ROTATE {
            Reply::ok(rotated_json(&record, &secret)).with_message("API key rotated successfully")
        } else {
            Reply::ok(created_json(&record, &secret)).with_message("API key generated successfully")
        })
    }
}

fn rotated_json(k: &KeyRecord, secret: &Secret) -> RotatedKey {
    let c = created_json(k, secret);
    RotatedKey {
        id: c.id,
        token: c.token,
        access_key: c.access_key,
        secret_key: c.secret_key,
        secret_hint: c.secret_hint,
        description: c.description,
        tenant_id: c.tenant_id,
        create_date: c.create_date,
        expires_at: c.expires_at,
        previous_secret_valid_until: k.prev_valid_until.map(rfc3339),
    }
}

/// A key may rotate itself, or a key that ends no later than it does: rotating a longer-lived key
/// would hand its new secret, and so its lifetime, to the shorter-lived one.
fn may_rotate(issuer: Issuer<'_>, target: &KeyRecord) -> Result<()> {
    if let Issuer::SelfService {
        expires_at: Some(own),
        ..
    } = issuer
    {
        if target.expires_at.is_none_or(|e| e > own) {
            return Err(ApiError::Forbidden(format!(
                "The key making this request expires at {}, before key {}; a key may rotate \
                 only itself or keys that expire no later than it does",
                rfc3339(own),
                target.id
            )));
        }
    }
    Ok(())
}

fn not_found_key(id: &str) -> ApiError {
    ApiError::NotFound(format!("No API key with id {id}"))
}

fn created_json(k: &KeyRecord, secret: &Secret) -> CreatedKey {
    CreatedKey {
        id: k.id.clone(),
        token: format!("{}:{}", k.access_key, secret.expose()),
        access_key: k.access_key.clone(),
        secret_key: secret.expose().to_owned(),
        secret_hint: k.secret_hint.clone(),
        description: k.description.clone(),
        tenant_id: k.tenant_id.clone(),
        create_date: rfc3339(k.create_date),
        expires_at: k.expires_at.map(rfc3339),
    }
}
