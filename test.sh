#!/usr/bin/env bash
# Runs every test of netlog, from a fresh machine: builds the plugins in
# plugins/ (Rust, Python and JavaScript; build.sh installs the toolchains),
# runs their own tests, then the broker's unit, integration and doc tests
# (which load the freshly built components from plugins/dist). Works with
# and without CARGO_TARGET_DIR set. Prints a line per stage; cargo's build
# output is left visible, since a first build takes minutes.
set -euo pipefail
cd "$(dirname "$0")"

stage() { printf '\n==== test.sh: %s\n' "$*"; }

if [ -d plugins ] && [ -f plugins/build.sh ]; then
  stage "build the plugins (plugins/build.sh)"
  bash plugins/build.sh

  stage "test the Rust plugins (cd plugins && cargo test)"
  (cd plugins && cargo test)

  for app in plugins/*/app.py; do
    [ -f "$app" ] || continue
    dir="$(dirname "$app")"
    if command -v python3 >/dev/null; then
      stage "test $dir (python3 -m unittest)"
      (cd "$dir" && python3 -m unittest)
    else
      stage "SKIPPED the tests of $dir: python3 is not installed"
    fi
  done

  for js in plugins/*/plugin.js; do
    [ -f "$js" ] || continue
    dir="$(dirname "$js")"
    if command -v node >/dev/null; then
      stage "test $dir (node --test)"
      (cd "$dir" && node --test)
    else
      stage "SKIPPED the tests of $dir: node is not installed"
    fi
  done
fi

stage "test the broker (cargo test)"
cargo test
stage "all tests passed"
