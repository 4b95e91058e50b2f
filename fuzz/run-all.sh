#!/usr/bin/env bash
# Smoke-run every fuzz target, one after the other (one core each; never in parallel).
#
#   fuzz/run-all.sh [RUNS] [MAX_SECONDS_PER_TARGET]
#
# RUNS defaults to 100000 per target; the time bound (default 600 s) caps each target.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); uses the stable toolchain through
# RUSTC_BOOTSTRAP=1. The code under test has no `unsafe`, so the targets are built
# without a sanitizer (much faster) but with debug assertions and overflow checks.
# Override with FUZZ_FLAGS, e.g. FUZZ_FLAGS="-s address" fuzz/run-all.sh 10000.
# Seed corpora live in fuzz/corpus/TARGET (git-ignored) and grow across runs; a
# crash leaves its input in fuzz/artifacts/TARGET and fails the script.
set -euo pipefail

runs="${1:-100000}"
max_time="${2:-600}"
cd "$(dirname "$0")/.."

targets=(chat_script hdlc_decode ppp_session ppp_unframed modem_commands at_reply control_request config_file secrets_file conntrack_dump kernel_watch probe_answers cellular_check mp_reassembly mp_bundle)
flags=(${FUZZ_FLAGS:--s none -a})

export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # Seeds that give each target a head start (re-created, never committed).
    case "$t" in
        chat_script)
            for f in chat-scripts/*; do
                [ -f "$f" ] && { cat "$f"; printf '\0\x08OK\r\nCONNECT 57600\r\n~~'; } > "fuzz/corpus/$t/seed-$(basename "$f")"
            done ;;
        at_reply)
            printf 'ATI\0ATI\r\r\nSimModem 56K\r\n\r\nOK\r\n' > "fuzz/corpus/$t/seed-ati" ;;
        ppp_session | ppp_unframed)
            # Dialer: frames pass both ways with a few deadlines, then some IP.
            { printf '\x00'; for _ in $(seq 30); do printf '\x80\x60'; done
              printf '\xa0\x80\x60\x80\x60\xe0\x02\x45\x00\x00\x14\x00\x00\x00\x00\x40\x11\x00\x00\x0a\x00\x00\x01\x0a\x00\x00\x02\x80\x60'
            } > "fuzz/corpus/$t/seed-dialer" ;;
        control_request)
            printf '{"version":1,"cmd":"hangup","lines":["ttyS1"]}' > "fuzz/corpus/$t/seed-hangup"
            printf '{"version":1,"cmd":"subscribe","interval_ms":500}' > "fuzz/corpus/$t/seed-subscribe" ;;
        config_file)
            cp config/eqlplus-dialer.toml "fuzz/corpus/$t/seed-shipped" ;;
        secrets_file)
            printf '# client server secret [addresses]\nalice * s3cret\n"bob smith" isp "pass word" 10.0.0.1\n' > "fuzz/corpus/$t/seed-pap" ;;
        modem_commands)
            printf '\x00\x0eATE0V1+CSQ\r\x0cATDT5551234\r\x00\x03+++\x40\x00\x04ATH\r' > "fuzz/corpus/$t/seed-dial" ;;
    esac
    echo "=== $t: $runs runs (at most ${max_time}s)"
    log="fuzz/artifacts/$t.log"
    mkdir -p fuzz/artifacts
    status=0
    cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" -- \
        -runs="$runs" -max_total_time="$max_time" -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|==)|panicked|SUMMARY|artifact_prefix|Test unit written' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "!!! $t failed with status $status (log: $log)" >&2
        exit 1
    fi
done
echo "all fuzz targets ran $runs runs without a crash"
