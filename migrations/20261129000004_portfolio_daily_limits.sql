-- A business portfolio's messaging limit: unique recipients per rolling 24 h, shared by all of
-- its numbers (reference §3.3). No row, or a NULL limit, means unlimited. The sender keeps
-- the recipients reached in Redis and holds messages to new recipients beyond the limit.
CREATE TABLE portfolios (
    tenant_id              uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                     text NOT NULL,
    daily_recipient_limit  integer CHECK (daily_recipient_limit > 0),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
