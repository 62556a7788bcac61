#!/usr/bin/env bash
# Builds every plugin in plugins/ as a WebAssembly component into
# plugins/dist/, named after its directory with `_` (keep-unread ->
# keep_unread.wasm). Runs from any directory.
#
# - Rust: every member of this Cargo workspace that builds a `cdylib`, for
#   wasm32-wasip2. The artifacts are taken from the target directory cargo
#   reports (`cargo metadata`), so CARGO_TARGET_DIR and .cargo/config are
#   honoured. A directory holding a Cargo.toml that the workspace does not
#   list is an error, not a silent omission.
# - Python: every directory holding `app.py`, with componentize-py installed
#   into plugins/.venv from PyPI.
# - JavaScript: every directory holding `plugin.js`, with componentize-js
#   installed into plugins/node_modules from npm (versions in package.json
#   and package-lock.json). Built with `--disable http fetch-event`: the
#   broker does not provide wasi:http, and a component importing it is refused.
#
# The world a Python or JavaScript plugin targets is named on a line
# `# netlog-world: <world>` (Python) or `// netlog-world: <world>` (JS).
#
# WIT versions: a Rust plugin names its WIT directory in its own
# `wit_bindgen::generate!`. The first-party Python and JavaScript plugins,
# like most of the Rust ones, are built against netlog:plugin@0.1.0
# (../wit/v0.1), so the broker's tests keep proving that 0.1 components
# load; json-schema is built against 0.2.0 (../wit).
#
# dist/*.wasm is cleared first, so nothing stale survives a failed or partial
# build. When a Python or JavaScript toolchain cannot be installed (no
# python3/node, no network), that language is skipped: the reason is printed
# and written to dist/<name>.skipped, which the end-to-end tests report. Any
# other failure stops the script with a non-zero status.
set -euo pipefail

plugins_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$plugins_dir"

target=wasm32-wasip2
# Pinned exactly: the component encoding and the generated bindings move.
componentize_py_version=0.25.1

stage() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

rm -f dist/*.wasm dist/*.skipped
mkdir -p dist
built=()

# ---- Rust -------------------------------------------------------------------
stage "rust: rustup target add $target"
# Idempotent: a no-op (apart from a note on stderr) when already installed.
rustup target add "$target" >/dev/null 2>&1 || rustup target add "$target"

metadata="$(cargo metadata --no-deps --format-version 1)"
target_dir="$(printf '%s' "$metadata" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
[ -n "$target_dir" ] || die "cargo metadata reported no target_directory"
# The workspace members' manifests, one per line.
manifests="$(printf '%s' "$metadata" | grep -o '"manifest_path":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/')"

for manifest in */Cargo.toml; do
    grep -qxF "$plugins_dir/$manifest" <<<"$manifests" ||
        die "$manifest is not a member of plugins/Cargo.toml's workspace; add it to members"
done

rust_crates=()
while IFS= read -r manifest; do
    if grep -q '"cdylib"' "$manifest"; then
        rust_crates+=("$(basename "$(dirname "$manifest")")")
    fi
done <<<"$manifests"
[ "${#rust_crates[@]}" -gt 0 ] || die "no cdylib crate found in the workspace"

stage "rust: cargo build --release --target $target (${#rust_crates[@]} components, into $target_dir)"
# Cargo honours CARGO_BUILD_JOBS (e.g. 1 on a busy machine).
cargo build --release --target "$target"

for crate in "${rust_crates[@]}"; do
    wasm="${crate//-/_}.wasm"
    artifact="$target_dir/$target/release/$wasm"
    [ -f "$artifact" ] || die "cargo built no $artifact for crate $crate"
    cp "$artifact" "dist/$wasm"
    built+=("$wasm")
done

# ---- Python -----------------------------------------------------------------
# The world named on a `netlog-world:` line of $1.
world_of() {
    local world
    world="$(sed -n 's/^\(#\|\/\/\) netlog-world: *\([a-z-]*\).*/\2/p' "$1" | head -n 1)"
    [ -n "$world" ] || die "$1 names no world (add a line: netlog-world: validator)"
    printf '%s' "$world"
}

# Records that plugin dir $1 was not built, for reason $2.
skip() {
    local name="${1//-/_}"
    printf 'build.sh: SKIPPED %s: %s\n' "$1" "$2" >&2
    printf '%s\n' "$2" >"dist/$name.skipped"
}

py_plugins=()
for app in */app.py; do
    [ -f "$app" ] && py_plugins+=("$(dirname "$app")")
done
if [ "${#py_plugins[@]}" -gt 0 ]; then
    stage "python: install componentize-py==$componentize_py_version into plugins/.venv"
    py_reason=""
    if ! command -v python3 >/dev/null; then
        py_reason="python3 is not installed"
    elif ! { [ -x .venv/bin/python ] || python3 -m venv .venv; }; then
        py_reason="python3 -m venv failed (install python3-venv)"
    elif ! .venv/bin/python -m pip install --disable-pip-version-check --quiet \
        "componentize-py==$componentize_py_version"; then
        py_reason="pip could not install componentize-py==$componentize_py_version from PyPI"
    fi
    for dir in "${py_plugins[@]}"; do
        if [ -n "$py_reason" ]; then
            skip "$dir" "$py_reason"
            continue
        fi
        world="$(world_of "$dir/app.py")"
        wasm="${dir//-/_}.wasm"
        stage "python: componentize-py $dir (world $world)"
        (cd "$dir" && ../.venv/bin/componentize-py --wit-path ../../wit/v0.1 --world "$world" \
            componentize app --output "../dist/$wasm")
        built+=("$wasm")
    done
fi

# ---- JavaScript -------------------------------------------------------------
js_plugins=()
for js in */plugin.js; do
    [ -f "$js" ] && js_plugins+=("$(dirname "$js")")
done
if [ "${#js_plugins[@]}" -gt 0 ]; then
    stage "javascript: npm install (componentize-js, pinned in plugins/package.json)"
    js_reason=""
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        js_reason="node and npm are not installed"
    elif ! npm install --no-audit --no-fund --loglevel=error; then
        js_reason="npm could not install @bytecodealliance/componentize-js"
    fi
    for dir in "${js_plugins[@]}"; do
        if [ -n "$js_reason" ]; then
            skip "$dir" "$js_reason"
            continue
        fi
        world="$(world_of "$dir/plugin.js")"
        wasm="${dir//-/_}.wasm"
        stage "javascript: componentize-js $dir (world $world, --disable http fetch-event)"
        node node_modules/.bin/componentize-js "$dir/plugin.js" --wit ../wit/v0.1 \
            --world-name "$world" --disable http fetch-event --out "dist/$wasm"
        # The broker links no wasi:http; make sure the flag took.
        if node node_modules/.bin/jco wit "dist/$wasm" | grep -q 'import wasi:http'; then
            rm -f "dist/$wasm"
            die "$dir: the component still imports wasi:http, which the broker refuses"
        fi
        built+=("$wasm")
    done
fi

# ---- Summary ----------------------------------------------------------------
stage "components in $plugins_dir/dist:"
for wasm in "${built[@]}"; do
    [ -f "dist/$wasm" ] || die "dist/$wasm is missing after its build"
    printf '  %-24s %9d bytes\n' "$wasm" "$(wc -c <"dist/$wasm")"
done
for skipped in dist/*.skipped; do
    [ -f "$skipped" ] && printf '  %-24s SKIPPED: %s\n' "$(basename "$skipped" .skipped).wasm" "$(cat "$skipped")"
done
exit 0
