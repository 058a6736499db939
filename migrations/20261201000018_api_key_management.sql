-- API keys a tenant manages itself: named, and when each was last used (written at most once a
-- minute per key, in the statement that authenticates the request).
ALTER TABLE api_keys ADD COLUMN name text NOT NULL DEFAULT 'default';
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, id) WHERE revoked_at IS NULL;
