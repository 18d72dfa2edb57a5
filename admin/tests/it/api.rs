//! Behaviour of the admin API beyond authorisation.
