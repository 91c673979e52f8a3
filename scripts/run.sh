#!/usr/bin/env bash
# Builds and starts the controller with SQLite in ./data, installing what is missing.
# Extra arguments go to the controller (see `serverware --help`).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_build_deps
# The controller builds templates: the built-in one from busybox-static, Debian ones with debootstrap.
need_apt busybox-static debootstrap
cd "$ROOT"
build_dashboard
say "building the controller (release)"
cargo build --release --locked -p serverware -p serverware-agent -p serverware-cli
# The command line, `sw`, on the PATH (replaced when the build changed it).
if [ -w /usr/local/bin ] && ! cmp -s "$CARGO_TARGET_DIR/release/sw" /usr/local/bin/sw; then
    install -m 0755 "$CARGO_TARGET_DIR/release/sw" /usr/local/bin/sw
    say "installed the command line: /usr/local/bin/sw (try: sw login http://127.0.0.1:8080)"
fi
export SERVERWARE_DATA_DIR="${SERVERWARE_DATA_DIR:-$ROOT/data}"
export SERVERWARE_STATIC_DIR="${SERVERWARE_STATIC_DIR:-$ROOT/dist}"
say "starting the controller (data in $SERVERWARE_DATA_DIR)"
exec "$CARGO_TARGET_DIR/release/serverware" "$@"
