-- Notifications: a tenant's webhook endpoints, the events Herald tells them of (an outbox,
-- written in the same transaction as the change that causes each event) and one delivery of
-- each event to each endpoint subscribed to its type when it happened.
--
-- Events are written by triggers, so every writer is covered (the API, the scheduler, the
-- transition engine's "nothing left → completed", the webhook processor's template pauses and
-- opt-outs, the sender's number pauses), and a process that dies after its commit has already
-- left its events behind.

CREATE TYPE delivery_state AS ENUM ('pending', 'delivered', 'failed');

CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url              text NOT NULL,
    events           text[] NOT NULL,
    description      text,
    -- The signing secret, encrypted like number tokens (the row id is the associated data).
    secret           bytea NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when a delivery ran out of attempts; PATCH with "enabled": true clears it.
    disabled_at      timestamptz,
    disabled_reason  text
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

CREATE TABLE outbox_events (
    id          bigserial PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    -- What the event is about (a campaign's or a number's id, a recipient): deliveries to one
    -- endpoint about one subject go in order.
    subject     text NOT NULL,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE event_deliveries (
    id               bigserial PRIMARY KEY,
    event_id         bigint NOT NULL REFERENCES outbox_events (id) ON DELETE CASCADE,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    subject          text NOT NULL,
    state            delivery_state NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    -- When it may be tried next; a worker that takes it moves this past its own attempt, so a
    -- worker that dies mid-delivery leaves it to be taken again then.
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX event_deliveries_due ON event_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX event_deliveries_line ON event_deliveries (endpoint_id, subject, id)
    WHERE state = 'pending';
CREATE INDEX event_deliveries_endpoint ON event_deliveries (endpoint_id, id);
CREATE INDEX event_deliveries_event ON event_deliveries (event_id);
CREATE INDEX outbox_events_created ON outbox_events (created_at);

-- An event, with a delivery to each of the tenant's enabled endpoints that subscribe to it.
CREATE FUNCTION emit_event(tenant uuid, kind text, subject text, data jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    event bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints e
                   WHERE e.tenant_id = tenant AND kind = ANY (e.events)
                     AND e.disabled_at IS NULL) THEN
        RETURN;
    END IF;
    INSERT INTO outbox_events (tenant_id, type, subject, data)
    VALUES (tenant, kind, subject, data) RETURNING id INTO event;
    INSERT INTO event_deliveries (event_id, endpoint_id, subject)
    SELECT event, e.id, subject FROM webhook_endpoints e
    WHERE e.tenant_id = tenant AND kind = ANY (e.events) AND e.disabled_at IS NULL;
END
$$;

CREATE FUNCTION campaign_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
BEGIN
    kind := CASE
        WHEN NEW.state = 'running' AND OLD.state IN ('draft', 'scheduled') THEN 'campaign.started'
        WHEN NEW.state = 'running' AND OLD.state = 'paused' THEN 'campaign.resumed'
        WHEN NEW.state = 'paused' THEN 'campaign.paused'
        WHEN NEW.state = 'completed' THEN 'campaign.completed'
        WHEN NEW.state = 'cancelled' THEN 'campaign.cancelled'
        WHEN NEW.state = 'failed' THEN 'campaign.failed'
    END;
    IF kind IS NOT NULL THEN
        PERFORM emit_event(NEW.tenant_id, kind, NEW.id::text, jsonb_build_object(
            'campaign_id', NEW.id, 'name', NEW.name, 'state', NEW.state,
            'reason', NEW.state_reason,
            'counters', jsonb_build_object(
                'total', NEW.total, 'pending', NEW.pending, 'queued', NEW.queued,
                'sent', NEW.sent, 'delivered', NEW.delivered, 'read', NEW.read,
                'failed', NEW.failed, 'cancelled', NEW.cancelled,
                'suppressed', NEW.suppressed, 'clicked', NEW.clicked,
                'replied', NEW.replied)));
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_event AFTER UPDATE OF state ON campaigns
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION campaign_event();

CREATE FUNCTION number_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM emit_event(NEW.tenant_id,
        CASE WHEN NEW.state = 'active' THEN 'number.resumed' ELSE 'number.paused' END,
        NEW.id::text, jsonb_build_object(
            'number_id', NEW.id, 'phone_number_id', NEW.phone_number_id,
            'display_number', NEW.display_number, 'state', NEW.state,
            'reason', NEW.state_reason));
    RETURN NULL;
END
$$;
CREATE TRIGGER number_event AFTER UPDATE OF state ON sender_numbers
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND NEW.deleted_at IS NULL)
    EXECUTE FUNCTION number_event();

CREATE FUNCTION opt_out_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM emit_event(NEW.tenant_id,
        CASE WHEN NEW.active THEN 'recipient.opted_out' ELSE 'recipient.opted_in' END,
        NEW.recipient, jsonb_build_object('recipient', NEW.recipient, 'at', NEW.changed_at));
    RETURN NULL;
END
$$;
CREATE TRIGGER opt_out_added AFTER INSERT ON suppressions
    FOR EACH ROW WHEN (NEW.reason = 'opt_out' AND NEW.active)
    EXECUTE FUNCTION opt_out_event();
CREATE TRIGGER opt_out_changed AFTER UPDATE OF active ON suppressions
    FOR EACH ROW WHEN (NEW.reason = 'opt_out' AND OLD.active IS DISTINCT FROM NEW.active)
    EXECUTE FUNCTION opt_out_event();
