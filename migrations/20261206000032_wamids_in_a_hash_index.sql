-- Meta's message ids are found through a hash index instead of a unique B-tree.
--
-- The recorder inserts one wamid per send, and the unique B-tree made each insert a
-- speculative one (`ON CONFLICT DO NOTHING`: a probe, the insert, a confirmation) into an index
-- of random text keys: about two thirds of the recorder's statement, and the largest single
-- cost of a send in Postgres. A hash index takes a wamid in one bucket insert; it cannot be
-- unique, so a wamid a stand-in repeats for another message (Meta never does) is kept for
-- each, and lookups take the lowest message id. Receipts insert a wamid only when it is not
-- there yet (they repeat: sent, delivered, read).
ALTER TABLE message_wamids DROP CONSTRAINT message_wamids_pkey;
CREATE INDEX message_wamids_wamid ON message_wamids USING hash (wa_message_id);
