-- A number's highest fencing token, so that tokens keep rising after Redis loses its data
-- (the counter lives in Redis): a lease taken on a lost counter starts above it.
ALTER TABLE sender_numbers ADD COLUMN fence bigint NOT NULL DEFAULT 0;
