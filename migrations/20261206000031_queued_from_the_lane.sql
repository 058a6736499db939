-- `queued` is no longer written into each message row by fan-out: a message is queued when its
-- row is `pending` and its lane (campaign, number) has appended up to its id. Fan-out wrote
-- every row once on its way into a stream and the recorder again on the way out; now only the
-- recorder writes it, and fan-out writes one lane row and one page row per page.
--
-- The status a reader sees: the row's, but `queued` for a pending row its lane has appended.
-- Rows written `queued` before (and those a retry or a test still writes so) stay `queued`.
CREATE FUNCTION message_status_now(status message_status, id bigint, appended bigint)
RETURNS message_status LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status = 'pending' AND id <= coalesce(appended, 0)
                THEN 'queued'::message_status ELSE status END
$$;

-- When each page went into its stream: a message's `queued_at` is its lane's first page
-- reaching its id (one row per page rather than a timestamp written into every message).
CREATE TABLE fanout_pages (
    campaign_id       uuid NOT NULL,
    sender_number_id  uuid NOT NULL,
    through           bigint NOT NULL,
    at                timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, sender_number_id, through),
    FOREIGN KEY (campaign_id, sender_number_id)
        REFERENCES campaign_numbers (campaign_id, sender_number_id) ON DELETE CASCADE
);

-- Fan-out's record of a page appended to the lane's stream, up to `highest` (the page reached
-- `through`): raises the lane's marks and moves into `queued`, in the counters, exactly the
-- rows the raise makes queued. Two statements, so that the count sees every send recorded
-- before the lane's lock was taken; a recorder that reads the lane (`FOR SHARE`) after waits
-- for this one to commit. Takes the lane's lock, then the campaign's: it holds no message
-- row, so it cannot wait in a cycle with a writer that does (they take messages, then lanes,
-- then campaigns). Returns how many became queued.
CREATE FUNCTION record_fanout_page(campaign uuid, number uuid, through bigint, highest bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    n bigint;
BEGIN
    SELECT cn.fanout_appended INTO before FROM campaign_numbers cn
    WHERE cn.campaign_id = campaign AND cn.sender_number_id = number
    FOR NO KEY UPDATE;
    UPDATE campaign_numbers cn
    SET fanout_cursor = greatest(cn.fanout_cursor, through),
        fanout_appended = greatest(cn.fanout_appended, highest)
    WHERE cn.campaign_id = campaign AND cn.sender_number_id = number;
    IF highest <= before THEN
        RETURN 0;
    END IF;
    INSERT INTO fanout_pages (campaign_id, sender_number_id, through, at)
    VALUES (campaign, number, highest, now()) ON CONFLICT DO NOTHING;
    SELECT count(*) INTO n FROM messages m
    WHERE m.campaign_id = campaign AND m.sender_number_id = number
      AND m.id > before AND m.id <= highest AND m.status = 'pending';
    IF n > 0 THEN
        PERFORM apply_campaign_deltas(jsonb_build_array(jsonb_build_object(
            'id', campaign, 'pending', -n, 'queued', n)));
    END IF;
    RETURN n;
END
$$;
