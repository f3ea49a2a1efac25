//! Retained-message store (being written).
