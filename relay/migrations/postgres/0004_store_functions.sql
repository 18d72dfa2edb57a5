-- Storing a message and acknowledging entries, each in one round trip.
-- Done statement by statement from the relay, a store took eight round
-- trips (BEGIN, the id, the locks, the queue check, the body, the queue
-- entries, the grants, COMMIT), and every one of them held a pooled
-- connection in an open transaction while the relay's task was scheduled
-- again: under load the pool's connections sat "idle in transaction".
-- Each function runs as one statement, so its own implicit transaction.

-- Stores a message: returns one row per queue entry (seq, device, 'new');
-- no row when there is nobody to deliver to; one row (NULL, NULL,
-- 'duplicate' or 'replay') when the sender used the id before. A full
-- queue raises SQLSTATE KR001 with the device's id in hex as its message,
-- which undoes everything, the id included.
CREATE FUNCTION relay_store_message(
    p_sender BYTEA,
    p_message_id BYTEA,
    p_body_hash BYTEA,
    p_body BYTEA,
    p_devices BYTEA[],
    p_deliveries BYTEA[],
    p_lock_keys BIGINT[],
    p_blobs BYTEA[],
    p_received BIGINT,
    p_expires BIGINT,
    p_queue_max BIGINT
) RETURNS TABLE (r_seq BIGINT, r_device BYTEA, r_outcome TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    v_hash BYTEA;
    v_full BYTEA;
    v_body BIGINT;
BEGIN
    INSERT INTO relay_seen (sender, message_id, body_hash, expires_at_ms)
        VALUES (p_sender, p_message_id, p_body_hash, p_expires)
        ON CONFLICT (sender, message_id) DO NOTHING;
    IF NOT FOUND THEN
        SELECT s.body_hash INTO v_hash FROM relay_seen s
            WHERE s.sender = p_sender AND s.message_id = p_message_id;
        RETURN QUERY SELECT NULL::BIGINT, NULL::BYTEA,
            CASE WHEN v_hash = p_body_hash THEN 'duplicate' ELSE 'replay' END;
        RETURN;
    END IF;
    -- Per-device locks in a fixed order: stores for the same recipient
    -- queue one after the other across nodes, so a queue never grows past
    -- its limit.
    PERFORM pg_advisory_xact_lock(k) FROM unnest(p_lock_keys) AS k ORDER BY k;
    SELECT l.device INTO v_full FROM relay_queue_len l
        WHERE l.device = ANY(p_devices) AND l.n >= p_queue_max LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'KR001', MESSAGE = encode(v_full, 'hex');
    END IF;
    IF cardinality(p_devices) = 0 THEN
        -- Nobody to deliver to: the id is remembered, no body kept.
        RETURN;
    END IF;
    INSERT INTO relay_bodies (body, expires_at_ms) VALUES (p_body, p_expires)
        RETURNING id INTO v_body;
    IF cardinality(p_blobs) > 0 THEN
        INSERT INTO relay_blob_grants (blob_id, device)
            SELECT b.id, d.device FROM relay_blobs b, unnest(p_devices) AS d(device)
            WHERE b.id = ANY(p_blobs)
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN QUERY WITH added AS (
        INSERT INTO relay_queue (device, body_id, delivery, received_at_ms, expires_at_ms)
            SELECT d.device, v_body, d.delivery, p_received, p_expires
            FROM unnest(p_devices, p_deliveries) WITH ORDINALITY AS d(device, delivery, n)
            ORDER BY d.n
            RETURNING seq, device
    )
    SELECT a.seq, a.device, 'new'::TEXT FROM added a ORDER BY a.seq;
END
$$;

-- Acknowledges (deletes) a device's entries; a body goes with its last
-- entry. Returns how many entries existed.
CREATE FUNCTION relay_ack(p_device BYTEA, p_seqs BIGINT[]) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    v_bodies BIGINT[];
BEGIN
    WITH gone AS (
        DELETE FROM relay_queue WHERE device = p_device AND seq = ANY(p_seqs)
            RETURNING body_id
    )
    SELECT array_agg(body_id) INTO v_bodies FROM gone;
    IF v_bodies IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM relay_bodies b WHERE b.id = ANY(v_bodies)
        AND NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.body_id = b.id);
    RETURN cardinality(v_bodies);
END
$$;
