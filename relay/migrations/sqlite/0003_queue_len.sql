-- How many entries wait per device, kept by triggers: the queue-length
-- check on every stored message reads one row instead of counting the
-- device's whole queue (which made storing O(queue length)).
CREATE TABLE relay_queue_len (
    device BLOB PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO relay_queue_len (device, n)
    SELECT device, COUNT(*) FROM relay_queue GROUP BY device;

CREATE TRIGGER relay_queue_len_insert AFTER INSERT ON relay_queue BEGIN
    INSERT INTO relay_queue_len (device, n) VALUES (NEW.device, 1)
        ON CONFLICT (device) DO UPDATE SET n = n + 1;
END;

-- The row goes with the device's last entry: nothing about an idle device
-- stays behind here.
CREATE TRIGGER relay_queue_len_delete AFTER DELETE ON relay_queue BEGIN
    UPDATE relay_queue_len SET n = n - 1 WHERE device = OLD.device;
    DELETE FROM relay_queue_len WHERE device = OLD.device AND n <= 0;
END;
