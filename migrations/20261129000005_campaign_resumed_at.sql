-- When a paused campaign last ran again. A template error from a send that began before then
-- is stale (the operator has fixed and resumed since) and must not pause the campaign again.
ALTER TABLE campaigns ADD COLUMN resumed_at timestamptz;
