# Shared set-up of the run and test commands. Sourced, not run.
# Build caches and installed tools live outside the clone, so a fresh clone builds warm.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SERVERWARE_CACHE="${SERVERWARE_CACHE:-$HOME/.cache/serverware}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SERVERWARE_CACHE/target}"
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
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
