-- Fan-out runs per (campaign, number) and keeps each number's stream at most a window ahead of
-- its sender (design §6.1), so Redis holds a bounded part of a campaign and Postgres the rest.
-- Each number has its own cursor: a number that does not drain (paused, or slower) holds back
-- none of the others. Everything at or below the campaign's old cursor was handled for every
-- number, so each starts from there.
ALTER TABLE campaign_numbers ADD COLUMN fanout_cursor bigint NOT NULL DEFAULT 0;
UPDATE campaign_numbers cn SET fanout_cursor = c.fanout_cursor
FROM campaigns c WHERE c.id = cn.campaign_id;
ALTER TABLE campaigns DROP COLUMN fanout_cursor;

-- A number's pending messages of a campaign, in id order. `sender_number_id` never changes, so
-- this index costs inserts only and leaves status updates HOT.
CREATE INDEX messages_campaign_number ON messages (campaign_id, sender_number_id, id);
