//! keyward: API keys for AI platforms, as a Cloudflare Worker.
//!
//! The core (`api`, `domain`, `store`, `jobs`) knows nothing of Workers and is tested natively over
//! SQLite; `worker_glue` adapts it to the Workers runtime (D1, KV, fetch, cron) on wasm32 only.

pub mod api;
pub mod catalog;
pub mod domain;
pub mod env_config;
pub mod jobs;
pub mod limits;
pub mod providers;
pub mod relay;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod worker_glue;
