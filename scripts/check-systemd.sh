#!/usr/bin/env bash
# Checks systemd/eqlplus-dialer.service with systemd-analyze, meaningfully:
# - `verify` on a copy whose ExecStart points at the binary built here (so "is the command
#   executable" is really checked) with a MANPATH holding the man page that binary prints (so
#   Documentation=man:eqlplus-dialer(8) really resolves);
# - any output at all is a failure: systemd-analyze only warns, and exits 0, about unknown
#   keys, misspelt values and device names it cannot parse;
# - `security --offline` must keep the exposure level at 4.0 or below (it is 3.0).
# As root it installs systemd-analyze (package systemd) and man (man-db) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v man >/dev/null || missing+=(man-db)
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "check-systemd: missing ${missing[*]} (run as root to install them)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build --locked --quiet --bin eqlplus-dialer
bin="$PWD/target/debug/eqlplus-dialer"
unit=systemd/eqlplus-dialer.service
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

grep -q '^ExecStart=/usr/local/bin/eqlplus-dialer daemon ' "$unit" || {
    echo "check-systemd: $unit: ExecStart is not /usr/local/bin/eqlplus-dialer daemon …" >&2
    exit 1
}
sed "s#/usr/local/bin/eqlplus-dialer#$bin#g" "$unit" >"$tmp/eqlplus-dialer.service"
mkdir -p "$tmp/man/man8"
"$bin" man >"$tmp/man/man8/eqlplus-dialer.8"

status=0
out=$(cd "$tmp" && MANPATH="$tmp/man" systemd-analyze verify ./eqlplus-dialer.service 2>&1) || status=$?
if ((status != 0)) || [[ -n $out ]]; then
    echo "check-systemd: systemd-analyze verify $unit failed (exit $status):" >&2
    echo "$out" >&2
    exit 1
fi
exposure=$(cd "$tmp" && systemd-analyze security --offline=yes --threshold=40 --no-pager \
    ./eqlplus-dialer.service 2>&1) || {
    echo "$exposure" >&2
    echo "check-systemd: $unit: exposure level above 4.0" >&2
    exit 1
}
echo "check-systemd: $unit: verify clean; $(echo "$exposure" | grep -o 'Overall exposure level.*')"
