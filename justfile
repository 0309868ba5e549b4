# Development tasks. `just --list` shows them.

# Run every test, as CI does.
test:
    cargo test --workspace

# Formatting and lints, as required before every commit.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Throughput of the reference jobs (with and without checkpoints, in one process and
# across two worker processes) and end-to-end latency at 100,000 records/s.
bench:
    cargo build --release --bin weir
    ./target/release/weir bench grep
    ./target/release/weir bench grep --checkpoint-interval 1s
    ./target/release/weir bench grep --mode regex
    ./target/release/weir bench keyed-sum
    ./target/release/weir bench keyed-sum --checkpoint-interval 1s
    ./target/release/weir bench keyed-sum --workers 2
    ./target/release/weir bench keyed-sum --workers 2 --rate 100000 --buffer-timeout 0
    ./target/release/weir bench keyed-sum --workers 2 --rate 100000 --buffer-timeout 5ms
    ./target/release/weir bench keyed-sum --workers 2 --rate 100000 --buffer-timeout 50ms
