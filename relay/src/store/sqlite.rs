//! The embedded store: SQLite (to be written).
