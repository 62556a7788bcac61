#!/usr/bin/env bash
# Runs every test of netlog, from a fresh machine: installs the wasm32-wasip2
# target, builds the plugins in plugins/, runs their tests, then the broker's
# unit, integration and doc tests (which load the freshly built plugins).
set -euo pipefail
cd "$(dirname "$0")"

if [ -d plugins ] && [ -f plugins/build.sh ]; then
  bash plugins/build.sh
  (cd plugins && cargo test --quiet)
fi
cargo test --quiet
