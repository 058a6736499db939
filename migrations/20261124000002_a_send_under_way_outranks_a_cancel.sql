-- A message cancelled while its send was already under way was sent all the same: when that
-- send's result (or a receipt) arrives, the truth wins and the message leaves `cancelled`.
-- Everything else about the rule is unchanged (see the initial schema).
CREATE OR REPLACE FUNCTION message_status_advances(old message_status, new message_status)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN old IN ('read', 'failed', 'suppressed') THEN false
        WHEN old = 'cancelled' THEN new IN ('sent', 'delivered', 'read')
        WHEN new = 'failed' THEN old IN ('pending', 'queued', 'sent')
        WHEN new IN ('cancelled', 'suppressed') THEN old IN ('pending', 'queued')
        ELSE array_position(enum_range(NULL::message_status), new)
           > array_position(enum_range(NULL::message_status), old)
    END
$$;
