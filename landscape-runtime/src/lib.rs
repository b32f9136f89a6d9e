//! landscape-runtime (under construction).
