#!/usr/bin/env bash
# Fuzzes the policy loader: seeds the corpus with a real export, then runs libFuzzer.
#   rust/runtime/fuzz/run.sh [SECONDS]      (default 600; needs `cargo install cargo-fuzz`)
# The stable toolchain builds it with RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Z flags).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
root="$(cd ../../.. && pwd)"
mkdir -p corpus
if [ ! -f corpus/seed.safetensors ]; then
  tmp="$(mktemp -d)"
  (cd "$root" && export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/meshrl/target}" && cargo run -q --release -p meshrl-cli -- train configs/train/small.toml \
      --steps 8192 --eval-episodes 16 --out "$tmp/run" >/dev/null &&
    cargo run -q --release -p meshrl-cli -- export "$tmp/run" -o "$PWD/rust/runtime/fuzz/corpus/seed.safetensors")
fi
RUSTC_BOOTSTRAP=1 cargo fuzz run load corpus -- -max_len=65536 -max_total_time="$secs" -print_final_stats=1
