# Shared helpers for the qemu-harness scripts. Sourced, never run.
# shellcheck shell=bash

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HARNESS_DIR/.." && pwd)
WORK_DIR="$HARNESS_DIR/work"
CACHE_DIR="$HARNESS_DIR/cache"
KERNEL_ROOT="${VIVER_KERNEL_ROOT:-$CACHE_DIR/kernel/root}"
VIVER_BIN="$REPO_DIR/target/x86_64-unknown-linux-gnu/release/viver"

log() { printf '[qemu-harness] %s\n' "$*" >&2; }
die() { printf '[qemu-harness] ERROR: %s\n' "$*" >&2; exit 1; }

# The cache is a symlink to a shared directory on developer machines and a plain
# directory on CI; a dangling symlink must get its target created, not be replaced.
ensure_cache_dir() {
    if [ -L "$CACHE_DIR" ] && [ ! -e "$CACHE_DIR" ]; then
        mkdir -p "$(readlink -f "$CACHE_DIR")"
    fi
    mkdir -p "$CACHE_DIR" "$WORK_DIR"
}

# Content hash of files and strings given on stdin + arguments: artifacts are named by
# the hash of everything that goes into them, so a rerun with the same inputs is a no-op
# and a changed script rebuilds automatically.
content_hash() {
    { for f in "$@"; do
        if [ -f "$f" ]; then printf 'file:%s\n' "$(basename "$f")"; cat "$f";
        else printf 'str:%s\n' "$f"; fi
      done; } | sha256sum | cut -c1-16
}

# The test kernel. One rule, the same as tests/kernel/mod.rs: the tree is
# $VIVER_KERNEL_ROOT or cache/kernel/root; its release is the one recorded by
# fetch-kernel in the kernel.env beside the tree, else (a tree from elsewhere) the one
# directory under lib/modules/ or usr/lib/modules/ holding modules.order or kernel/.
# More than one, or none, is an error saying what to set or run.
find_release_dir() {
    local root=$1 d found=()
    for d in "$root"/lib/modules/* "$root"/usr/lib/modules/*; do
        [ -d "$d" ] && { [ -f "$d/modules.order" ] || [ -d "$d/kernel" ]; } || continue
        found+=("${d#"$root"/}")
    done
    [ "${#found[@]}" = 1 ] || return 1
    printf '%s\n' "${found[0]}"
}

kernel_record() {  # kernel_record KEY [ROOT]: a value of ROOT/../kernel.env
    local root=${2:-$KERNEL_ROOT}
    sed -n "s/^$1=//p" "$root/../kernel.env" 2>/dev/null | head -n1
}

kernel_modules_rel() {  # lib/modules/RELEASE or usr/lib/modules/RELEASE, relative to the tree
    local root=${1:-$KERNEL_ROOT} rel
    [ -d "$root" ] || die "no kernel tree at $root: run qemu-harness/setup (or set VIVER_KERNEL_ROOT to an unpacked linux-image package)"
    rel=$(kernel_record KERNEL_MODULES "$root")
    if [ -n "$rel" ]; then
        [ -d "$root/$rel" ] || die "$root/../kernel.env names $rel but $root/$rel is missing: run qemu-harness/setup"
    else
        rel=$(find_release_dir "$root") \
            || die "$root has no kernel.env beside it and not exactly one lib/modules/RELEASE or usr/lib/modules/RELEASE: run qemu-harness/setup, or point VIVER_KERNEL_ROOT at a tree with one release"
    fi
    printf '%s\n' "$rel"
}

kernel_version() { basename "$(kernel_modules_rel "$@")"; }
kernel_modules() { local root=${1:-$KERNEL_ROOT}; printf '%s/%s\n' "$root" "$(kernel_modules_rel "$root")"; }

kernel_image() {
    local root=${1:-$KERNEL_ROOT} k
    k="$root/boot/vmlinuz-$(kernel_version "$root")"
    [ -f "$k" ] || die "missing $k: run qemu-harness/setup"
    printf '%s\n' "$k"
}

# The second kernel generation (Debian 13's 6.12, .ko.xz under usr/lib/modules).
KERNEL2_SUITE=${VIVER_KERNEL2_SUITE:-trixie}
KERNEL2_ROOT="${VIVER_KERNEL2_ROOT:-$CACHE_DIR/kernel-$KERNEL2_SUITE/root}"
