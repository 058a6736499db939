-- Replies and quick-reply taps, counted once each (Meta redelivers webhooks): keyed by the
-- inbound message's wamid. The campaign is the one whose message the tap answers, or, for a
-- reply, the campaign of the last message sent to that recipient from that number.
CREATE TABLE engagements (
    wa_message_id  text PRIMARY KEY,
    campaign_id    uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    kind           text NOT NULL CHECK (kind IN ('replied', 'clicked')),
    recipient      text NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engagements_campaign ON engagements (campaign_id);

-- Finding the last message to a recipient (replies, opt-outs). `recipient` never changes, so
-- this index costs inserts only and leaves status updates HOT.
CREATE INDEX messages_recipient ON messages (recipient, sender_number_id);
