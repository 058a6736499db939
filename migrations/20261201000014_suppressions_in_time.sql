-- Suppressions that keep their history (#12): a lifted one stays, inactive, with the time of
-- the change as Meta stamped it (or as the API received it), so that an older event arriving
-- late (a `resume` sent before a `stop`) cannot undo a newer one. `note` is the reason an
-- operator gave. Recipients are kept in their canonical form (`herald_shared::suppress::key`):
-- Mexico's `+521…` as `+52…`, Brazil's mobiles with their ninth digit.
ALTER TABLE suppressions
    ADD COLUMN active      boolean NOT NULL DEFAULT true,
    ADD COLUMN changed_at  timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN note        text;
UPDATE suppressions SET changed_at = created_at;
UPDATE suppressions s SET recipient = k.canonical
FROM (
    SELECT tenant_id, recipient,
           CASE WHEN recipient ~ '^\+521[0-9]{10}$' THEN '+52' || substr(recipient, 5)
                WHEN recipient ~ '^\+55[0-9]{2}[6-9][0-9]{7}$'
                    THEN '+55' || substr(recipient, 4, 2) || '9' || substr(recipient, 6)
           END AS canonical
    FROM suppressions
) k
WHERE s.tenant_id = k.tenant_id AND s.recipient = k.recipient AND k.canonical IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM suppressions o
                  WHERE o.tenant_id = k.tenant_id AND o.recipient = k.canonical);
CREATE INDEX suppressions_listed ON suppressions (tenant_id, recipient) WHERE active;
