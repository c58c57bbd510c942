-- keyward schema, whole: what the native SQLite tests load. D1 gets it from migrations/ (applied by
-- `wrangler d1 migrations apply`); tests/migrations.rs proves that applying every migration in
-- order gives exactly this schema, so a change here needs a new migration too.
-- Idempotent: safe to apply again. Times are integer milliseconds since the Unix epoch (UTC).

-- defaults_version increases with every change to the tenant's default models; it is read with
-- every key verification and names the immutable KV entry holding those defaults.
CREATE TABLE IF NOT EXISTS tenants (
  id               TEXT PRIMARY KEY,
  name             TEXT NOT NULL,
  create_date      INTEGER NOT NULL,
  defaults_version INTEGER NOT NULL DEFAULT 0,
  -- Limits over the whole tenant (0 = none); the counters are in the tenant's Durable Object.
  rpm_limit          INTEGER NOT NULL DEFAULT 0,
  tpm_limit          INTEGER NOT NULL DEFAULT 0,
  token_budget       INTEGER NOT NULL DEFAULT 0,
  budget_period      TEXT NOT NULL DEFAULT 'month'
    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  usage_limit_policy TEXT NOT NULL DEFAULT 'reject'
    CHECK (usage_limit_policy IN ('reject', 'use_anyway'))
);

CREATE TABLE IF NOT EXISTS users (
  username    TEXT PRIMARY KEY,
  tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  status      TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
  create_date INTEGER NOT NULL,
  update_date INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS users_tenant ON users(tenant_id);
-- Usernames are unique without regard to letter case (they are ASCII; lower() folds ASCII), and
-- looked up through this index: WHERE lower(username) = lower(?1). `username` keeps the spelling
-- the admin gave.
CREATE UNIQUE INDEX IF NOT EXISTS users_username_folded ON users(lower(username));
-- The admin list pages through users and tenants in creation order (keyset paging).
CREATE INDEX IF NOT EXISTS users_created ON users(create_date, username);
CREATE INDEX IF NOT EXISTS tenants_created ON tenants(create_date, id);

-- A user's API key. Only the SHA-256 of a secret is kept; during a rotation's grace period the
-- previous secret's hash is kept too, until prev_valid_until.
CREATE TABLE IF NOT EXISTS api_keys (
  id               TEXT PRIMARY KEY,
  access_key       TEXT NOT NULL UNIQUE,
  secret_hash      TEXT NOT NULL,
  secret_hint      TEXT NOT NULL,
  prev_secret_hash TEXT,
  prev_valid_until INTEGER,
  username         TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
  tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  description      TEXT NOT NULL DEFAULT '',
  create_date      INTEGER NOT NULL,
  update_date      INTEGER NOT NULL,
  expires_at       INTEGER,
  last_used_at     INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys(username);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant_id);
CREATE INDEX IF NOT EXISTS api_keys_expires ON api_keys(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS api_keys_grace ON api_keys(prev_valid_until) WHERE prev_valid_until IS NOT NULL;

-- Deployment-wide settings an admin may change at run time (defaults come from wrangler.toml vars).
CREATE TABLE IF NOT EXISTS settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);

-- Every admin and key mutation, written in the same batch as the change. Never a secret.
-- No foreign keys: entries outlive the rows they describe. actor_kind says who acted (the admin
-- token, or a user named in actor), so no user name can pass for the admin; 'unknown' marks older
-- entries that could not be told apart when the kind was added; 'system' is keyward itself (a
-- budget alert's webhook delivery).
CREATE TABLE IF NOT EXISTS audit (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  at         INTEGER NOT NULL,
  actor      TEXT NOT NULL,
  action     TEXT NOT NULL,
  target     TEXT NOT NULL,
  tenant_id  TEXT,
  detail     TEXT NOT NULL DEFAULT '',
  actor_kind TEXT NOT NULL DEFAULT 'user' CHECK (actor_kind IN ('admin', 'user', 'unknown', 'system'))
);
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS audit_tenant_at ON audit(tenant_id, at);

-- A tenant's connection to a model provider. llm_name '' is a whole-organization connection giving
-- the factory's catalog models; otherwise the row is one model (an Azure deployment, a self-hosted
-- model, a model added by name). The id is derived from (tenant_id, factory, llm_name), so adding
-- again updates the same row. The credential is AES-256-GCM sealed with associated data binding it
-- to tenant, factory, model and id; key_version names the master key that sealed it.
CREATE TABLE IF NOT EXISTS provider_connections (
  id              TEXT PRIMARY KEY,
  tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  factory         TEXT NOT NULL,
  llm_name        TEXT NOT NULL DEFAULT '',
  model_type      TEXT,
  api_base        TEXT,
  settings        TEXT NOT NULL DEFAULT '{}',
  key_version     INTEGER,
  credential      TEXT,
  credential_hint TEXT,
  max_tokens      INTEGER,
  status          TEXT NOT NULL DEFAULT 'valid',
  create_date     INTEGER NOT NULL,
  update_date     INTEGER NOT NULL,
  UNIQUE (tenant_id, factory, llm_name)
);

-- Tokens the relay has used per model, for GET /api/v1/models' used_token.
CREATE TABLE IF NOT EXISTS model_usage (
  connection_id TEXT NOT NULL REFERENCES provider_connections(id) ON DELETE CASCADE,
  llm_name      TEXT NOT NULL,
  used_token    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (connection_id, llm_name)
);

-- A tenant's default model per type. connection_id names the connection that provides the model
-- (NULL for Builtin models), so removing a connection removes the defaults it provided, and a
-- default can never be written for a connection that is already gone.
CREATE TABLE IF NOT EXISTS tenant_defaults (
  tenant_id     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  model_type    TEXT NOT NULL,
  factory       TEXT NOT NULL,
  llm_name      TEXT NOT NULL,
  connection_id TEXT REFERENCES provider_connections(id) ON DELETE CASCADE,
  update_date   INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, model_type)
);
CREATE INDEX IF NOT EXISTS tenant_defaults_connection ON tenant_defaults(connection_id);

