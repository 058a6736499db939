-- Templates as synced from Graph (#12), and campaigns that send one or several of them.
--
-- A template's status is kept as Meta writes it (`APPROVED`, `PAUSED`, …): Meta adds statuses,
-- and an unknown one must not fail a sync. `spec` holds the parameter slots Herald derived
-- from the components (`herald_shared::template::Spec`).
ALTER TABLE templates ALTER COLUMN status TYPE text USING upper(status::text);
DROP TYPE template_status;
ALTER TABLE templates
    ADD COLUMN graph_id          text,
    ADD COLUMN parameter_format  text NOT NULL DEFAULT 'POSITIONAL',
    ADD COLUMN quality           text,
    ADD COLUMN sub_category      text,
    ADD COLUMN spec              jsonb NOT NULL DEFAULT '{}';
CREATE INDEX templates_by_name ON templates (tenant_id, name, language);

-- A campaign's templates, each with a weight (its share of the recipients), the slots it
-- was checked against and the values fixed for every recipient (a header image, a payload).
CREATE TABLE campaign_templates (
    campaign_id  uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    position     smallint NOT NULL,
    name         text NOT NULL,
    language     text NOT NULL,
    weight       integer NOT NULL CHECK (weight > 0),
    spec         jsonb NOT NULL DEFAULT '{}',
    fixed        jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (campaign_id, position)
);

-- Campaigns made before: their one template, its body taking as many positional values as
-- their recipients were given (messages stored a list of body values then).
INSERT INTO campaign_templates (campaign_id, position, name, language, weight, spec)
SELECT c.id, 0, c.template_name, c.template_language, 1,
       jsonb_build_object('body', (
           SELECT coalesce(jsonb_agg(g::text ORDER BY g), '[]'::jsonb)
           FROM generate_series(1, coalesce((
               SELECT max(jsonb_array_length(m.variables)) FROM messages m
               WHERE m.campaign_id = c.id AND jsonb_typeof(m.variables) = 'array'), 0)) g))
FROM campaigns c;

-- Which of its campaign's templates a message sends (`campaign_templates.position`).
ALTER TABLE messages ADD COLUMN template smallint NOT NULL DEFAULT 0;
