//! The scale-out store: PostgreSQL (to be written).
