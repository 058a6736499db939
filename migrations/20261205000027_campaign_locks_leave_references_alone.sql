-- Campaigns are locked for their counters `FOR NO KEY UPDATE`, the lock an update that keeps
-- the key takes anyway, instead of `FOR UPDATE`. A transaction that inserts a row referencing a
-- campaign (a reply, an engagement, an event) holds a key-share lock on it from then on; with
-- `FOR UPDATE` another writer's counter lock waited for that transaction, which then waited
-- behind it to take its own: a deadlock between two webhook batches of one campaign. Nothing
-- changes a campaign's id, so no lock of campaigns needs to exclude key-share.
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
               coalesce(d.suppressed, 0) AS suppressed, coalesce(d.replied, 0) AS replied,
               coalesce(d.clicked, 0) AS clicked
        FROM jsonb_to_recordset(deltas) AS d(
            id uuid, total bigint, pending bigint, queued bigint, sent bigint,
            delivered bigint, read bigint, failed bigint, cancelled bigint,
            suppressed bigint, replied bigint, clicked bigint)
    ), locked AS (
        SELECT c.id FROM campaigns c WHERE c.id IN (SELECT id FROM d)
        ORDER BY c.id FOR NO KEY UPDATE
    ), moved AS (
        SELECT d.*, (d.pending <> 0 OR d.queued <> 0 OR d.sent <> 0 OR d.delivered <> 0
                     OR d.read <> 0 OR d.failed <> 0 OR d.cancelled <> 0) AS status_moved
        FROM d JOIN locked USING (id)
    ), updated AS (
        UPDATE campaigns c SET
            total = c.total + m.total,
            pending = c.pending + m.pending, queued = c.queued + m.queued,
            sent = c.sent + m.sent, delivered = c.delivered + m.delivered,
            read = c.read + m.read, failed = c.failed + m.failed,
            cancelled = c.cancelled + m.cancelled, suppressed = c.suppressed + m.suppressed,
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
