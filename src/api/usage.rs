//! Usage history (`GET /api/v1/ai_keys/{id}/usage`, `GET /api/v1/usage`): a gateway key's, a
//! model's or the whole tenant's requests, input and output tokens and rejected requests per hour
//! or per day (UTC) over a time range, oldest first, paged.

use super::auth::Caller;
use super::error::ApiError;
use super::http::Request;
use super::{App, Reply, Result};
use crate::domain::time::{parse_rfc3339, rfc3339};
use crate::store::usage::{self, Query};
use crate::store::{ai_keys, Platform};
use serde::Serialize;

/// Buckets per page when none is asked for (a day of hours).
pub const DEFAULT_PAGE_SIZE: i64 = 24;
/// Largest page (a month of hours and then some).
pub const MAX_PAGE_SIZE: i64 = 1000;
/// Highest page number accepted (offsets stay exact as D1's JavaScript numbers).
pub const MAX_PAGE: i64 = 1_000_000;
/// Longest model filter accepted.
pub const MODEL_MAX: usize = 256;
const HOUR_MS: i64 = 3_600_000;

// One bucket of usage history.
/// The usage of one hour or one day (UTC), summed over what the route covers.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct UsagePoint {
    /// When the bucket starts (RFC 3339, UTC): the hour, or midnight of the day.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub start: String,
    /// Relayed calls that got an answer.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub requests: u64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub input_tokens: u64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub output_tokens: u64,
    /// Calls refused by a limit over time (429, or 400 `request_over_limit`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub rejected: u64,
}

// One page of usage history.
/// One page of usage history, oldest bucket first; buckets without any call are left out.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(serde::Deserialize))]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct UsagePage {
    /// `hour` or `day`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["hour", "day"])))]
    pub granularity: std::borrow::Cow<'static, str>,
    /// The range asked for (`from` inclusive, `to` exclusive), as bucket starts are compared.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub from: String,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::api::doc::scalars::DateTime", extend("format" = "date-time")))]
    pub to: String,
    /// Buckets with usage in the range, over all pages.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("minimum" = 0)))]
    pub total: i64,
    pub items: Vec<UsagePoint>,
}

fn param(req: &Request, name: &str) -> Option<String> {
    req.query_param(name).filter(|v| !v.is_empty())
}

/// An integer parameter; sent empty it is a 400 like any other non-integer (the document's
/// schema is an integer).
fn int_param(req: &Request, name: &str, default: i64, max: i64) -> Result<i64> {
    let why = || ApiError::bad(name, format!("must be an integer from 1 to {max}"));
    match req.query_param(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(why),
    }
}

fn time_param(req: &Request, name: &str) -> Result<Option<i64>> {
    param(req, name)
        .map(|raw| {
            parse_rfc3339(&raw).ok_or_else(|| {
                ApiError::bad(
                    name,
                    "must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
                )
            })
        })
        .transpose()
}

impl<P: Platform> App<P> {
    /// The history of the caller's tenant, of one of its gateway keys (`key_id`), or of one model
    /// (`model` query parameter).
    async fn usage_page(
        &self,
        caller: &Caller,
        key_id: Option<&str>,
        req: &Request,
    ) -> Result<Reply> {
        let granularity = match param(req, "granularity").as_deref() {
            None | Some("hour") => "hour",
            Some("day") => "day",
            Some(_) => return Err(ApiError::bad("granularity", "must be hour or day")),
        };
        let now = self.platform.now_ms();
        let to = time_param(req, "to")?.unwrap_or(now);
        let span = if granularity == "hour" { 24 } else { 30 * 24 };
        let from = time_param(req, "from")?.unwrap_or(to - span * HOUR_MS);
        if from >= to {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
        let model = param(req, "model");
        if model
            .as_ref()
            .is_some_and(|m| m.chars().count() > MODEL_MAX)
        {
            return Err(ApiError::bad(
                "model",
                format!("must be at most {MODEL_MAX} characters"),
            ));
        }
        let page = int_param(req, "page", 1, MAX_PAGE)?;
        let page_size = int_param(req, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let q = Query {
            tenant_id: &caller.tenant_id,
            key_id,
            model: model.as_deref(),
            granularity,
            from_ms: from,
            to_ms: to,
            limit: page_size,
            offset: (page - 1) * page_size,
        };
        let (total, points) = usage::history(self.platform.db(), &q).await?;
        Ok(Reply::ok(UsagePage {
            granularity: granularity.into(),
            from: rfc3339(from),
            to: rfc3339(to),
            total,
            items: points
                .into_iter()
                .map(|p| UsagePoint {
                    start: rfc3339(p.start_ms),
                    requests: p.totals.requests,
                    input_tokens: p.totals.input_tokens,
                    output_tokens: p.totals.output_tokens,
                    rejected: p.totals.rejected,
                })
                .collect(),
        }))
    }

    pub(crate) async fn tenant_usage(&self, caller: &Caller, req: &Request) -> Result<Reply> {
        self.usage_page(caller, None, req).await
    }

    pub(crate) async fn ai_key_usage(
        &self,
        caller: &Caller,
        id: &str,
        req: &Request,
    ) -> Result<Reply> {
        // A foreign or unknown id is a 404, as for the key itself.
        ai_keys::get(self.platform.db(), &caller.tenant_id, id)
            .await?
            .ok_or_else(|| ApiError::NotFound("No AI key with this id in this tenant".into()))?;
        self.usage_page(caller, Some(id), req).await
    }
}
