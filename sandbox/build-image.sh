#!/usr/bin/env bash
# Build the sandbox node image with debootstrap and import it into podman.
# The image is cached: it is rebuilt only when its recipe (these scripts, the package list, the
# host's CA bundle and pip index settings) changes. FORCE=1 rebuilds anyway.
source "$(dirname "$0")/common.sh"

SANDBOX_SECURITY_MIRROR=${SANDBOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
RECIPE_LABEL=gpu-node-sandbox.recipe

host_ca_bundle() {
    local candidate
    for candidate in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
        [ -s "$candidate" ] && { echo "$candidate"; return; }
    done
    die "no CA bundle found on this host; sandbox nodes would not trust TLS proxies"
}

recipe_hash() {
    {
        cat "$SANDBOX_DIR/common.sh" "$SANDBOX_DIR/build-image.sh" "$SANDBOX_DIR/image/"*
        echo "$SANDBOX_SUITE $SANDBOX_MIRROR $SANDBOX_SECURITY_MIRROR"
        cat "$CA_BUNDLE"
        echo "$PIP_CONF"
    } | sha256sum | cut -c1-16
}

current_image_hash() {
    podman image inspect --format "{{ index .Labels \"$RECIPE_LABEL\" }}" "$SANDBOX_IMAGE" 2>/dev/null || true
}

# Add the host's certificates that Debian's own bundle lacks (a proxy's CA, a site CA), one per file
# as update-ca-certificates wants them.
add_host_only_certificates() {
    local host_bundle=$1 node_bundle=$2 dir=$3
    mkdir -p "$dir"
    awk -v dir="$dir" '
        /-----BEGIN CERTIFICATE-----/ { cert = "" }
        { cert = cert $0 "\n" }
        /-----END CERTIFICATE-----/ {
            if (FILENAME == ARGV[1]) { known[cert] = 1 }
            else if (!(cert in known)) { n++; printf "%s", cert > sprintf("%s/host-%03d.crt", dir, n) }
        }' "$node_bundle" "$host_bundle"
}

build_rootfs() {
    local rootfs=$1 packages
    packages=$(grep -v '^#' "$SANDBOX_DIR/image/packages.txt" | xargs | tr ' ' ,)
    say "debootstrap $SANDBOX_SUITE from $SANDBOX_MIRROR (a minute or two)"
    debootstrap --variant=minbase --include="$packages" \
        --components=main,contrib,non-free,non-free-firmware \
        "$SANDBOX_SUITE" "$rootfs" "$SANDBOX_MIRROR" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; die "debootstrap failed (full log: $rootfs.log)"; }
    add_host_only_certificates "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt" \
        "$rootfs/usr/local/share/ca-certificates/sandbox-host"
    printf '%s' "$PIP_CONF" >"$rootfs/etc/pip.conf"
    install -m 0755 "$SANDBOX_DIR/image/configure-rootfs.sh" "$rootfs/configure-rootfs.sh"
    chroot "$rootfs" env SANDBOX_MIRROR="$SANDBOX_MIRROR" SANDBOX_SUITE="$SANDBOX_SUITE" \
        SANDBOX_SECURITY_MIRROR="$SANDBOX_SECURITY_MIRROR" /configure-rootfs.sh
    rm "$rootfs/configure-rootfs.sh"
}

main() {
    is_root || die "building the image needs root (debootstrap and chroot); run: sudo make image"
    CA_BUNDLE=$(host_ca_bundle)
    PIP_CONF=$(python3 "$SANDBOX_DIR/pip-settings.py")
    local wanted
    wanted=$(recipe_hash)
    if [ "${FORCE:-0}" != 1 ] && [ "$(current_image_hash)" = "$wanted" ]; then
        say "image $SANDBOX_IMAGE is up to date (recipe $wanted)"
        return
    fi
    local work="$SANDBOX_STATE_DIR/image-build"
    rm -rf "$work" && mkdir -p "$work"
    build_rootfs "$work/rootfs"
    say "importing $SANDBOX_IMAGE"
    tar -C "$work/rootfs" --numeric-owner -c . | podman import \
        --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' \
        --change "LABEL $RECIPE_LABEL=$wanted" - "$SANDBOX_IMAGE" >/dev/null 2>"$work/import.log" \
        || { cat "$work/import.log" >&2; die "podman import failed"; }
    rm -rf "$work"
    say "built $SANDBOX_IMAGE (recipe $wanted)"
}

main "$@"
