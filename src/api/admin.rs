//! Admin routes: tenants, users, users' keys, settings, audit. All need the admin token.

use super::error::ApiError;
use super::http::Request;
use super::idempotency::{self, twin_or, Idem, ADMIN_SCOPE};
use super::keys::{Issuer, ABSOLUTE_MAX_TTL_MINUTES};
use super::page::{Cursor, PageRequest};
use super::{body, App, Reply, Result};
use crate::domain::names::{Role, TenantName, UserStatus, Username};
use crate::domain::new_id;
use crate::domain::states::{BudgetPeriod, UsagePolicy};
use crate::domain::time::{parse_rfc3339, rfc3339};
use crate::store::settings::{self, KeyPolicy};
use crate::store::tenants::{self, Tenant};
use crate::store::users::{self, User};
use crate::store::{audit, Batch, Db, DbError, Platform};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

const ADMIN: audit::Actor<'static> = audit::Actor::Admin;

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "CreateTenantRequest"))]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 1 to 128 characters, not only whitespace, no control characters.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1, "maxLength" = 128, "pattern" = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]*$")))]
    pub name: String,
}

/// Optional fields may also be null, which means the same as leaving them out.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "CreateUserRequest"))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::Username")
    )]
    pub username: String,
    /// An existing tenant (404 if there is none). Without it a new tenant named after the user is
    /// created and the user is its owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Default `member` with tenant_id; without tenant_id only `owner` is allowed (and is the
    /// default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// At least one of role, status. Optional fields may also be null, which means the same as leaving
/// them out.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UpdateUserRequest", extend("minProperties" = 1)))]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<UserStatus>,
}

/// Any of the settings; those not sent keep their value. At least one is required.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UpdateSettingsRequest", extend("minProperties" = 1)))]
#[serde(deny_unknown_fields)]
pub struct PutSettings {
    /// Minutes; 0 means no limit.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 52560000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_max_ttl_minutes: Option<i64>,
    /// Whether users may create keys for themselves.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "bool"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_service_keys: Option<bool>,
    /// The most unexpired keys one user may hold.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 1, "maximum" = 10000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys_per_user: Option<i64>,
    /// The most gateway keys one tenant may hold.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 1, "maximum" = 100000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ai_keys_per_tenant: Option<i64>,
    /// The most provider connections one tenant may hold.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 1, "maximum" = 10000)))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_tenant: Option<i64>,
}

// The deployment settings, as `GET` and `PUT /api/v1/admin/settings` answer them.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Settings"))]
pub struct SettingsView {
    /// The longest lifetime a new key may have, in minutes, and the lifetime a key gets when none
    /// is asked for; 0 means no limit. Default 129600 (90 days).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 52560000)))]
    pub auth_token_max_ttl_minutes: i64,
    /// Whether users may create keys for themselves with `POST /api/v1/api_keys`. Default true; the
    /// admin API can always issue keys.
    pub self_service_keys: bool,
    /// The most unexpired keys one user may hold, however they were issued; one more is a 409.
    /// Default 50.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 10000)))]
    pub max_keys_per_user: i64,
    /// The most gateway keys one tenant may hold; one more is a 409 naming the limit. Lowering it
    /// removes none. Default 1000.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 100000)))]
    pub max_ai_keys_per_tenant: i64,
    /// The most provider connections (connected models) one tenant may hold; one more is a 409
    /// naming the limit, while replacing an existing connection's key is always possible. Lowering
    /// it removes none. Default 200.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1, "maximum" = 10000)))]
    pub max_connections_per_tenant: i64,
}

pub fn settings_json(p: &KeyPolicy) -> SettingsView {
    SettingsView {
        auth_token_max_ttl_minutes: p.max_ttl_minutes,
        self_service_keys: p.self_service_keys,
        max_keys_per_user: p.max_keys_per_user,
        max_ai_keys_per_tenant: p.max_ai_keys_per_tenant,
        max_connections_per_tenant: p.max_connections_per_tenant,
    }
}

/// 409 for a username that exists in some spelling; names the stored one when it differs.
fn username_taken(asked: &str, stored: &str) -> ApiError {
    if asked == stored {
        ApiError::Conflict(format!("username {asked} already exists"))
    } else {
        ApiError::Conflict(format!(
            "username {asked} already exists as {stored} (usernames are compared without regard to letter case)"
        ))
    }
}

