-- Migration number: 0004 	 2026-12-01T13:00:00.000Z
-- The audit log records the kind of actor beside its name, so a user named `admin` can no longer
-- pass for the deployment's admin token. Entries written before this column existed are sorted
-- by what only one kind of actor can do: tenants, users and settings are changed by the admin
-- token alone; models, defaults and gateway keys by users alone. Key issuing, rotation and
-- revocation are done by both, so an `admin` there cannot be told apart: `unknown`.
ALTER TABLE audit ADD COLUMN actor_kind TEXT NOT NULL DEFAULT 'user'
  CHECK (actor_kind IN ('admin', 'user', 'unknown'));
UPDATE audit SET actor_kind = CASE
  WHEN actor <> 'admin' THEN 'user'
  WHEN action LIKE 'tenant.%' OR action LIKE 'user.%' OR action LIKE 'settings.%' THEN 'admin'
  WHEN action LIKE 'api_key.%' THEN 'unknown'
  ELSE 'user'
END;

-- The admin lists page through users and tenants in creation order (keyset paging).
CREATE INDEX users_created ON users(create_date, username);
CREATE INDEX tenants_created ON tenants(create_date, id);
