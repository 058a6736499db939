-- A tenant's webhook log is listed in the order the bodies arrived: their buffer entry ids
-- (milliseconds, sequence), not the ids the processors happened to give them when recording
-- (several processors record batches concurrently).
ALTER TABLE webhook_event_tenants ADD COLUMN arrival_ms bigint, ADD COLUMN arrival_seq bigint;
UPDATE webhook_event_tenants t
SET arrival_ms = COALESCE(split_part(e.buffer_id, '-', 1)::bigint,
                          (extract(epoch FROM e.received_at) * 1000)::bigint),
    arrival_seq = COALESCE(split_part(e.buffer_id, '-', 2)::bigint, 0)
FROM webhook_events e WHERE e.id = t.event_id;
ALTER TABLE webhook_event_tenants ALTER COLUMN arrival_ms SET NOT NULL,
                                  ALTER COLUMN arrival_seq SET NOT NULL;
CREATE INDEX webhook_event_tenants_newest
    ON webhook_event_tenants (tenant_id, arrival_ms DESC, arrival_seq DESC);
