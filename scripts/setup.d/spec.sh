# landscape-spec: cargo-fuzz for the fuzz smoke (scripts/test.d/spec-fuzz.sh).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
