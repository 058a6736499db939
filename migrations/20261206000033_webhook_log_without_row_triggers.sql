-- The webhook log's tenant index (`webhook_event_tenants`, which bodies each tenant sees) loses
-- its two foreign keys.
--
-- Every body a processor applies is logged with a row here, and each of those rows ran two
-- foreign-key triggers: a query per row, and a key-share lock on the tenant's one row that
-- every processor took at once. They were 40% of the log's insert (500 bodies: 12.4 ms with
-- them, 7.4–9.3 without, alone on a private server), and that insert was the largest Postgres
-- cost of a body with one status (B5). The rows are written by one statement only, from the
-- event it has just inserted and a number's tenant; what the cascades did is done by hand:
-- `webhook_events::prune` deletes an event's rows with it (tenants are never deleted).
ALTER TABLE webhook_event_tenants
    DROP CONSTRAINT webhook_event_tenants_tenant_id_fkey,
    DROP CONSTRAINT webhook_event_tenants_event_id_fkey;
