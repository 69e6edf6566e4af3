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

kernel_version() {
    local v
    v=$(ls "$KERNEL_ROOT/lib/modules" 2>/dev/null | head -n1)
    [ -n "$v" ] || die "no kernel under $KERNEL_ROOT: run qemu-harness/setup first"
    printf '%s\n' "$v"
}

kernel_image() {
    local k
    k=$(ls "$KERNEL_ROOT"/boot/vmlinuz-* 2>/dev/null | head -n1)
    [ -n "$k" ] || die "no vmlinuz under $KERNEL_ROOT/boot: run qemu-harness/setup first"
    printf '%s\n' "$k"
}
