//! Subscription index (being written).
