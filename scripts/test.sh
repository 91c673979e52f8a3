#!/usr/bin/env bash
# Runs the whole test suite: unit tests, the API suite on SQLite, then the same API suite on a
# private PostgreSQL server started here and removed afterwards. Installs what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need_build_deps
need_apt postgresql
cd "$ROOT"

need_apt chromium fonts-dejavu-core
# Test hosts: network namespaces with their own OpenSSH sshd; LXC for VPSes.
need_apt iproute2 openssh-server openssh-client tini openssl lxc busybox-static
# The controller pair: a real etcd cluster (Debian etcd-server) decides who leads.
need_apt etcd-server curl
# The pair's storage: Garage (S3), three nodes started by the test.
need_garage
build_dashboard

# Hosts provisioned over the network: a QEMU machine boots the site's host image from the
# controller (dnsmasq proxy DHCP + TFTP, Debian's iPXE). The image is built once from Debian's
# packages (debootstrap; cached in $SERVERWARE_CACHE/images, rebuilt when its inputs change).
need_qemu
need_apt ipxe dnsmasq debootstrap squashfs-tools
say "the host image (serverware image build; cached)"
cargo build --locked -q -p serverware -p serverware-agent -p serverware-fleetsim
export SERVERWARE_TEST_IMAGES_DIR="$SERVERWARE_CACHE/images"
"$CARGO_TARGET_DIR/debug/serverware" --config /dev/null --images-dir "$SERVERWARE_TEST_IMAGES_DIR" image build

# The Debian packages (backend/tests/package.rs installs and upgrades them on a clean Debian 12
# with systemd): this checkout's, and a newer build of it with one more migration, built from a
# copy. Both unoptimised (profile pkgtest) so that they build in minutes.
build_package_host
PACKAGES_DIR="$SERVERWARE_CACHE/test-packages"
NEXT_SRC="$SERVERWARE_CACHE/package-next-src"
rm -rf "$PACKAGES_DIR" "$NEXT_SRC"
mkdir -p "$PACKAGES_DIR" "$NEXT_SRC"
say "the packages the package test installs and upgrades"
"$ROOT/scripts/package.sh" --profile pkgtest --version 0.1.0+test.1 --dist "$ROOT/dist" --out "$PACKAGES_DIR"
tar -C "$ROOT" --exclude=./.git --exclude=./e2e/node_modules --exclude=./dist --exclude=./dist-packages \
    --exclude=./data -cf - . | tar -C "$NEXT_SRC" -xf -
for db in sqlite postgres; do
    mkdir -p "$NEXT_SRC/migrations/$db/2099-01-01-000000_package_test"
    echo "CREATE TABLE package_test (id INTEGER PRIMARY KEY);" > "$NEXT_SRC/migrations/$db/2099-01-01-000000_package_test/up.sql"
    echo "DROP TABLE package_test;" > "$NEXT_SRC/migrations/$db/2099-01-01-000000_package_test/down.sql"
done
"$NEXT_SRC/scripts/package.sh" --profile pkgtest --version 0.1.0+test.2 --dist "$ROOT/dist" --out "$PACKAGES_DIR"
rm -rf "$NEXT_SRC"
export SERVERWARE_TEST_PACKAGES="$PACKAGES_DIR"

say "shared/ builds for wasm32 (the dashboard's target)"
cargo check --locked -q -p serverware-shared --target wasm32-unknown-unknown

say "unit tests and the API suite on SQLite"
cargo test --locked

say "browser tests: Playwright driving Debian Chromium against a real controller and a test host"
E2E_DATA_DIR="$(mktemp -d /tmp/serverware-e2e.XXXXXX)"
E2E_HOST_PASSWORD="host-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
# Two hosts: a failover needs somewhere to go. The browser tests power them off and on again
# through the control socket.
E2E_CONTROL="$E2E_DATA_DIR/testhosts.sock"
"$CARGO_TARGET_DIR/debug/sw-testhosts" up 2 --password "$E2E_HOST_PASSWORD" --control "$E2E_CONTROL" > "$E2E_DATA_DIR/testhosts.log" 2>&1 &
TESTHOSTS_PID=$!
stop_testhosts() {
    if kill -0 "$TESTHOSTS_PID" 2>/dev/null; then
        kill -INT "$TESTHOSTS_PID" 2>/dev/null || true
        wait "$TESTHOSTS_PID" 2>/dev/null || true
    fi
}
trap 'stop_testhosts; rm -rf "$E2E_DATA_DIR"' EXIT
for _ in $(seq 1 300); do
    grep -q 'control socket' "$E2E_DATA_DIR/testhosts.log" && break
    kill -0 "$TESTHOSTS_PID" 2>/dev/null || { cat "$E2E_DATA_DIR/testhosts.log" >&2; exit 1; }
    sleep 0.2
done
E2E_HOST_URL="$(grep -o 'ssh://[^ ]*' "$E2E_DATA_DIR/testhosts.log" | sed -n 1p)"
E2E_HOST_URL2="$(grep -o 'ssh://[^ ]*' "$E2E_DATA_DIR/testhosts.log" | sed -n 2p)"
[ -n "$E2E_HOST_URL2" ] || { echo "the test hosts did not come up" >&2; cat "$E2E_DATA_DIR/testhosts.log" >&2; exit 1; }
(
    cd "$ROOT/e2e"
    # Never `npx playwright install`: the browser is Debian's.
    npm ci --silent --no-audit --no-fund
    E2E_DATA_DIR="$E2E_DATA_DIR" \
    E2E_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" \
    E2E_ADMIN_PASSWORD="e2e-$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" \
    SERVERWARE_BIN="$CARGO_TARGET_DIR/debug/serverware" \
    SERVERWARE_STATIC_DIR="$ROOT/dist" \
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 \
    E2E_HOST_URL="$E2E_HOST_URL" E2E_HOST_URL2="$E2E_HOST_URL2" E2E_CONTROL="$E2E_CONTROL" \
    E2E_HOST_PASSWORD="$E2E_HOST_PASSWORD" \
    npx playwright test
)
stop_testhosts

# A private PostgreSQL cluster on a free loopback port, owned by this run.
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
PG_DIR="$(mktemp -d /tmp/serverware-pg.XXXXXX)"
PG_PID_FILE="$PG_DIR/data/postmaster.pid"
cleanup() {
    stop_testhosts
    rm -rf "$E2E_DATA_DIR"
    if [ -f "$PG_PID_FILE" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}
trap cleanup EXIT INT TERM
PG_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
PG_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
chown postgres "$PG_DIR"
printf '%s\n' "$PG_PASSWORD" > "$PG_DIR/pw" && chown postgres "$PG_DIR/pw"
say "starting a private PostgreSQL on 127.0.0.1:$PG_PORT"
runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=scram-sha-256 --pwfile="$PG_DIR/pw" >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" start >/dev/null

say "the API suite on PostgreSQL"
# The private cluster has no Kerberos: libpq need not set up GSSAPI (whose library state, torn
# down at process exit while a pool thread still connects, once aborted a passing run).
PGGSSENCMODE=disable SERVERWARE_TEST_POSTGRES_URL="postgres://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres" \
    cargo test --locked --test api
