//! Robustness: stop semantics, repeated start/stop leaves nothing behind.
mod common;
fn main() {
    common::run(&[]);
}
