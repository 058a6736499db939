-- GET /v1/campaigns/{id}/messages (and its CSV export) show each message's wamid: found by
-- message id. One more index entry per send (the recorder's insert into message_wamids).
CREATE INDEX message_wamids_message ON message_wamids (message_id);
