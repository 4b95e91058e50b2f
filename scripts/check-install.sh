#!/usr/bin/env bash
# Checks the README's install command: stages `scripts/install.sh` into a scratch DESTDIR,
# checks every file and its mode, then — in a private mount namespace where the staged /etc
# is /etc — runs the installed binary's `check-config` on the installed configuration, as a
# new user would after installing. Root (mount namespace); run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then
    if [[ ${EQLPLUS_REQUIRE_ROOT:-} == 1 ]]; then
        echo "check-install: needs root (EQLPLUS_REQUIRE_ROOT=1)" >&2
        exit 1
    fi
    echo "check-install: SKIPPED (needs root for a mount namespace)"
    exit 0
fi
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
DESTDIR=$D ./scripts/install.sh >/dev/null

fail() { echo "check-install: $*" >&2; exit 1; }
expect() { # MODE PATH
    [[ -f $D$2 ]] || fail "$2 was not installed"
    [[ $(stat -c %a "$D$2") == "$1" ]] || fail "$2 has mode $(stat -c %a "$D$2"), not $1"
}
expect 755 /usr/local/bin/eqlplus-dialer
expect 644 /etc/eqlplus-dialer/eqlplus-dialer.toml
expect 600 /etc/eqlplus-dialer/secrets
for script in chat-scripts/*.chat; do expect 644 "/etc/eqlplus-dialer/chat/$(basename "$script")"; done
expect 644 /etc/systemd/system/eqlplus-dialer.service
expect 644 /etc/modules-load.d/eqlplus-dialer.conf
expect 644 /usr/local/share/man/man8/eqlplus-dialer.8
expect 644 /usr/local/share/bash-completion/completions/eqlplus-dialer
grep -q '^\.TH' "$D/usr/local/share/man/man8/eqlplus-dialer.8" || fail "the man page is not roff"
grep -q 'complete ' "$D/usr/local/share/bash-completion/completions/eqlplus-dialer" ||
    fail "the bash completion defines nothing"

# A second run keeps what the user edited.
echo '# edited' >>"$D/etc/eqlplus-dialer/eqlplus-dialer.toml"
DESTDIR=$D ./scripts/install.sh >/dev/null
grep -q '^# edited' "$D/etc/eqlplus-dialer/eqlplus-dialer.toml" || fail "a reinstall overwrote the configuration"

# The installed configuration names /etc/eqlplus-dialer/…: check it where that is the staged one.
mkdir -p "$D/etc-merged"
cp -a /etc/. "$D/etc-merged/"
cp -a "$D/etc/eqlplus-dialer" "$D/etc-merged/"
out=$(unshare --mount --propagation private sh -c \
    'mount --bind "$1/etc-merged" /etc && "$1/usr/local/bin/eqlplus-dialer" check-config' \
    sh "$D" 2>&1) || fail "check-config on the installed configuration: $out"
echo "check-install: ok ($out)"
