-- Every message a user sends to one of a tenant's numbers (text, media, taps, anything Meta
-- forwards), kept for the tenant's inbox and automatic replies: who sent it, what it says,
-- the media it carries, and the campaign it answers. Stored once per inbound wamid (Meta
-- redelivers webhooks). `message` is the item as Meta sent it, for kinds Herald does not read.
CREATE TABLE inbound_messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number_id         uuid NOT NULL REFERENCES sender_numbers (id) ON DELETE CASCADE,
    phone_number_id   text NOT NULL,
    wa_message_id     text NOT NULL UNIQUE,
    sender            text NOT NULL,
    profile_name      text,
    kind              text NOT NULL,
    text              text,
    payload           text,
    media             jsonb,
    context_wa_message_id text,
    campaign_id       uuid REFERENCES campaigns (id) ON DELETE SET NULL,
    sent_at           timestamptz NOT NULL,
    received_at       timestamptz NOT NULL DEFAULT now(),
    message           jsonb NOT NULL
);
CREATE INDEX inbound_messages_tenant ON inbound_messages (tenant_id, id);
CREATE INDEX inbound_messages_campaign ON inbound_messages (campaign_id, id)
    WHERE campaign_id IS NOT NULL;
CREATE INDEX inbound_messages_sender ON inbound_messages (tenant_id, sender, id);
