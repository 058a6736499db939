-- Number management (#12): why a number was paused, what its last connection test found, and
-- deletion. A number that has sent keeps its row (messages refer to it) but is marked deleted
-- and disabled; its phone_number_id may then be registered again.
ALTER TABLE sender_numbers
    ADD COLUMN state_reason      text,
    ADD COLUMN verified_name     text,
    ADD COLUMN quality_rating    text,
    ADD COLUMN messaging_limit   text,
    ADD COLUMN throughput_level  text,
    ADD COLUMN tested_at         timestamptz,
    ADD COLUMN deleted_at        timestamptz;

ALTER TABLE sender_numbers DROP CONSTRAINT sender_numbers_phone_number_id_key;
CREATE UNIQUE INDEX sender_numbers_phone_number_id ON sender_numbers (phone_number_id)
    WHERE deleted_at IS NULL;
