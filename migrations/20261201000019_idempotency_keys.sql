-- `Idempotency-Key` on POST: the first answer to a key, kept 24 h, replayed to a retry of the
-- same request (same method, path, query and body: `request_hash`). A row without `status` is
-- a request still being processed.
CREATE TABLE idempotency_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key           text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    request_hash  bytea,
    status        smallint,
    content_type  text,
    body          bytea,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
