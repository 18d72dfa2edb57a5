-- How many entries wait per device, kept by statement triggers: the
-- queue-length check on every stored message reads one row instead of
-- counting the device's whole queue (which made storing O(queue length)).
-- Stores for the same device are already serialised by advisory locks.
CREATE TABLE relay_queue_len (
    device BYTEA PRIMARY KEY,
    n BIGINT NOT NULL
);

INSERT INTO relay_queue_len (device, n)
    SELECT device, count(*) FROM relay_queue GROUP BY device;

CREATE FUNCTION relay_queue_len_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO relay_queue_len (device, n)
        SELECT device, count(*) FROM added GROUP BY device ORDER BY device
        ON CONFLICT (device) DO UPDATE SET n = relay_queue_len.n + excluded.n;
    RETURN NULL;
END
$$;

-- The row goes with the device's last entry: nothing about an idle device
-- stays behind here.
CREATE FUNCTION relay_queue_len_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE relay_queue_len l SET n = l.n - g.n
        FROM (SELECT device, count(*) AS n FROM removed GROUP BY device) g
        WHERE l.device = g.device;
    DELETE FROM relay_queue_len
        WHERE n <= 0 AND device IN (SELECT device FROM removed);
    RETURN NULL;
END
$$;

CREATE TRIGGER relay_queue_len_insert AFTER INSERT ON relay_queue
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION relay_queue_len_added();

CREATE TRIGGER relay_queue_len_delete AFTER DELETE ON relay_queue
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION relay_queue_len_removed();
