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