// A tenant as the admin API shows it.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Tenant"))]
pub struct TenantView {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub id: String,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minLength" = 1, "maxLength" = 128)))]
    pub name: String,
    /// When the tenant was created (RFC 3339, UTC).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// Requests per minute over all of the tenant's relay calls, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000)))]
    pub rpm_limit: u64,
    /// Tokens per minute over all of the tenant's relay calls, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000_i64)))]
    pub tpm_limit: u64,
    /// Tokens per `budget_period` over all of the tenant's relay calls, 0 = none.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0, "maximum" = 1000000000000_i64)))]
    pub token_budget: u64,
    pub budget_period: BudgetPeriod,
    /// What the relay does past one of the tenant's limits.
    pub usage_limit_policy: UsagePolicy,
}

pub fn tenant_json(t: &Tenant) -> TenantView {
    TenantView {
        id: t.id.clone(),
        name: t.name.clone(),
        create_date: rfc3339(t.create_date),
        rpm_limit: t.limits.rpm,
        tpm_limit: t.limits.tpm,
        token_budget: t.limits.budget,
        budget_period: t.limits.period,
        usage_limit_policy: t.limits.policy,
    }
}

// `PUT /api/v1/admin/tenants/{tenant_id}/limits`.
/// The tenant's limits over time; fields not sent keep their value, at least one is required.
/// They hold over every gateway key and model of the tenant together, on top of each key's own.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "UpdateTenantLimitsRequest", extend("minProperties" = 1)))]
#[serde(deny_unknown_fields)]
pub struct PutTenantLimits {
    /// Requests per minute, 0 = none.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000)))]
    rpm_limit: Option<i64>,
    /// Tokens per minute, 0 = none.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000000_i64)))]
    tpm_limit: Option<i64>,
    /// Tokens per `budget_period`, 0 = none. A change mid-period keeps the period's spend.
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "i64", extend("minimum" = 0, "maximum" = 1000000000000_i64)))]
    token_budget: Option<i64>,
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "BudgetPeriod"))]
    budget_period: Option<String>,
    #[serde(default, deserialize_with = "body::not_null")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "UsagePolicy"))]
    usage_limit_policy: Option<String>,
}

// A user as the admin API shows it.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "User"))]
pub struct UserView {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::Username")
    )]
    pub username: String,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::api::doc::scalars::TenantId")
    )]
    pub tenant_id: String,
    pub role: Role,
    pub status: UserStatus,
    /// When the user was created.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub create_date: String,
    /// When the user's role or status last changed.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub update_date: String,
}

pub fn user_json(u: &User) -> UserView {
    UserView {
        username: u.username.clone(),
        tenant_id: u.tenant_id.clone(),
        role: u.role,
        status: u.status,
        create_date: rfc3339(u.create_date),
        update_date: rfc3339(u.update_date),
    }
}

// One audit log entry. `actor` is `null` for the admin token, which has no name: a user called
// `admin` stays a user.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "AuditEntry"))]
pub struct AuditEntryView<'a> {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 1)))]
    pub id: i64,
    /// When the change happened.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub at: String,
    /// Who made the change: `admin` (the deployment's admin token), `user` (a user's key; `actor`
    /// is their name), `system` (keyward itself: a budget alert's webhook delivery) or `unknown`
    /// (an entry written before the kind was recorded whose actor cannot be told apart).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "crate::store::audit::ActorKind")
    )]
    pub actor_kind: Cow<'static, str>,
    /// The username whose key made the change; null when the admin token or keyward itself did.
    /// A user named `admin` is still `actor_kind: user`.
    pub actor: Option<Cow<'a, str>>,
    /// What happened, e.g. `tenant.create`, `user.update`, `api_key.rotate`, `settings.update`.
    pub action: Cow<'a, str>,
    /// What it happened to: a tenant id, a username, `<username>/<key id>` or a setting name.
    pub target: Cow<'a, str>,
    /// The tenant concerned; null for deployment-wide changes.
    pub tenant_id: Option<Cow<'a, str>>,
    /// Extra detail; never a secret.
    pub detail: Cow<'a, str>,
}

impl<P: Platform> App<P> {
    pub(crate) async fn list_tenants(&self, req: &Request) -> Result<Reply> {
        let page = PageRequest::parse(req)?;
        let after = page.after.as_ref().map(|c| (c.int, c.text.as_str()));
        let rows = tenants::list(self.platform.db(), after, page.fetch()).await?;
        let (rows, next) = page.cut(rows, |t| Cursor {
            int: t.create_date,
            text: t.id.clone(),
        });
        Ok(Reply::ok(rows.iter().map(tenant_json).collect::<Vec<_>>()).next_page(req, next))
    }

