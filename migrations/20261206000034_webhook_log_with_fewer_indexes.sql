-- The webhook log keeps two indexes fewer, each written by every body a processor applies.
--
-- `webhook_event_tenants`' primary key (tenant_id, event_id) checked a uniqueness its one
-- writer already guarantees (a body's rows are inserted only by the statement that inserted
-- the body, once per tenant: `webhook_events::record`) and served no read (a tenant's log is
-- read through `webhook_event_tenants_newest`). `webhook_events_received` served only the
-- hourly prune, which now takes bodies in the order they were logged, by primary key
-- (`webhook_events::prune`). Together they were 13% of the log's insert of one-status bodies
-- in Postgres CPU (`herald bench statements`, three pairs alternating: 9.2 · 9.3 · 9.3 →
-- 8.0 · 8.0 · 8.4 µs a body; the log is near half of what a one-status body costs Postgres).
ALTER TABLE webhook_event_tenants DROP CONSTRAINT webhook_event_tenants_pkey;
DROP INDEX webhook_events_received;
