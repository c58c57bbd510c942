-- Migration number: 0009 	 2026-12-01T19:00:00.000Z
-- Budget alerts: a tenant's webhook (one per tenant), its signing secret sealed like every other
-- credential (AES-256-GCM, bound to the tenant), and a `system` actor in the audit log for what
-- keyward does by itself (a webhook delivery). SQLite cannot change a CHECK in place, so the
-- audit table is rebuilt with the same columns, ids and indexes.
CREATE TABLE IF NOT EXISTS tenant_webhooks (
  tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
  url         TEXT NOT NULL,
  key_version INTEGER NOT NULL,
  secret      TEXT NOT NULL,
  secret_hint TEXT NOT NULL,
  create_date INTEGER NOT NULL,
  update_date INTEGER NOT NULL
);

CREATE TABLE audit_rebuilt (
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  at         INTEGER NOT NULL,
  actor      TEXT NOT NULL,
  action     TEXT NOT NULL,
  target     TEXT NOT NULL,
  tenant_id  TEXT,
  detail     TEXT NOT NULL DEFAULT '',
  actor_kind TEXT NOT NULL DEFAULT 'user' CHECK (actor_kind IN ('admin', 'user', 'unknown', 'system'))
);
INSERT INTO audit_rebuilt (id, at, actor, action, target, tenant_id, detail, actor_kind)
  SELECT id, at, actor, action, target, tenant_id, detail, actor_kind FROM audit;
DROP TABLE audit;
ALTER TABLE audit_rebuilt RENAME TO audit;
CREATE INDEX IF NOT EXISTS audit_at ON audit(at);
CREATE INDEX IF NOT EXISTS audit_tenant_at ON audit(tenant_id, at);
