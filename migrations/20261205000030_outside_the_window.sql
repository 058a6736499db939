-- The customer-service window (issue #18). A free-form message goes only to a user who wrote
-- to its number in the last 24 hours; the others are `skipped` when fan-out reaches them,
-- counted in `campaigns.skipped`. Users are matched by the canonical form of their number
-- (`suppress::key`: Meta's WhatsApp ID can differ from the number uploaded), kept beside each
-- inbound message.
ALTER TABLE campaigns ADD COLUMN skipped bigint NOT NULL DEFAULT 0;

ALTER TABLE inbound_messages ADD COLUMN sender_key text;
UPDATE inbound_messages SET sender_key = sender;
ALTER TABLE inbound_messages ALTER COLUMN sender_key SET NOT NULL;
CREATE INDEX inbound_messages_window ON inbound_messages (number_id, sender_key, sent_at);

-- `skipped` is final, and only an unsent message can be skipped.
CREATE OR REPLACE FUNCTION message_status_advances(old message_status, new message_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN old IN ('read', 'failed', 'suppressed', 'skipped') THEN false
        WHEN old = 'cancelled' THEN new IN ('sent', 'delivered', 'read')
        WHEN new = 'failed' THEN old IN ('pending', 'queued', 'sent')
        WHEN new IN ('cancelled', 'suppressed', 'skipped') THEN old IN ('pending', 'queued')
        ELSE new > old
    END
$$;

-- The counters' one rule, with `skipped`.
CREATE OR REPLACE FUNCTION apply_campaign_deltas(deltas jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    changed bigint;
BEGIN
    WITH d AS (
        SELECT d.id,
               coalesce(d.total, 0) AS total, coalesce(d.pending, 0) AS pending,
               coalesce(d.queued, 0) AS queued, coalesce(d.sent, 0) AS sent,
               coalesce(d.delivered, 0) AS delivered, coalesce(d.read, 0) AS read,
               coalesce(d.failed, 0) AS failed, coalesce(d.cancelled, 0) AS cancelled,
               coalesce(d.suppressed, 0) AS suppressed, coalesce(d.skipped, 0) AS skipped,
               coalesce(d.replied, 0) AS replied,
               coalesce(d.clicked, 0) AS clicked
        FROM jsonb_to_recordset(deltas) AS d(
            id uuid, total bigint, pending bigint, queued bigint, sent bigint,
            delivered bigint, read bigint, failed bigint, cancelled bigint,
            suppressed bigint, skipped bigint, replied bigint, clicked bigint)
    ), locked AS (
        SELECT c.id FROM campaigns c WHERE c.id IN (SELECT id FROM d)
        ORDER BY c.id FOR NO KEY UPDATE
    ), moved AS (
        SELECT d.*, (d.pending <> 0 OR d.queued <> 0 OR d.sent <> 0 OR d.delivered <> 0
                     OR d.read <> 0 OR d.failed <> 0 OR d.cancelled <> 0 OR d.skipped <> 0)
                    AS status_moved
        FROM d JOIN locked USING (id)
    ), updated AS (
        UPDATE campaigns c SET
            total = c.total + m.total,
            pending = c.pending + m.pending, queued = c.queued + m.queued,
            sent = c.sent + m.sent, delivered = c.delivered + m.delivered,
            read = c.read + m.read, failed = c.failed + m.failed,
            cancelled = c.cancelled + m.cancelled, suppressed = c.suppressed + m.suppressed,
            skipped = c.skipped + m.skipped,
            replied = c.replied + m.replied, clicked = c.clicked + m.clicked,
            -- Receipts keep moving a completed campaign's counters afterwards.
            state = CASE WHEN m.status_moved AND c.state = 'running'
                              AND c.pending + m.pending = 0 AND c.queued + m.queued = 0
                         THEN 'completed' ELSE c.state END,
            completed_at = CASE WHEN m.status_moved AND c.state = 'running'
                                     AND c.pending + m.pending = 0 AND c.queued + m.queued = 0
                                THEN now() ELSE c.completed_at END
        FROM moved m WHERE c.id = m.id
        RETURNING 1
    )
    SELECT count(*) INTO changed FROM updated;
    RETURN changed;
END
$$;

-- Campaign events carry the skipped count too.
CREATE OR REPLACE FUNCTION campaign_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
                'suppressed', NEW.suppressed, 'skipped', NEW.skipped,
                'clicked', NEW.clicked,
                'replied', NEW.replied)));
    END IF;
    RETURN NULL;
END
$$;