-- Gateway keys: a tenant's provider key for one provider/model with per-request token limits,
-- used through the relay. api_key is AES-256-GCM sealed (associated data: tenant, "ai_key",
-- endpoint, id). endpoint is the provider base URL the key was sealed for; the relay sends the key
-- there and nowhere else, whatever the tenant's connection says later. NULL: a row from before
-- keys were bound (sealed with an empty endpoint), refused by the relay until its key is set again.
-- A pool of provider keys (priority order): api_key seals the JSON array of the keys and
-- pool_hints holds the JSON array of their hints; NULL pool_hints is a pool of one. served_by is
-- the pool index of the key that served the last relay call, served_counts the JSON array of
-- calls each member served (NULL: none yet); both are reset when the pool is replaced.
CREATE TABLE IF NOT EXISTS ai_keys (
  id                 TEXT PRIMARY KEY,
  tenant_id          TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  alias              TEXT NOT NULL,
  provider           TEXT NOT NULL,
  model              TEXT NOT NULL,
  status             TEXT NOT NULL CHECK (status IN ('enabled', 'disabled')),
  key_version        INTEGER NOT NULL,
  api_key            TEXT NOT NULL,
  api_key_hint       TEXT NOT NULL,
  input_limit        INTEGER NOT NULL,
  output_limit       INTEGER NOT NULL,
  usage_limit_policy TEXT NOT NULL CHECK (usage_limit_policy IN ('reject', 'use_anyway')),
  expire_time        INTEGER,
  used_input_tokens  INTEGER NOT NULL DEFAULT 0,
  used_output_tokens INTEGER NOT NULL DEFAULT 0,
  last_used_at       INTEGER,
  create_date        INTEGER NOT NULL,
  update_date        INTEGER NOT NULL,
  endpoint           TEXT,
  pool_hints         TEXT,
  served_by          INTEGER,
  served_counts      TEXT,
  -- Limits over time (0 = none); the counters are in the key's Durable Object.
  rpm_limit          INTEGER NOT NULL DEFAULT 0,
  tpm_limit          INTEGER NOT NULL DEFAULT 0,
  token_budget       INTEGER NOT NULL DEFAULT 0,
  budget_period      TEXT NOT NULL DEFAULT 'month'
    CHECK (budget_period IN ('day', 'week', 'month', 'total')),
  UNIQUE (tenant_id, alias)
);
CREATE INDEX IF NOT EXISTS ai_keys_expire ON ai_keys(expire_time) WHERE expire_time IS NOT NULL;

-- Requests made with an Idempotency-Key header, remembered for an hour (store/idempotency.rs), so
-- that the same request sent again is answered from what the first attempt did instead of making
-- a second tenant or key. scope is 'admin' or 'user:' and the caller's username; key_hash,
-- request (operation, target and body) and caller_hash (a rotation's authenticating secret) are
-- SHA-256. No foreign keys: an entry outlives what it names by at most the hour.
CREATE TABLE IF NOT EXISTS idempotency_keys (
  scope       TEXT NOT NULL,
  key_hash    TEXT NOT NULL,
  request     TEXT NOT NULL,
  target      TEXT NOT NULL,
  caller_hash TEXT,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (scope, key_hash)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys(created_at);

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

-- A tenant's webhook for budget alerts (at most one). The signing secret is AES-256-GCM sealed
-- with associated data binding it to the tenant; key_version names the master key that sealed it.
CREATE TABLE IF NOT EXISTS tenant_webhooks (
  tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  url         TEXT NOT NULL,
  key_version INTEGER NOT NULL,
  secret      TEXT NOT NULL,
  secret_hint TEXT NOT NULL,
  create_date INTEGER NOT NULL,
  update_date INTEGER NOT NULL
);
