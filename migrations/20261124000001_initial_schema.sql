-- Herald's initial schema (design §3). Statuses are enums mirrored by Rust enums in
-- `herald_shared::domain`; counters on `campaigns` always equal a GROUP BY status over
-- `messages` because only `apply_transitions` (shared/src/db/messages.rs) changes either.

CREATE TYPE message_status AS ENUM (
    'pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'cancelled', 'suppressed'
);
CREATE TYPE campaign_state AS ENUM (
    'draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'failed'
);
CREATE TYPE number_state AS ENUM ('active', 'paused_auth', 'paused_quality', 'disabled');
CREATE TYPE template_status AS ENUM (
    'approved', 'pending', 'rejected', 'paused', 'disabled', 'in_appeal', 'pending_deletion',
    'deleted', 'archived', 'limit_exceeded', 'locked'
);
CREATE TYPE suppression_reason AS ENUM ('opt_out', 'manual', 'permanent_failure');
CREATE TYPE webhook_outcome AS ENUM ('pending', 'applied', 'malformed', 'rejected');

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only a SHA-256 of the key is stored; `prefix` is the non-secret start shown to users.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

-- `access_token` holds key version ‖ nonce ‖ AES-256-GCM ciphertext, with the row id as AAD.
CREATE TABLE sender_numbers (
    id                  uuid PRIMARY KEY,
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    phone_number_id     text NOT NULL UNIQUE,
    waba_id             text NOT NULL,
    display_number      text NOT NULL,
    access_token        bytea NOT NULL,
    state               number_state NOT NULL DEFAULT 'active',
    throughput_ceiling  integer NOT NULL CHECK (throughput_ceiling > 0),
    current_rate        integer NOT NULL CHECK (current_rate > 0),
    portfolio_id        text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sender_numbers_tenant ON sender_numbers (tenant_id);

CREATE TABLE templates (
    id              uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    waba_id         text NOT NULL,
    name            text NOT NULL,
    language        text NOT NULL,
    category        text NOT NULL,
    status          template_status NOT NULL,
    components      jsonb NOT NULL DEFAULT '[]',
    variable_count  integer NOT NULL DEFAULT 0,
    synced_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, waba_id, name, language)
);

CREATE TABLE campaigns (
    id                 uuid PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text NOT NULL,
    state              campaign_state NOT NULL DEFAULT 'draft',
    state_reason       text,
    template_name      text NOT NULL,
    template_language  text NOT NULL,
    scheduled_at       timestamptz,
    -- One counter per message status, plus engagement counts that are not statuses.
    total              bigint NOT NULL DEFAULT 0,
    pending            bigint NOT NULL DEFAULT 0,
    queued             bigint NOT NULL DEFAULT 0,
    sent               bigint NOT NULL DEFAULT 0,
    delivered          bigint NOT NULL DEFAULT 0,
    read               bigint NOT NULL DEFAULT 0,
    failed             bigint NOT NULL DEFAULT 0,
    cancelled          bigint NOT NULL DEFAULT 0,
    suppressed         bigint NOT NULL DEFAULT 0,
    clicked            bigint NOT NULL DEFAULT 0,
    replied            bigint NOT NULL DEFAULT 0,
    -- Highest message id fanned out so far; fan-out resumes after it.
    fanout_cursor      bigint NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, created_at);
CREATE INDEX campaigns_running ON campaigns (id) WHERE state = 'running';

CREATE TABLE campaign_numbers (
    campaign_id       uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    sender_number_id  uuid NOT NULL REFERENCES sender_numbers (id),
    position          integer NOT NULL,
    PRIMARY KEY (campaign_id, sender_number_id)
);

-- Updated at every status change: fillfactor 50 leaves room on each page so most updates
-- stay HOT (no index touched). `status` is deliberately not indexed for the same reason.
CREATE TABLE messages (
    id                bigserial PRIMARY KEY,
    campaign_id       uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    sender_number_id  uuid NOT NULL REFERENCES sender_numbers (id),
    recipient         text NOT NULL,
    variables         jsonb NOT NULL DEFAULT '[]',
    status            message_status NOT NULL DEFAULT 'pending',
    attempts          integer NOT NULL DEFAULT 0,
    next_retry_at     timestamptz,
    wa_message_id     text UNIQUE,
    error_code        integer,
    error_title       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    queued_at         timestamptz,
    sent_at           timestamptz,
    delivered_at      timestamptz,
    read_at           timestamptz,
    failed_at         timestamptz,
    UNIQUE (campaign_id, recipient)
) WITH (fillfactor = 50);
CREATE INDEX messages_campaign_id ON messages (campaign_id, id);

CREATE TABLE webhook_events (
    id               bigserial PRIMARY KEY,
    body             bytea NOT NULL,
    signature_valid  boolean NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    processed_at     timestamptz,
    outcome          webhook_outcome NOT NULL DEFAULT 'pending',
    error            text
);
CREATE INDEX webhook_events_received ON webhook_events (received_at);

CREATE TABLE suppressions (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    recipient   text NOT NULL,
    reason      suppression_reason NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, recipient)
);

-- The one rule for status changes (design §4): receipts only move forward
-- (pending < queued < sent < delivered < read); failed, cancelled and suppressed are terminal;
-- failed can follow queued or sent; cancelled and suppressed only stop unsent messages.
CREATE FUNCTION message_status_advances(old message_status, new message_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN old IN ('read', 'failed', 'cancelled', 'suppressed') THEN false
        WHEN new = 'failed' THEN old IN ('pending', 'queued', 'sent')
        WHEN new IN ('cancelled', 'suppressed') THEN old IN ('pending', 'queued')
        ELSE array_position(enum_range(NULL::message_status), new)
           > array_position(enum_range(NULL::message_status), old)
    END
$$;
