-- When a command was handed to its device (fetched or sent live).
ALTER TABLE relay_commands ADD COLUMN delivered_at_ms BIGINT;
