//! landscape-net (under construction).
