-- Migration number: 0003 	 2026-12-01T12:00:00.000Z
-- Requests made with an Idempotency-Key header, remembered for an hour (store/idempotency.rs), so
-- that a client which lost the answer to a creation or rotation and sends it again gets what the
-- first attempt did instead of a second tenant or key. Written in the same batch as the change.
-- Never a secret: the key, the request and the caller's secret are kept as SHA-256 only. No
-- foreign keys: an entry outlives what it names by at most the hour, and a replay checks.
CREATE TABLE idempotency_keys (
  scope       TEXT NOT NULL,
  key_hash    TEXT NOT NULL,
  request     TEXT NOT NULL,
  target      TEXT NOT NULL,
  caller_hash TEXT,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (scope, key_hash)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);
