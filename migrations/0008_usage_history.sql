-- Migration number: 0008 	 2026-12-01T16:30:00.000Z
-- Usage history: per tenant, gateway key ('' for a call by model id) and model, the requests,
-- input and output tokens and rejected requests of each hour and each day (UTC), added to as
-- calls are recorded (by a Durable Object's flush, or by the call's own write when no object
-- counts it). No foreign keys: history outlives a deleted gateway key; a deleted tenant's goes
-- with it.
CREATE TABLE IF NOT EXISTS usage_buckets (
  tenant_id     TEXT NOT NULL,
  key_id        TEXT NOT NULL,
  model         TEXT NOT NULL,
  granularity   TEXT NOT NULL CHECK (granularity IN ('hour', 'day')),
  start_ms      INTEGER NOT NULL,
  requests      INTEGER NOT NULL DEFAULT 0,
  input_tokens  INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0,
  rejected      INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, granularity, start_ms, key_id, model)
);
CREATE INDEX IF NOT EXISTS usage_buckets_key ON usage_buckets(tenant_id, key_id, granularity, start_ms);
CREATE INDEX IF NOT EXISTS usage_buckets_model ON usage_buckets(tenant_id, model, granularity, start_ms);
