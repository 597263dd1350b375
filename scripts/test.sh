#!/usr/bin/env bash
# Runs every test of the workspace (`cargo test --workspace --all-features`), first installing,
# on Debian or Ubuntu, the programs the tests need that the machine lacks.
#
#   ./scripts/test.sh                  install what is missing, then run all tests
#   ./scripts/test.sh -- --nocapture   arguments after the script's own options go to cargo test
#   ./scripts/test.sh --install-only   install what is missing, run no test (CI's first step)
#   ./scripts/test.sh --dry-run        print what is missing and the command that installs it;
#                                      install nothing, run nothing (exit 1 if anything is missing)
#
# Installing needs root or passwordless sudo. Without either, the script prints the exact
# `apt-get install` command to run and exits with status 1, without running the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="test"
while [ $# -gt 0 ]; do
    case "$1" in
        --install-only) mode="install-only" ;;
        --dry-run) mode="dry-run" ;;
        -h | --help) sed -n '2,12p' "$0" | cut -c3-; exit 0 ;;
        *) break ;;
    esac
    shift
done

say() { printf '%s\n' "$*" >&2; }
# A program on PATH (`type -P`: a shell builtin such as `kill` does not count).
have() { type -P "$1" >/dev/null 2>&1; }

# Debian's postgresql puts initdb in /usr/lib/postgresql/<version>/bin, not on PATH.
have_initdb() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || have initdb; }

# need PACKAGE CHECK...: the Debian package PACKAGE is missing unless CHECK succeeds.
need() {
    local package=$1
    shift
    "$@" || missing+=("$package")
}

# What the tests need, one Debian package a line: to add one, add a line.
check_needs() {
    missing=()
    need build-essential have cc           # C compiler: bundled SQLite (rusqlite, sqlx), ring
    need redis-server    have redis-server # Redis tests start their own servers
    need redis-tools     have redis-cli    # ... and a 3-node Redis Cluster, made by redis-cli
    need openssl         have openssl      # TLS tests make a private CA and certificates
    need procps          have kill         # fault tests signal worker processes
    need util-linux      have setpriv      # SQLite permission tests run a child as nobody
    need postgresql      have_initdb       # Postgres tests make their own clusters (initdb)
    need chromium        have chromium     # dashboard browser tests: headless Chromium ...
    need chromium-driver have chromedriver # ... driven through WebDriver (kosh-jobs-web)
}

if ! have cargo; then
    say "cargo not found: install Rust 1.95 or newer (https://rustup.rs), then run $0 again."
    exit 1
fi

check_needs
if [ ${#missing[@]} -gt 0 ]; then
    install=(apt-get install -y --no-install-recommends "${missing[@]}")
    if [ "$(id -u)" = 0 ]; then
        sudo=()
        hint="apt-get update && ${install[*]}"
    elif have sudo; then
        sudo=(sudo -n)
        hint="sudo apt-get update && sudo ${install[*]}"
    else
        sudo=()
        hint="su -c 'apt-get update && ${install[*]}'"
    fi
    if [ "$mode" = dry-run ]; then
        say "missing for the tests: ${missing[*]}"
        say "install them with: $hint"
        exit 1
    fi
    if ! have apt-get; then
        say "The tests need these Debian packages, and this system has no apt-get: ${missing[*]}"
        say "Install the equivalents with its package manager, then run $0 again."
        exit 1
    fi
    if [ "$(id -u)" != 0 ] && ! { have sudo && sudo -n true 2>/dev/null; }; then
        say "The tests need packages that are not installed: ${missing[*]}"
        say "Install them as root, then run $0 again:"
        say ""
        say "    $hint"
        say ""
        exit 1
    fi
    say "== installing what the tests need: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${install[@]}" -qq
    check_needs
    if [ ${#missing[@]} -gt 0 ]; then
        say "still missing after apt-get install: ${missing[*]}"
        exit 1
    fi
elif [ "$mode" = dry-run ]; then
    say "everything the tests need is installed"
fi

if [ "$mode" != test ]; then
    exit 0
fi
exec cargo test --workspace --all-features "$@"
