# Shared set-up of the run and test commands. Sourced, not run.
# Build caches and installed tools live outside the clone, so a fresh clone builds warm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SERVERWARE_CACHE="${SERVERWARE_CACHE:-$HOME/.cache/serverware}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SERVERWARE_CACHE/target}"
# No incremental build data: a shared, long-lived target directory otherwise grows by gigabytes
# with every rebuild (unchanged crates are still reused whole).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$SERVERWARE_CACHE"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages that are missing; skips the rest.
need_apt() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# QEMU (qemu-system-x86 with qemu-utils). Debian 12's QEMU 7.2 cannot be installed beside a
# qemu-utils from bookworm-backports (10.x Breaks qemu-system-common << 8.0), which some machines
# of this kind come with: there QEMU is taken from bookworm-backports as well, matching it.
need_qemu() {
    if dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q "install ok installed"; then
        need_apt qemu-utils
        return
    fi
    local utils
    utils="$(dpkg-query -W -f='${Status} ${Version}' qemu-utils 2>/dev/null || true)"
    if [[ "$utils" == "install ok installed"*"~bpo12"* ]]; then
        say "installing QEMU from bookworm-backports (this machine's qemu-utils is from there)"
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "deb http://deb.debian.org/debian bookworm-backports main" \
            | $sudo tee /etc/apt/sources.list.d/serverware-bookworm-backports.list >/dev/null
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq -t bookworm-backports \
            qemu-system-x86 qemu-utils >/dev/null
    else
        need_apt qemu-system-x86 qemu-utils
    fi
}

need_cargo() {
    command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup) first" >&2; exit 1; }
}

# What building the controller needs: a C compiler for the bundled SQLite, libpq for PostgreSQL.
need_build_deps() {
    need_cargo
    need_apt build-essential pkg-config libpq-dev
}

# The dashboard's build tools: the wasm32 target, trunk, the wasm-bindgen CLI that matches the
# crate, and wasm-opt from npm (Debian's is too old and builds a broken wasm).
TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132
XTERM_VERSION=5.5.0
XTERM_FIT_VERSION=0.10.0
need_frontend_tools() {
    command -v npm >/dev/null || need_apt nodejs npm
    if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
        say "installing the wasm32 Rust target"
        rustup target add wasm32-unknown-unknown
    fi
    if ! trunk --version 2>/dev/null | grep -q "$TRUNK_VERSION"; then
        say "installing trunk $TRUNK_VERSION (about 10 minutes, once)"
        cargo install --locked "trunk@$TRUNK_VERSION"
    fi
    if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
        say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
        cargo install --force "wasm-bindgen-cli@$WASM_BINDGEN_VERSION"
    fi
    local node_dir="$SERVERWARE_CACHE/node"
    if ! "$node_dir/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
        say "installing wasm-opt (binaryen $BINARYEN_VERSION from npm)"
        mkdir -p "$node_dir"
        (cd "$node_dir" && npm install --silent --no-audit --no-fund "binaryen@$BINARYEN_VERSION")
    fi
    export PATH="$node_dir/node_modules/.bin:$PATH"
    # The VPS console's terminal (xterm.js), served with the dashboard (loaded on first use).
    if [ ! -f "$node_dir/node_modules/@xterm/xterm/package.json" ] \
        || ! grep -q "\"version\": \"$XTERM_VERSION\"" "$node_dir/node_modules/@xterm/xterm/package.json" \
        || [ ! -f "$node_dir/node_modules/@xterm/addon-fit/lib/addon-fit.js" ]; then
        say "installing xterm.js $XTERM_VERSION (npm)"
        (cd "$node_dir" && npm install --silent --no-audit --no-fund "@xterm/xterm@$XTERM_VERSION" "@xterm/addon-fit@$XTERM_FIT_VERSION")
    fi
    mkdir -p "$ROOT/frontend/vendor"
    cp "$node_dir/node_modules/@xterm/xterm/lib/xterm.js" "$node_dir/node_modules/@xterm/xterm/css/xterm.css" \
        "$node_dir/node_modules/@xterm/addon-fit/lib/addon-fit.js" "$ROOT/frontend/vendor/"
}

# Garage, the S3 store a controller pair keeps its restore points in (run as its own program).
GARAGE_VERSION=2.5.0
need_garage() {
    if ! garage --version 2>/dev/null | grep -q ":$GARAGE_VERSION "; then
        say "installing garage $GARAGE_VERSION (the S3 store of a controller pair; about 20 minutes, once)"
        cargo install --locked "garage@$GARAGE_VERSION"
    fi
}

# Builds the dashboard into dist/ and checks the size of its wasm.
build_dashboard() {
    need_frontend_tools
    say "building the dashboard"
    (cd "$ROOT" && trunk build --release)
    local wasm gz
    wasm="$(ls "$ROOT"/dist/*.wasm)"
    gz="$(gzip -9 -c "$wasm" | wc -c)"
    say "dashboard wasm: $((gz / 1024)) KB gzipped (limit 640 KB)"
    if [ "$gz" -gt $((640 * 1024)) ]; then
        echo "the dashboard's wasm is over 640 KB gzipped" >&2
        exit 1
    fi
}

# A clean Debian 12 with systemd for the package test, made once with debootstrap (cached): what
# `apt install ./serverware_*.deb` brings on a fresh server (the package's Depends, and
# busybox-static from its Recommends), and nothing of ours.
PACKAGE_HOST_PACKAGES="systemd-sysv,libpq5,libssl3,busybox-static,iproute2,procps"
build_package_host() {
    need_apt debootstrap
    local key dir
    key="bookworm-$(printf '%s' "$PACKAGE_HOST_PACKAGES" | sha256sum | cut -c1-12)"
    dir="$SERVERWARE_CACHE/package-host/$key"
    if [ ! -x "$dir/root/lib/systemd/systemd" ]; then
        say "a clean Debian 12 for the package test (debootstrap, once)"
        rm -rf "$dir.part"
        mkdir -p "$dir.part"
        debootstrap --variant=minbase --include="$PACKAGE_HOST_PACKAGES" bookworm "$dir.part/root" \
            http://deb.debian.org/debian >"$dir.part/debootstrap.log" 2>&1 \
            || { tail -n 30 "$dir.part/debootstrap.log" >&2; exit 1; }
        rm -f "$dir.part/root/var/cache/apt/archives/"*.deb
        rm -rf "$dir"
        mv "$dir.part" "$dir"
    fi
    export SERVERWARE_TEST_PACKAGE_HOST="$dir/root"
}
