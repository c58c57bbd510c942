-- Migration number: 0006 	 2026-12-01T15:00:00.000Z
-- A gateway key may hold a pool of provider keys in priority order. api_key then seals the JSON
-- array of the pool's keys (one ciphertext, bound like a single key), and pool_hints is the JSON
-- array of their masked hints; NULL is a pool of one, whose key api_key seals as before.
-- served_by is the pool index of the key that served the last relay call; served_counts the JSON
-- array of calls each member served (NULL: none yet). Both are reset when the pool is replaced.
ALTER TABLE ai_keys ADD COLUMN pool_hints TEXT;
ALTER TABLE ai_keys ADD COLUMN served_by INTEGER;
ALTER TABLE ai_keys ADD COLUMN served_counts TEXT;
