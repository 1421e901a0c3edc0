# shellcheck shell=bash disable=SC2034
# Shared helpers of scripts/test and scripts/demo.
# Source it; it does not change shell options of the caller.

# Repository root, derived from this file's location.
BURROW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian's own interpreter: it has the Debian-packaged modules (pytest). The
# python3 first on PATH may be a separate installation without them.
_pick_python() {
    if [[ -x /usr/bin/python3 ]]; then
        BURROW_PY=/usr/bin/python3
    else
        BURROW_PY=python3
    fi
}
_pick_python

# Packages the build and the test suites need (Debian 12 names).
BURROW_BUILD_PKGS=(
    build-essential pkg-config meson ninja-build
    libuv1-dev libjansson-dev libssl-dev libyaml-dev libhttp-parser-dev
    libcmocka-dev python3 openssl
)
BURROW_TEST_PKGS=(
    "${BURROW_BUILD_PKGS[@]}"
    python3-pytest golang-go golang-github-hashicorp-yamux-dev
    clang libclang-rt-14-dev clang-format curl
)

if [[ -t 1 ]]; then
    _c_bold=$'\e[1m' _c_red=$'\e[31m' _c_green=$'\e[32m' _c_yellow=$'\e[33m' _c_off=$'\e[0m'
else
    _c_bold='' _c_red='' _c_green='' _c_yellow='' _c_off=''
fi

info() { printf '%s==>%s %s\n' "$_c_bold" "$_c_off" "$*"; }
warn() { printf '%sWARNING:%s %s\n' "$_c_yellow" "$_c_off" "$*" >&2; }
err()  { printf '%sERROR:%s %s\n' "$_c_red" "$_c_off" "$*" >&2; }
die()  { err "$*"; exit 1; }
ok()   { printf '%s%s%s\n' "$_c_green" "$*" "$_c_off"; }

# Run a command as root: directly when we are root, else through sudo if it
# exists (non-interactively when there is no terminal to ask a password on).
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
    else
        err "need root to run: $*  (not root, and sudo is not available)"
        return 1
    fi
}

# True when a Debian package is installed.
pkg_installed() {
    local status
    status="$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" || return 1
    [[ $status == "install ok installed" ]]
}

# Install whichever of the given Debian packages are missing. `apt-get update`
# runs only when something has to be installed. Returns non-zero on failure.
ensure_packages() {
    local missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        warn "dpkg-query not found: not a Debian system? Skipping package checks."
        return 0
    fi
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    info "installing missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get update -q; then
        err "apt-get update failed"
        return 1
    fi
    if ! as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        err "apt-get install failed for: ${missing[*]}"
        return 1
    fi
    _pick_python
}

# meson_configure DIR [meson options...]
# Set up DIR if it is not a meson build directory yet (wiping a broken one),
# otherwise apply the given options to it. ninja regenerates by itself when a
# meson.build changed.
meson_configure() {
    local dir=$1; shift
    if [[ -f $dir/meson-private/coredata.dat && -f $dir/build.ninja ]]; then
        if (($# > 0)); then
            meson configure "$dir" "$@" >/dev/null || {
                warn "meson configure $dir failed; setting it up again"
                meson setup --wipe "$dir" "$@"
            }
        fi
    elif [[ -e $dir ]]; then
        meson setup --wipe "$dir" "$@"
    else
        meson setup "$dir" "$@"
    fi
}

# meson_build DIR [meson options...]: configure and build with ninja.
meson_build() {
    local dir=$1; shift
    meson_configure "$dir" "$@" && ninja -C "$dir"
}

# A free TCP port on 127.0.0.1 (a small race is possible; good enough here).
free_port() {
    "$BURROW_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for_line FILE REGEX TIMEOUT_S [PID]
# Wait until FILE has a line matching the (extended) REGEX; print that line.
# Fails on timeout or when PID (if given) exits first.
wait_for_line() {
    local file=$1 re=$2 timeout=$3 pid=${4:-} deadline line
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if [[ -f $file ]] && line="$(grep -E -m1 -- "$re" "$file")"; then
            printf '%s\n' "$line"
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 0.1
    done
    return 1
}

# logfmt_field LINE KEY: value of KEY=value (plain or "quoted") in a logfmt line.
logfmt_field() {
    local line=$1 key=$2
    if [[ $line =~ (^|[[:space:]])$key=\"([^\"]*)\" ]]; then
        printf '%s\n' "${BASH_REMATCH[2]}"
    elif [[ $line =~ (^|[[:space:]])$key=([^[:space:]]*) ]]; then
        printf '%s\n' "${BASH_REMATCH[2]}"
    else
        return 1
    fi
}
