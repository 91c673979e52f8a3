#!/usr/bin/env bash
# Runs the benchmarks (not part of the test suite): builds release binaries and measures the
# controller against real test hosts on this machine. Needs root (network namespaces).
#   scripts/bench.sh [netres] [--hosts N] [--seconds S]
#   scripts/bench.sh move [--rounds N] [--mb M]
#   scripts/bench.sh heartbeat [--vpses N] [--gb G] [--seconds S]
#   scripts/bench.sh login-flood [--clients N] [--seconds S]
#   scripts/bench.sh idshift [--files N] [--rounds R]
#   scripts/bench.sh duplo [--files N] [--rounds R] [--seconds S] [--vpses V]
#   scripts/bench.sh failover [--rounds N] [--gb G] [--many M] [--cut C] [--soak S]
#   scripts/bench.sh takeover [--rounds N] [--lease S] [--kill]
#   scripts/bench.sh provision [--boots N] [--cold 0|1]
#   scripts/bench.sh fleet [--hosts 100,1000] [--vpses 10] [--seconds 60] [--deaths 5] [--duplo-interval 10] [--change-every 6]
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_build_deps
need_apt iproute2 openssh-server openssh-client tini openssl lxc busybox-static rsync etcd-server
cd "$ROOT"
which="${1:-netres}"
[ $# -gt 0 ] && shift
say "building release binaries"
cargo build --release --locked -p serverware -p serverware-agent -p serverware-bench -p serverware-fleetsim
case "$which" in
    netres) exec "$CARGO_TARGET_DIR/release/netres-bench" "$@" ;;
    move) exec "$CARGO_TARGET_DIR/release/move-bench" "$@" ;;
    heartbeat) exec "$CARGO_TARGET_DIR/release/heartbeat-bench" "$@" ;;
    login-flood) exec "$CARGO_TARGET_DIR/release/login-flood-bench" "$@" ;;
    idshift) exec "$CARGO_TARGET_DIR/release/idshift-bench" "$@" ;;
    duplo) exec "$CARGO_TARGET_DIR/release/duplo-bench" "$@" ;;
    failover) exec "$CARGO_TARGET_DIR/release/failover-bench" "$@" ;;
    takeover) exec "$CARGO_TARGET_DIR/release/takeover-bench" "$@" ;;
    provision)
        need_qemu
        need_apt ipxe dnsmasq debootstrap squashfs-tools
        exec "$CARGO_TARGET_DIR/release/provision-bench" "$@" ;;
    fleet)
        # The VPS list is measured in Debian's Chromium against the bench's controller.
        need_apt chromium fonts-dejavu-core
        build_dashboard
        (cd "$ROOT/e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
        BENCH_STATIC_DIR="$ROOT/dist" BENCH_E2E_DIR="$ROOT/e2e" exec "$CARGO_TARGET_DIR/release/fleet-bench" "$@" ;;
    *) echo "unknown benchmark '$which' (netres, move, heartbeat, login-flood, idshift, duplo, failover, takeover, provision, fleet)" >&2; exit 2 ;;
esac
