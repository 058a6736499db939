-- Scheduled campaigns (#12): what to do with one whose time passed while Herald was down
-- (`start` it late, or `expire` it), and the scheduler's lookup of those now due.
ALTER TABLE campaigns
    ADD COLUMN overdue text NOT NULL DEFAULT 'start' CHECK (overdue IN ('start', 'expire'));
CREATE INDEX campaigns_scheduled ON campaigns (scheduled_at) WHERE state = 'scheduled';
