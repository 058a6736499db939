-- `skipped`: a message Herald chose not to send (a free-form message to a user outside their
-- 24-hour customer-service window); final, like `suppressed`. Added alone: a new enum value
-- cannot be used in the transaction that adds it.
ALTER TYPE message_status ADD VALUE 'skipped';
