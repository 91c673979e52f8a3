#!/usr/bin/env bash
# Builds the Debian packages into dist-packages/ (or --out DIR):
#   serverware_VERSION_amd64.deb     the controller (dashboard compiled in), the host agent it puts
#                                    on hosts, `sw`, a systemd unit, /etc/serverware/config.toml
#   serverware-sw_VERSION_amd64.deb  `sw` alone, for operators' machines
# Usage: scripts/package.sh [--version V] [--profile release|pkgtest] [--out DIR] [--dist DIR]
# The version defaults to the workspace's plus the commit's time and hash, so a newer commit
# makes a newer package. --dist uses a dashboard already built (the test builds it once).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
version="" profile=release out="$ROOT/dist-packages" dist=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version="$2"; shift 2 ;;
        --profile) profile="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --dist) dist="$2"; shift 2 ;;
        *) echo "unknown argument: $1 (see the comment at the top of $0)" >&2; exit 2 ;;
    esac
done
need_build_deps
cd "$ROOT"
if [ -z "$version" ]; then
    base="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
    version="$base+$(git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S 2>/dev/null || date -u +%Y%m%d%H%M%S).g$(git rev-parse --short HEAD 2>/dev/null || echo local)"
fi
case "$version" in
    [0-9]*) ;;
    *) echo "a package version starts with a digit: $version" >&2; exit 2 ;;
esac
if [ -z "$dist" ]; then
    build_dashboard
    dist="$ROOT/dist"
fi
say "building the controller, agent and sw $version ($profile)"
SERVERWARE_VERSION="$version" SERVERWARE_EMBED_DASHBOARD="$dist" \
    cargo build --locked --profile "$profile" -p serverware -p serverware-agent -p serverware-cli
case "$profile" in
    dev) bin="$CARGO_TARGET_DIR/debug" ;;
    *) bin="$CARGO_TARGET_DIR/$profile" ;;
esac
got="$("$bin/serverware" --version | awk '{print $2}')"
[ "$got" = "$version" ] || { echo "built $got, wanted $version" >&2; exit 1; }

mkdir -p "$out"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
arch="$(dpkg --print-architecture)"
maintainer="SERVERware <serverware@localhost>"

# The controller.
c="$stage/serverware"
install -D -m 0755 "$bin/serverware" "$c/usr/bin/serverware"
install -D -m 0755 "$bin/sw" "$c/usr/bin/sw"
install -D -m 0755 "$bin/serverware-agent" "$c/usr/lib/serverware/serverware-agent"
install -D -m 0644 packaging/serverware.service "$c/lib/systemd/system/serverware.service"
install -D -m 0640 packaging/config.toml "$c/etc/serverware/config.toml"
install -D -m 0644 README.md "$c/usr/share/doc/serverware/README.md"
install -d "$c/DEBIAN"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$c/DEBIAN/"
echo /etc/serverware/config.toml > "$c/DEBIAN/conffiles"
cat > "$c/DEBIAN/control" <<CONTROL
Package: serverware
Version: $version
Architecture: $arch
Maintainer: $maintainer
Section: admin
Priority: optional
Depends: libc6 (>= 2.36), libgcc-s1, libssl3, libpq5, passwd
Recommends: busybox-static, debootstrap, squashfs-tools, zstd, dnsmasq-base, ipxe
Conflicts: serverware-sw
Replaces: serverware-sw
Installed-Size: $(du -sk "$c" | cut -f1)
Description: SERVERware controller: virtual servers that stay up
 Manages a pool of hosts, the VPSes (LXC containers) on them and a storage area:
 watches every host and VPS, copies each VPS's changes to storage, and restarts a
 dead host's VPSes on another host within seconds. Dashboard, REST API, sw and an
 SSH command line. Includes the host agent it installs on hosts.
CONTROL

# `sw` alone.
s="$stage/serverware-sw"
install -D -m 0755 "$bin/sw" "$s/usr/bin/sw"
install -d "$s/DEBIAN"
cat > "$s/DEBIAN/control" <<CONTROL
Package: serverware-sw
Version: $version
Architecture: $arch
Maintainer: $maintainer
Section: admin
Priority: optional
Depends: libc6 (>= 2.36), libgcc-s1
Installed-Size: $(du -sk "$s" | cut -f1)
Description: SERVERware command line (sw)
 Drives a SERVERware site from an operator's machine: hosts, VPSes, restore points,
 events and alerts, over the controller's API.
CONTROL

for p in serverware serverware-sw; do
    f="$out/${p}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage/$p" "$f" >/dev/null
    say "built $f ($(du -h "$f" | cut -f1))"
done
