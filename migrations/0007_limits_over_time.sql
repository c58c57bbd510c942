-- Migration number: 0007 	 2026-12-01T16:00:00.000Z
-- Limits over time on a gateway key and on a tenant as a whole: requests and tokens per minute
-- and a token budget per period (day, week or month in UTC, or total), 0 = none. The counters
-- themselves live in a Durable Object per key and per tenant, not here. A tenant's limits have
-- their own policy (reject or use_anyway); a key's follow its usage_limit_policy.
ALTER TABLE ai_keys ADD COLUMN rpm_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_keys ADD COLUMN tpm_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_keys ADD COLUMN token_budget INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_keys ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'month'
  CHECK (budget_period IN ('day', 'week', 'month', 'total'));
ALTER TABLE tenants ADD COLUMN rpm_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN tpm_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN token_budget INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN budget_period TEXT NOT NULL DEFAULT 'month'
  CHECK (budget_period IN ('day', 'week', 'month', 'total'));
ALTER TABLE tenants ADD COLUMN usage_limit_policy TEXT NOT NULL DEFAULT 'reject'
  CHECK (usage_limit_policy IN ('reject', 'use_anyway'));
