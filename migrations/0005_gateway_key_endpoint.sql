-- Migration number: 0005 	 2026-12-01T14:00:00.000Z
-- A gateway key's provider key goes only to the endpoint it was set with: the resolved base URL is
-- stored here (and sealed into the key's associated data). Keys stored before have none; they
-- still open, and the relay refuses them until their api_key is set again (README, Security).
ALTER TABLE ai_keys ADD COLUMN endpoint TEXT;
