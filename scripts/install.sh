#!/usr/bin/env bash
# Installs eqlplus-dialer for real (as root): the binary, the configuration, the chat scripts,
# an empty secrets file, the systemd unit (and a modules-load.d file for USB modem drivers), the
# man page and bash completion. Never overwrites
# a configuration, secrets file or chat script that is already there (your edits stay).
# DESTDIR=/some/dir stages everything under that directory instead (packaging; CI checks the
# installation that way). Then: edit the configuration, `systemctl enable --now eqlplus-dialer`.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DESTDIR:-}
if [[ $EUID -ne 0 && -z $D ]]; then
    exec sudo -E "$0" "$@"
fi
. scripts/packages.sh
[[ -n $D ]] || ensure_packages nftables
cargo build --release --locked --quiet
bin=target/release/eqlplus-dialer

# Installs $2 as $3 with mode $1 unless $3 exists.
keep() { [[ -e $3 ]] && echo "kept $3" || install -m "$1" "$2" "$3"; }

install -d -m 755 "$D/usr/local/bin" "$D/etc/eqlplus-dialer/chat" "$D/etc/systemd/system" "$D/etc/modules-load.d" \
    "$D/usr/local/share/man/man8" "$D/usr/local/share/bash-completion/completions"
install -m 755 "$bin" "$D/usr/local/bin/eqlplus-dialer"
keep 644 config/eqlplus-dialer.toml "$D/etc/eqlplus-dialer/eqlplus-dialer.toml"
for script in chat-scripts/*.chat; do
    keep 644 "$script" "$D/etc/eqlplus-dialer/chat/$(basename "$script")"
done
# pap-secrets format (user * password); the daemon refuses it unless only root can read it.
keep 600 /dev/null "$D/etc/eqlplus-dialer/secrets"
install -m 644 systemd/eqlplus-dialer.service "$D/etc/systemd/system/"
# The USB modem drivers load at boot, so that the unit's DeviceAllow finds them (see the file).
install -m 644 systemd/eqlplus-dialer-modules.conf "$D/etc/modules-load.d/eqlplus-dialer.conf"
"$bin" man >"$D/usr/local/share/man/man8/eqlplus-dialer.8"
"$bin" completions bash >"$D/usr/local/share/bash-completion/completions/eqlplus-dialer"
if [[ -z $D ]] && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
fi
echo "installed into ${D:-/}; next: edit /etc/eqlplus-dialer/eqlplus-dialer.toml and secrets," \
    "then: eqlplus-dialer check-config && systemctl enable --now eqlplus-dialer"
