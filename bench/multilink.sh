#!/usr/bin/env bash
# The Multilink benchmark: ONE download (one TCP connection, 2 MiB by default) from the
# simulated internet to the LAN, through the real daemon, over
#   - 1 line of plain PPP,
#   - a Multilink bundle of 2 and of 4 equal paced lines,
#   - an unequal bundle (1 Mbit/s + 256 kbit/s),
# each as goodput and as a share of the sum of its line rates (a per-connection balancer
# cannot give one connection more than one line: a bundle can). Each run is
# `eqlplus-dialer demo --download SIZE` (with --bundle for the bundles) in a world of its own.
# Then the page of bench/balance.sh (64 objects of 4-128 KiB, each on a new connection, 8 at
# a time) over 4 lines of --page-rate, balanced per connection and as one bundle
# (`demo --page`, `demo --page --bundle`).
# Root: it builds network namespaces of its own (eqdemo<pid>-*) and deletes them after each run.
#
#   sudo bench/multilink.sh                      # 512 kbit/s lines, 2 MiB, 1 run each
#   sudo bench/multilink.sh --runs 3 --rate 256kbit --size 1MiB
#   sudo bench/multilink.sh --bin target/debug/eqlplus-dialer   # no release build
#   sudo bench/multilink.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."

runs=1
rate=512kbit
size=2MiB
unequal=1mbit,256kbit
page_rate=1mbit
bin=
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --rate) rate=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --unequal) unequal=$2; shift 2 ;;
        --page-rate) page_rate=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h|--help)
            sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
            echo "options: --runs N (median of N, default 1), --rate RATE of the equal lines"
            echo "         (default 512kbit), --size SIZE of the download (default 2MiB),"
            echo "         --unequal RATE,RATE,... (default 1mbit,256kbit), --page-rate RATE of the"
            echo "         page's 4 lines (default 1mbit), --bin PATH of an eqlplus-dialer already"
            echo "         built (default: build and use the release one)"
            exit 0 ;;
        *) echo "unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench/multilink.sh: needs root (network namespaces)" >&2
    exit 1
fi

. scripts/packages.sh
ensure_packages iproute2 nftables
if [ -z "$bin" ]; then
    cargo build --release --locked --bin eqlplus-dialer
    bin=./target/release/eqlplus-dialer
fi

# One configuration: the median run's `download:` (or `page:`) figures, as "KBITS SHARE SUM".
measure() {
    local results=() line
    for _ in $(seq "$runs"); do
        # download: 2048 KiB in 17.3 s = 967 kbit/s = 94% of the lines' 1024 kbit/s
        line=$("$bin" demo --non-interactive "$@" | grep -E '^(download|page): ' || true)
        if [ -z "$line" ]; then
            echo "failed: demo $*" >&2
            continue
        fi
        results+=("$(echo "$line" | awk '{ print $8, $11+0, $15 }')")
    done
    if [ ${#results[@]} -eq 0 ]; then
        echo "- - -"
        return
    fi
    printf '%s\n' "${results[@]}" | sort -n | awk '{ r[NR] = $0 } END { print r[int((NR + 1) / 2)] }'
}

names=("1 line, plain PPP" "bundle of 2" "bundle of 4" "unequal bundle ($unequal)"
       "page, 4 lines, per connection" "page, bundle of 4")
args=("--download $size --lines 1 --rate $rate"
      "--download $size --bundle --lines 2 --rate $rate"
      "--download $size --bundle --lines 4 --rate $rate"
      "--download $size --bundle --rates $unequal"
      "--page --lines 4 --rate $page_rate"
      "--page --bundle --lines 4 --rate $page_rate")
figures=()
for i in "${!names[@]}"; do
    echo "== ${names[$i]}: demo ${args[$i]} ($runs run(s))" >&2
    # shellcheck disable=SC2086 # the options are words
    figures+=("$(measure ${args[$i]})")
done

table() {
    printf '%-34s %12s %14s %14s\n' configuration "line sum" goodput "share of sum"
    for i in "$@"; do
        read -r kbits share sum <<< "${figures[$i]}"
        printf '%-34s %12s %14s %14s\n' "${names[$i]}" "$sum kbit/s" "$kbits kbit/s" "$share %"
    done
}
echo
echo "one $size download, one TCP connection; lines of $rate unless said (median of $runs)"
table 0 1 2 3
echo
echo "bench/balance.sh's page over 4 lines of $page_rate (median of $runs)"
table 4 5
