-- Meta's message ids (wamids) move out of `messages` into a table of their own.
--
-- Every send changes a message row; with a unique index on `messages.wa_message_id` that change
-- could never be HOT, so each one wrote a new entry into all four of the table's indexes. Here
-- the status change touches no indexed column (HOT, in place on the page fillfactor 50 keeps
-- free) and the wamid costs one narrow row and one index entry. A message may also have more
-- than one wamid: a send whose outcome was lost is resent after the reconciliation window,
-- and receipts for either send must find it.
--
-- No foreign key: its per-row check costs a third of the recorder's statement. Rows go with
-- their message only when a tenant is deleted (`wamids_of_deleted_messages` below).
CREATE TABLE message_wamids (
    wa_message_id  text PRIMARY KEY,
    message_id     bigint NOT NULL
);

INSERT INTO message_wamids (wa_message_id, message_id)
SELECT wa_message_id, id FROM messages WHERE wa_message_id IS NOT NULL;

ALTER TABLE messages DROP COLUMN wa_message_id;

CREATE FUNCTION delete_wamids_of_deleted_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_wamids w USING deleted d WHERE w.message_id = d.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER wamids_of_deleted_messages AFTER DELETE ON messages
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION delete_wamids_of_deleted_messages();
