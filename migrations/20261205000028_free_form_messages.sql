-- A campaign may send a free-form message (text, media, interactive, location, contacts)
-- instead of templates: its one `campaign_templates` row then carries the message as the
-- campaign wrote it (`{{1}}`… standing for each recipient's `body.1`…), under the name of its
-- type and no language. Template rows keep `message` null.
ALTER TABLE campaign_templates ADD COLUMN message jsonb;
