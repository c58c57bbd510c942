//! The floors keyward's load cases are measured against: the least work the same storage and network
//! access can cost a Worker built the same way.
//!
//! - `GET /read`: one D1 point read by primary key (a user key's row), answered as JSON: the floor
//!   of key verification and of every authenticated read (`/api/v1/me`, the default models).
//! - `POST /read-fetch`: the same read, then one outbound fetch to the provider stand-in with the
//!   request's body, its answer read and passed back: the floor of the relay.
//! - `GET /health`: no storage (the harness waits for it).
//!
//! The key read is `FLOOR_KEY_ID` (seeded by bench/run.mjs); a missing row is a 404, so a floor
//! that reads nothing cannot pass for one that does.

use serde::Deserialize;
use worker::{event, Context, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result};

/// The row bench/run.mjs seeds into `api_keys`.
const FLOOR_KEY_ID: &str = "floor-key";

#[derive(Deserialize)]
struct KeyRow {
    id: String,
    username: String,
    tenant_id: String,
}

async fn read(env: &Env) -> Result<Option<KeyRow>> {
    let db = env.d1("DB")?;
    db.prepare("SELECT id, username, tenant_id FROM api_keys WHERE id = ?1")
        .bind(&[FLOOR_KEY_ID.into()])?
        .first::<KeyRow>(None)
        .await
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    match (req.method(), path.as_str()) {
        (Method::Get, "/health") => Response::from_json(&serde_json::json!({"status": "ok"})),
        (Method::Get, "/read") => match read(&env).await? {
            Some(k) => Response::from_json(&serde_json::json!({
                "id": k.id, "username": k.username, "tenant_id": k.tenant_id
            })),
            None => Response::error("no floor row", 404),
        },
        (Method::Post, "/read-fetch") => {
            if read(&env).await?.is_none() {
                return Response::error("no floor row", 404);
            }
            let body = req.bytes().await?;
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            let key = env.var("STANDIN_KEY")?.to_string();
            headers.set("authorization", &format!("Bearer {key}"))?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(body.into()));
            let url = format!("{}/v1/chat/completions", env.var("STANDIN_URL")?);
            let upstream = Request::new_with_init(&url, &init)?;
            let mut answer = Fetch::Request(upstream).send().await?;
            let status = answer.status_code();
            let bytes = answer.bytes().await?;
            let out = Headers::new();
            out.set("content-type", "application/json")?;
            Ok(Response::from_bytes(bytes)?
                .with_status(status)
                .with_headers(out))
        }
        _ => Response::error("not found", 404),
    }
}
