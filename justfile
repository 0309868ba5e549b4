# Development tasks. `just --list` shows them.

# Run every test, as CI does.
test:
    cargo test --workspace

# Formatting and lints, as required before every commit.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Throughput of the reference jobs, with and without checkpoints.
bench:
    cargo build --release --bin weir
    ./target/release/weir bench grep
    ./target/release/weir bench grep --checkpoint-interval 1s
    ./target/release/weir bench grep --mode regex
    ./target/release/weir bench keyed-sum
    ./target/release/weir bench keyed-sum --checkpoint-interval 1s