    pub(crate) async fn create_tenant_request(&self, req: &Request) -> Result<Reply> {
        let body = body::parse(req)?;
        let idem = idempotency::key_of(req)?
            .map(|k| Idem::new(ADMIN_SCOPE, &k, idempotency::TENANT_CREATE, "", &req.body));
        self.create_tenant(body, idem, req).await
    }

    pub(crate) async fn get_tenant(&self, id: &str) -> Result<Reply> {
        Ok(Reply::ok(tenant_json(&self.tenant(id).await?)))
    }

    pub(crate) async fn put_tenant_limits_request(&self, id: &str, req: &Request) -> Result<Reply> {
        let body: PutTenantLimits = body::parse(req)?;
        use super::ai_keys::{check_over_time, check_period, check_policy};
        use super::ai_keys::{BUDGET_MAX, RPM_MAX, TPM_MAX};
        let over = |f: &str, v: Option<i64>, max: i64| {
            v.map(|n| check_over_time(f, n, max).map(|n| n as u64))
                .transpose()
        };
        let rpm = over("rpm_limit", body.rpm_limit, RPM_MAX)?;
        let tpm = over("tpm_limit", body.tpm_limit, TPM_MAX)?;
        let budget = over("token_budget", body.token_budget, BUDGET_MAX)?;
        let period = body
            .budget_period
            .as_deref()
            .map(check_period)
            .transpose()?;
        let policy = body
            .usage_limit_policy
            .as_deref()
            .map(check_policy)
            .transpose()?;
        if rpm.is_none()
            && tpm.is_none()
            && budget.is_none()
            && period.is_none()
            && policy.is_none()
        {
            return Err(ApiError::BadRequest(
                "Send at least one of rpm_limit, tpm_limit, token_budget, budget_period, \
                 usage_limit_policy"
                    .into(),
            ));
        }
        let mut tenant = self.tenant(id).await?;
        let l = &mut tenant.limits;
        l.rpm = rpm.unwrap_or(l.rpm);
        l.tpm = tpm.unwrap_or(l.tpm);
        l.budget = budget.unwrap_or(l.budget);
        l.period = period.unwrap_or(l.period);
        l.policy = policy.unwrap_or(l.policy);
        let now = self.platform.now_ms();
        let detail = format!(
            "rpm_limit={} tpm_limit={} token_budget={} budget_period={} usage_limit_policy={}",
            l.rpm,
            l.tpm,
            l.budget,
            l.period.as_str(),
            l.policy.as_str()
        );
        let mut batch = Batch::new();
        let changed = batch
            .push(tenants::set_limits(&tenant.id, &tenant.limits))
            .then_if_changed(audit::record_if_changed(
                now,
                ADMIN,
                "tenant.limits",
                &tenant.id,
                Some(&tenant.id),
                &detail,
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(changed) {
            return Err(ApiError::NotFound(format!("No tenant with id {id}")));
        }
        // A cached verification carries the tenant's limits; let the next request read them.
        super::auth::forget_verified(None);
        Ok(Reply::ok(tenant_json(&tenant)))
    }

    pub(crate) async fn list_users(&self, req: &Request) -> Result<Reply> {
        let page = PageRequest::parse(req)?;
        let after = page.after.as_ref().map(|c| (c.int, c.text.as_str()));
        let rows = users::list(self.platform.db(), after, page.fetch()).await?;
        let (rows, next) = page.cut(rows, |u| Cursor {
            int: u.create_date,
            text: u.username.clone(),
        });
        Ok(Reply::ok(rows.iter().map(user_json).collect::<Vec<_>>()).next_page(req, next))
    }

    pub(crate) async fn create_user_request(&self, req: &Request) -> Result<Reply> {
        self.create_user(body::parse(req)?, req).await
    }

    pub(crate) async fn get_user(&self, username: &str) -> Result<Reply> {
        Ok(Reply::ok(user_json(&self.user(username).await?)))
    }

    pub(crate) async fn patch_user_request(&self, username: &str, req: &Request) -> Result<Reply> {
        self.patch_user(username, body::parse(req)?).await
    }

    pub(crate) async fn issue_user_key(&self, username: &str, req: &Request) -> Result<Reply> {
        let user = self.user(username).await?;
        let body = body::parse(req)?;
        let idem = idempotency::key_of(req)?.map(|k| {
            Idem::new(
                ADMIN_SCOPE,
                &k,
                idempotency::KEY_ISSUE,
                &user.username,
                &req.body,
            )
        });
        self.issue_key(Issuer::Admin, &user, body, idem).await
    }

    pub(crate) async fn list_user_keys(&self, username: &str, req: &Request) -> Result<Reply> {
        let user = self.user(username).await?;
        self.list_keys(&user.username, req).await
    }

    pub(crate) async fn revoke_user_key(&self, username: &str, id: &str) -> Result<Reply> {
        let user = self.user(username).await?;
        self.revoke_key(Issuer::Admin, &user, id).await
    }

    pub(crate) async fn put_settings_request(&self, req: &Request) -> Result<Reply> {
        self.put_settings(body::parse(req)?).await
    }

    async fn tenant(&self, id: &str) -> Result<Tenant> {
        tenants::get(self.platform.db(), id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No tenant with id {id}")))
    }

    async fn user(&self, username: &str) -> Result<User> {
        users::get(self.platform.db(), username)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No user named {username}")))
    }

    /// Create a tenant. With an Idempotency-Key this request already carried out, the tenant it
    /// made is answered again: never a second tenant.
    async fn create_tenant(
        &self,
        body: CreateTenant,
        idem: Option<Idem>,
        req: &Request,
    ) -> Result<Reply> {
        let name = TenantName::parse(&body.name)
            .map_err(|e| ApiError::bad("name", e))?
            .into_string();
        let now = self.platform.now_ms();
        let db = self.platform.db();
        if let Some(i) = &idem {
            if let Some(earlier) = i.earlier(db, now).await? {
                return match tenants::get(db, &earlier.target).await? {
                    Some(t) => Ok(Reply::ok(tenant_json(&t))),
                    None => Err(ApiError::NotFound(format!(
                        "The tenant this Idempotency-Key request made ({}) has been deleted since",
                        earlier.target
                    ))),
                };
            }
        }
        let tenant = Tenant {
            id: new_id(|b| self.platform.fill_random(b)),
            name,
            create_date: now,
            limits: crate::limits::Limits::NONE,
        };
        let mut batch = vec![
            tenants::insert(&tenant),
            audit::record(
                now,
                ADMIN,
                "tenant.create",
                &tenant.id,
                Some(&tenant.id),
                "",
            ),
        ];
        batch.extend(self.seed_new_tenant(req, &tenant.id, now)?);
        if let Some(i) = &idem {
            batch.extend(i.record(&tenant.id, None, now));
        }
        db.batch(batch)
            .await
            .map_err(|e| twin_or(e, ApiError::from))?;
        Ok(Reply::ok(tenant_json(&tenant)))
    }

    pub(crate) async fn delete_tenant(&self, id: &str) -> Result<Reply> {
        self.tenant(id).await?;
        let now = self.platform.now_ms();
        let mut batch = Batch::new();
        let deleted = tenants::delete(&mut batch, id)
            .then_if_changed(audit::record_if_changed(
                now,
                ADMIN,
                "tenant.delete",
                id,
                Some(id),
                "",
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(deleted) {
            return Err(ApiError::NotFound(format!("No tenant with id {id}")));
        }
        super::auth::forget_verified(None);
        Ok(Reply::ok(true))
    }

    async fn create_user(&self, body: CreateUser, req: &Request) -> Result<Reply> {
        let username = Username::parse(&body.username).map_err(|e| ApiError::bad("username", e))?;
        let now = self.platform.now_ms();
        let mut batch = Vec::new();
        let (tenant_id, role) = match body.tenant_id {
            Some(tid) => {
                self.tenant(&tid).await.map_err(|e| match e {
                    ApiError::NotFound(_) => {
                        ApiError::NotFound(format!("tenant_id: no tenant with id {tid}"))
                    }
                    other => other,
                })?;
                (tid, body.role.unwrap_or(Role::Member))
            }
            None => {
                if body.role.is_some_and(|r| r != Role::Owner) {
                    return Err(ApiError::bad(
                        "role",
                        "a user created without tenant_id gets a new tenant and is its owner",
                    ));
                }
                let tenant = Tenant {
                    id: new_id(|b| self.platform.fill_random(b)),
                    name: username.as_str().to_owned(),
                    create_date: now,
                    limits: crate::limits::Limits::NONE,
                };
                batch.push(tenants::insert(&tenant));
                batch.push(audit::record(
                    now,
                    ADMIN,
                    "tenant.create",
                    &tenant.id,
                    Some(&tenant.id),
                    "",
                ));
                batch.extend(self.seed_new_tenant(req, &tenant.id, now)?);
                (tenant.id, Role::Owner)
            }
        };
        let user = User {
            username: username.as_str().to_owned(),
            tenant_id,
            role,
            status: UserStatus::Active,
            create_date: now,
            update_date: now,
        };
        // Check the username before inserting a tenant for it: a 409 must leave no tenant behind
        // (the batch is atomic anyway; this only gives the clearer error first). The lookup and
        // the unique index behind it ignore letter case, so another spelling is the same user.
        if let Some(existing) = users::get(self.platform.db(), &user.username).await? {
            return Err(username_taken(&user.username, &existing.username));
        }
        batch.push(users::insert(&user));
        batch.push(audit::record(
            now,
            ADMIN,
            "user.create",
            &user.username,
            Some(&user.tenant_id),
            &format!("role={}", user.role.as_str()),
        ));
        // A concurrent creation of the same name in any spelling fails the unique index on the
        // folded form (SQLite names the index, not the column, so say which field it is).
        self.platform.db().batch(batch).await.map_err(|e| match e {
            DbError::Unique(_) => username_taken(&user.username, &user.username),
            other => other.into(),
        })?;
        Ok(Reply::ok(user_json(&user)))
    }

    async fn patch_user(&self, username: &str, body: PatchUser) -> Result<Reply> {
        if body.role.is_none() && body.status.is_none() {
            return Err(ApiError::BadRequest(
                "Send at least one of role, status".into(),
            ));
        }
        let mut user = self.user(username).await?;
        if let Some(r) = body.role {
            user.role = r;
        }
        if let Some(s) = body.status {
            user.status = s;
        }
        let now = self.platform.now_ms();
        user.update_date = now;
        let mut batch = Batch::new();
        let updated = batch
            .push(users::update(&user))
            .then_if_changed(audit::record_if_changed(
                now,
                ADMIN,
                "user.update",
                &user.username,
                Some(&user.tenant_id),
                &format!(
                    "role={} status={}",
                    user.role.as_str(),
                    user.status.as_str()
                ),
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(updated) {
            return Err(ApiError::NotFound(format!("No user named {username}")));
        }
        super::auth::forget_verified(None);
        Ok(Reply::ok(user_json(&user)))
    }

    pub(crate) async fn delete_user(&self, username: &str) -> Result<Reply> {
        let user = self.user(username).await?;
        let now = self.platform.now_ms();
        // By the stored spelling: the path may spell the name in any case.
        let mut batch = Batch::new();
        let deleted = users::delete(&mut batch, &user.username)
            .then_if_changed(audit::record_if_changed(
                now,
                ADMIN,
                "user.delete",
                &user.username,
                Some(&user.tenant_id),
                "",
            ))
            .handle();
        if !batch.run(self.platform.db()).await?.did_change(deleted) {
            return Err(ApiError::NotFound(format!("No user named {username}")));
        }
        super::auth::forget_verified(None);
        Ok(Reply::ok(true))
    }

    pub(crate) async fn settings(&self) -> Result<Reply> {
        Ok(Reply::ok(settings_json(&self.key_policy().await?)))
    }

    /// Change any of the settings; those not sent keep their value.
    async fn put_settings(&self, body: PutSettings) -> Result<Reply> {
        if let Some(v) = body.auth_token_max_ttl_minutes {
            if !(0..=ABSOLUTE_MAX_TTL_MINUTES).contains(&v) {
                return Err(ApiError::bad(
                    settings::MAX_TTL,
                    format!("must be between 0 (no limit) and {ABSOLUTE_MAX_TTL_MINUTES}"),
                ));
            }
        }
        // The counted maximums: (setting, value sent, largest allowed).
        let maximums = [
            (
                settings::MAX_KEYS_PER_USER,
                body.max_keys_per_user,
                settings::MAX_KEYS_PER_USER_LIMIT,
            ),
            (
                settings::MAX_AI_KEYS_PER_TENANT,
                body.max_ai_keys_per_tenant,
                settings::MAX_AI_KEYS_PER_TENANT_LIMIT,
            ),
            (
                settings::MAX_CONNECTIONS_PER_TENANT,
                body.max_connections_per_tenant,
                settings::MAX_CONNECTIONS_PER_TENANT_LIMIT,
            ),
        ];
        for (name, value, most) in maximums {
            if value.is_some_and(|v| !(1..=most).contains(&v)) {
                return Err(ApiError::bad(name, format!("must be between 1 and {most}")));
            }
        }
        let mut batch = Vec::new();
        let mut changed = Vec::new();
        if let Some(v) = body.auth_token_max_ttl_minutes {
            batch.push(settings::put_int(settings::MAX_TTL, v));
            changed.push(format!("{}={v}", settings::MAX_TTL));
        }
        if let Some(v) = body.self_service_keys {
            batch.push(settings::put_bool(settings::SELF_SERVICE_KEYS, v));
            changed.push(format!("{}={v}", settings::SELF_SERVICE_KEYS));
        }
        for (name, value, _) in maximums {
            if let Some(v) = value {
                batch.push(settings::put_int(name, v));
                changed.push(format!("{name}={v}"));
            }
        }
        if batch.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "Send at least one of {}, {}, {}",
                settings::MAX_TTL,
                settings::SELF_SERVICE_KEYS,
                maximums.map(|(name, _, _)| name).join(", ")
            )));
        }
        // Read before writing, so the answer can be built without a read after the commit.
        let mut policy = self.key_policy().await?;
        let names: Vec<&str> = changed
            .iter()
            .map(|c| c.split('=').next().unwrap_or_default())
            .collect();
        let now = self.platform.now_ms();
        batch.push(audit::record(
            now,
            ADMIN,
            "settings.update",
            &names.join(","),
            None,
            &changed.join(" "),
        ));
        self.platform.db().batch(batch).await?;
        policy.max_ttl_minutes = body
            .auth_token_max_ttl_minutes
            .unwrap_or(policy.max_ttl_minutes);
        policy.self_service_keys = body.self_service_keys.unwrap_or(policy.self_service_keys);
        policy.max_keys_per_user = body.max_keys_per_user.unwrap_or(policy.max_keys_per_user);
        policy.max_ai_keys_per_tenant = body
            .max_ai_keys_per_tenant
            .unwrap_or(policy.max_ai_keys_per_tenant);
        policy.max_connections_per_tenant = body
            .max_connections_per_tenant
            .unwrap_or(policy.max_connections_per_tenant);
        Ok(Reply::ok(settings_json(&policy)))
    }

    pub(crate) async fn audit(&self, req: &Request) -> Result<Reply> {
        let tenant_id = req.query_param("tenant_id").filter(|t| !t.is_empty());
        let since = match req.query_param("since").filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_rfc3339(&s).ok_or_else(|| {
                ApiError::bad(
                    "since",
                    "must be an RFC 3339 time such as 2026-01-31T00:00:00Z",
                )
            })?),
            None => None,
        };
        // `limit` keeps its old bound (the page size, at most 1000); `cursor` continues.
        let page = PageRequest::parse(req)?;
        let before = match &page.after {
            None => None,
            Some(c) => Some((
                c.int,
                c.text
                    .parse::<i64>()
                    .map_err(|_| ApiError::bad("cursor", "is not a cursor this API gave out"))?,
            )),
        };
        let entries = audit::list(
            self.platform.db(),
            tenant_id.as_deref(),
            since,
            before,
            page.fetch(),
        )
        .await?;
        let (entries, next) = page.cut(entries, |e| Cursor {
            int: e.at,
            text: e.id.to_string(),
        });
        Ok(Reply::ok(
            entries
                .iter()
                .map(|e| AuditEntryView {
                    id: e.id,
                    at: rfc3339(e.at),
                    actor_kind: e.actor_kind.as_str().into(),
                    actor: match e.actor_kind {
                        audit::ActorKind::Admin | audit::ActorKind::System => None,
                        audit::ActorKind::User | audit::ActorKind::Unknown => {
                            Some((&e.actor).into())
                        }
                    },
                    action: (&e.action).into(),
                    target: (&e.target).into(),
                    tenant_id: e.tenant_id.as_deref().map(Cow::Borrowed),
                    detail: (&e.detail).into(),
                })
                .collect::<Vec<_>>(),
        )
        .next_page(req, next))
    }
}
