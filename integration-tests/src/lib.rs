//! Test beds.
