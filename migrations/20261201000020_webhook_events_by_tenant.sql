-- GET /v1/webhook-events: each tenant sees the bodies that name its numbers (by
-- phone_number_id) or its WABAs (an entry's id), recorded with the body.
CREATE TABLE webhook_event_tenants (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id   bigint NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX webhook_event_tenants_event ON webhook_event_tenants (event_id);
