-- A stored message counts its queue entries itself (store_message_apply in
-- relay/src/store/sqlite.rs, the only place that inserts into relay_queue):
-- a trigger made each insert a statement of two writes, for which SQLite
-- keeps a statement journal, a copy of every page the insert touched.
-- Deletes keep their trigger (they come from several places, and a delete
-- of many rows is one statement anyway).
DROP TRIGGER relay_queue_len_insert;
