#!/usr/bin/env bash
# The README's test command: everything CI checks, runnable on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain: $(cargo --version)"
# A clean clone builds everything once: incremental compilation would only add the cost of
# writing its caches (as rust-lang's own CI advises).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The real-NATS integration tests need nats-server (Debian installs it in /usr/sbin).
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ] && [ -z "${NATS_SERVER_BIN:-}" ]; then
  echo "== installing nats-server"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q nats-server
fi
echo "== nats-server: $( (command -v nats-server || echo /usr/sbin/nats-server) )"
echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
echo "== docs (every public item documented, no broken link)"
# RUSTDOCFLAGS replaces .cargo/config.toml's rustdocflags: keep its `--cfg madsim`.
RUSTDOCFLAGS="--cfg madsim -D warnings" cargo doc --workspace --all-features --no-deps --quiet
echo "== tests"
cargo test --workspace --all-features
echo "== a crate outside this repository using leasehold with features = [\"nats\"]"
# No .cargo/config.toml applies there (it is outside the repository): the production build.
# The `nats` feature must not bring the agent's command-line and logging crates (humantime
# comes with the library itself: its configuration reads durations as text).
REPO="$(pwd)"
DOWN="$(mktemp -d)"
trap 'rm -rf "$DOWN"' EXIT
mkdir -p "$DOWN/src"
cat > "$DOWN/Cargo.toml" <<EOF
[package]
name = "downstream"
version = "0.1.0"
edition = "2021"

[dependencies]
leasehold = { path = "$REPO", features = ["nats"] }
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }

[workspace]
EOF
# Its program is the README's library example, exactly as written there.
awk '/<!-- library example:/ { inside = 1; next } /<!-- end of library example -->/ { inside = 0 }
     inside && !/^```/ { print }' README.md > "$DOWN/src/main.rs"
if ! grep -q "async fn main" "$DOWN/src/main.rs"; then
  echo "error: the README's library example (between its markers) was not found" >&2
  exit 1
fi
if (cd "$DOWN" && cargo tree -e normal --prefix none) | grep -E '^(clap|tracing-subscriber) '; then
  echo "error: features = [\"nats\"] pulls the agent's crates (above) into a library user" >&2
  exit 1
fi
# Its own target directory (another cfg than the workspace's), under CARGO_TARGET_DIR if set.
# Warnings are errors there too (dependencies' lints are capped by cargo).
DOWN_TARGET="${CARGO_TARGET_DIR:-$REPO/target}/downstream"
(cd "$DOWN" && RUSTFLAGS="-D warnings" CARGO_TARGET_DIR="$DOWN_TARGET" cargo build --quiet)
echo "== downstream crate (the README's library example): builds, and has no clap or tracing-subscriber"
# The agent as a production build makes it (no repository cfg, no test features): the
# simulator's fault sites must not be in it. The simulator's own binary is the control: the
# same text is there, so its absence from the agent means something.
(cd "$DOWN" && RUSTFLAGS="-D warnings" CARGO_TARGET_DIR="$DOWN_TARGET" \
  cargo build --quiet --locked --manifest-path "$REPO/Cargo.toml" --features agent --bin leasehold-agent)
MARK="leasehold fault sites compiled in"
if ! grep -qa "$MARK" "${CARGO_TARGET_DIR:-$REPO/target}/debug/leasehold-sim"; then
  echo "error: the simulator's binary lacks the fault sites' mark: the check below would prove nothing" >&2
  exit 1
fi
if grep -qa "$MARK" "$DOWN_TARGET/debug/leasehold-agent"; then
  echo "error: the production leasehold-agent has the simulator's fault sites compiled in" >&2
  exit 1
fi
echo "== leasehold-agent built for production has no fault sites (leasehold-sim has them)"
# And it runs as the README says: three copies of it, a brand-new cluster on a real
# nats-server, elect one of them with fencing token 1.
NATS_BIN="${NATS_SERVER_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
PORT=$((20000 + RANDOM % 10000))
"$NATS_BIN" -a 127.0.0.1 -p "$PORT" > "$DOWN/nats.log" 2>&1 &
PIDS="$!"
mkdir -p "$DOWN/state"
for i in 1 2 3; do
  ORDERS_ID="orders-$i" ORDERS_NEW_CLUSTER=1 ORDERS_NATS="nats://127.0.0.1:$PORT" ORDERS_STATE_DIR="$DOWN/state" \
    "$DOWN_TARGET/debug/downstream" > "$DOWN/orders-$i.out" 2> "$DOWN/orders-$i.err" &
  PIDS="$PIDS $!"
done
LED=""
for _ in $(seq 1 150); do
  if LED="$(grep -l "leading under fencing token 1" "$DOWN"/orders-*.out)"; then break; fi
  sleep 0.1
done
kill $PIDS 2> /dev/null || true
wait 2> /dev/null || true
if [ -z "$LED" ]; then
  echo "error: three copies of the README's library example elected no leader within 15 s" >&2
  tail -n 5 "$DOWN"/orders-*.err >&2
  exit 1
fi
echo "== the README's library example: three copies elect one ($(basename "$LED" .out)) with token 1"
