//! Route tables from a parsed landscape (waiting for landscape-spec).
