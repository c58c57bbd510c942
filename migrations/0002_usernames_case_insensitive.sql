-- Migration number: 0002 	 2026-12-01T10:00:00.000Z
-- Usernames are compared without regard to letter case: `Alice@Example.com` and
-- `alice@example.com` are one user. The spelling the admin gave stays in `username` (shown, and
-- what api_keys refer to); the folded form is indexed, unique, and every lookup goes through it.
--
-- The fold is SQLite's lower(), which lower-cases ASCII only. That is the whole of case folding
-- here, because a username may hold only ASCII letters, digits and . _ @ + - (Username::parse);
-- lookups write the same expression, lower(username) = lower(?1), so they use this index.
--
-- If two existing users differ only in case, this migration stops with
--   CHECK constraint failed: two usernames differ only in letter case ...
-- and changes nothing (wrangler applies a migration in one batch and rolls it back on error).
-- Find them with
--   SELECT group_concat(username, ' ') FROM users GROUP BY lower(username) HAVING COUNT(*) > 1;
-- delete or keep one of each pair through the admin API of the worker still deployed, and apply
-- again (README, "Upgrading an existing deployment").

CREATE TABLE migration_0002_guard (
  colliding INTEGER NOT NULL
    CONSTRAINT "two usernames differ only in letter case (see migrations/0002_usernames_case_insensitive.sql)"
    CHECK (colliding = 0)
);
INSERT INTO migration_0002_guard (colliding)
  SELECT COUNT(*) FROM (SELECT 1 FROM users GROUP BY lower(username) HAVING COUNT(*) > 1);
DROP TABLE migration_0002_guard;

CREATE UNIQUE INDEX users_username_folded ON users(lower(username));
