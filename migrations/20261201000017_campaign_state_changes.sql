-- Every change of a campaign's state, in order: the live view (SSE) sends those a client missed
-- while it was away (`Last-Event-ID`). Recorded by a trigger, so every writer (the API, the
-- scheduler, the transition engine's "nothing left → completed", template pauses) is covered;
-- the WHEN clause keeps counter updates that leave the state alone free of it.
CREATE TABLE campaign_state_changes (
    id           bigserial PRIMARY KEY,
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    state        campaign_state NOT NULL,
    reason       text,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_state_changes_campaign ON campaign_state_changes (campaign_id, id);

CREATE FUNCTION record_campaign_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO campaign_state_changes (campaign_id, state, reason)
    VALUES (NEW.id, NEW.state, NEW.state_reason);
    RETURN NULL;
END
$$;
CREATE TRIGGER campaign_created AFTER INSERT ON campaigns
    FOR EACH ROW EXECUTE FUNCTION record_campaign_state();
CREATE TRIGGER campaign_state_changed AFTER UPDATE OF state ON campaigns
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION record_campaign_state();

INSERT INTO campaign_state_changes (campaign_id, state, reason, at)
SELECT id, state, state_reason, coalesce(completed_at, started_at, created_at) FROM campaigns;
