-- Each recipient upload (JSON or CSV) and what it refused, row by row (#12): the report keeps
-- the first thousand refusals inline, the whole list is served as errors.csv.
CREATE TABLE uploads (
    id           uuid PRIMARY KEY,
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    rows         bigint NOT NULL DEFAULT 0,
    accepted     bigint NOT NULL DEFAULT 0,
    duplicates   bigint NOT NULL DEFAULT 0,
    suppressed   bigint NOT NULL DEFAULT 0,
    rejected     bigint NOT NULL DEFAULT 0
);
CREATE INDEX uploads_campaign ON uploads (campaign_id, created_at);

CREATE TABLE upload_errors (
    upload_id  uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    -- The JSON recipient's position, or the CSV record's line (the header is line 1).
    row        bigint NOT NULL,
    field      text NOT NULL,
    reason     text NOT NULL
);
CREATE INDEX upload_errors_by_row ON upload_errors (upload_id, row);

-- A message's sender number is one of its campaign's numbers (`campaign_numbers` refers to
-- `sender_numbers`), and numbers are never deleted, only marked so: the per-row check of this
-- key was a quarter of the cost of storing an upload's rows (B4) and guarded nothing more.
ALTER TABLE messages DROP CONSTRAINT messages_sender_number_id_fkey;
