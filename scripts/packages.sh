# Sourced by scripts/*.sh: installs the Debian packages the project needs at run and test time
# (as root), or says which are missing (otherwise).
#   iproute2   ip, tc, network namespaces     nftables   the balancer's table (nft)
#   conntrack  conntrack -L in the tests      tmux       the monitor's terminal test
ensure_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    if [[ $EUID -eq 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "note: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    fi
}

# Debian's promtool, for the metrics tests (`promtool check metrics` reads every scrape): only
# the binary, taken out of the prometheus package, since installing the package would set up
# and start a Prometheus server. Exports EQLPLUS_PROMTOOL for the tests; without root (or if
# Debian's package cannot be had) the tests read the scrapes with their Rust parser only.
ensure_promtool() {
    [[ -n "${EQLPLUS_PROMTOOL:-}" ]] && return 0
    if command -v promtool >/dev/null; then
        EQLPLUS_PROMTOOL=$(command -v promtool)
        export EQLPLUS_PROMTOOL
        return 0
    fi
    local target="${CARGO_TARGET_DIR:-$PWD/target}"
    local tool="$target/tools/promtool"
    if [[ ! -x "$tool" ]]; then
        if [[ $EUID -ne 0 ]]; then
            echo "note: no promtool (run as root to fetch Debian's); the metrics tests use their Rust parser only" >&2
            return 0
        fi
        local tmp
        tmp=$(mktemp -d)
        if ! (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; }); then
            echo "note: cannot download Debian's prometheus package; no promtool for the metrics tests" >&2
            rm -rf "$tmp"
            return 0
        fi
        mkdir -p "$target/tools"
        dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -O ./usr/bin/promtool >"$tool.part" &&
            chmod 755 "$tool.part" && mv "$tool.part" "$tool"
        rm -rf "$tmp" "$tool.part"
    fi
    if [[ -x "$tool" ]]; then
        EQLPLUS_PROMTOOL=$tool
        export EQLPLUS_PROMTOOL
    fi
}
