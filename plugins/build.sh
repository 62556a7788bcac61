#!/usr/bin/env bash
# Builds every plugin crate as a WebAssembly component (wasm32-wasip2) and
# copies the components into plugins/dist/, named after their crates with `_`
# (keep-unread -> keep_unread.wasm). Runs from any directory.
set -euo pipefail

plugins_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$plugins_dir"

target=wasm32-wasip2
# Idempotent: a no-op (apart from a note on stderr) when already installed.
rustup target add "$target" >/dev/null 2>&1 || rustup target add "$target"

# Cargo honours CARGO_BUILD_JOBS (e.g. 1 on a busy machine).
cargo build --release --target "$target"

crates=(
    keep-unread
    size-cap
    json-validator
    lz4-codec
    hostile-validator
    hostile-codec
    delete-everything
)

mkdir -p dist
for crate in "${crates[@]}"; do
    wasm="${crate//-/_}.wasm"
    cp "target/$target/release/$wasm" "dist/$wasm"
done

echo "components in $plugins_dir/dist:"
for crate in "${crates[@]}"; do
    wasm="dist/${crate//-/_}.wasm"
    printf '  %-24s %8d bytes\n' "${wasm#dist/}" "$(wc -c <"$wasm")"
done
