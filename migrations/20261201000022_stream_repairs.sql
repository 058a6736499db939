-- Redis losing its data (a restart without persistence, a failover to a stale replica, a
-- FLUSHALL) loses the entries of number streams while Postgres says they are `queued`.
-- `fanout_appended` is the highest message id of the lane that fan-out appended to its stream:
-- the stream's own record of it (its fanout hash) is never lower unless Redis lost it. A lane
-- found behind is repaired: `repair_from` is what Redis still had; once `repair_since` is a
-- reconciliation window old, the lane's messages above it still unsent are appended again.
ALTER TABLE campaign_numbers
    ADD COLUMN fanout_appended bigint NOT NULL DEFAULT 0,
    ADD COLUMN repair_from bigint,
    ADD COLUMN repair_since timestamptz;

-- Lanes of campaigns under way: everything at or below the cursor was appended or skipped
-- (the highest id there may be one skipped, which a repair then finds nothing to resend for).
UPDATE campaign_numbers cn
SET fanout_appended = COALESCE((
    SELECT m.id FROM messages m
    WHERE m.campaign_id = cn.campaign_id AND m.sender_number_id = cn.sender_number_id
      AND m.id <= cn.fanout_cursor
    ORDER BY m.id DESC LIMIT 1), 0)
FROM campaigns c
WHERE c.id = cn.campaign_id AND c.state IN ('running', 'paused');
