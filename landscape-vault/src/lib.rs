//! landscape-vault (under construction).
