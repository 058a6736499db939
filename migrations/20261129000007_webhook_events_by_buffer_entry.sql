-- A body is recorded when the processor applies it; a body applied twice (a crash between
-- recording and acknowledging) is recorded once, by its buffer entry id.
ALTER TABLE webhook_events ADD COLUMN buffer_id text UNIQUE;
