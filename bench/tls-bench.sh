#!/usr/bin/env bash
# The TLS bench row (make bench-tls): sock_sendfile through the TLS hooks
# vs. the same OpenSSL writing the file itself (pread + SSL_write).
#
# Writes bench/results/tls.md (a "## TLS" section) and, when BENCHMARKS.md
# exists, replaces its "## TLS" section with it (or appends it).
#
# Environment: TLS_BENCH_MIB (256), TLS_BENCH_ROUNDS (7).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=build/tls/bench_tls
[[ -x $bin ]] || make --no-print-directory tls
mib=${TLS_BENCH_MIB:-256}
rounds=${TLS_BENCH_ROUNDS:-7}

work=$(mktemp -d "${TMPDIR:-/tmp}/libsock-tls-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

"$bin" "$work/cert.pem" "$work/key.pem" "$mib" "$rounds" | tee "$work/out"
result=$(grep '^RESULT ' "$work/out" | tail -n 1)
[[ -n $result ]] || { echo "bench_tls printed no RESULT line"; exit 1; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" ${result#RESULT }"; }
hooks=$(field hooks_mibps)
plain=$(field plain_mibps)
ratio=$(field ratio)
hcpu=$(field hooks_cpu_s)
pcpu=$(field plain_cpu_s)
cipher=$(field cipher)
verdict=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.9) ? "meets" : "BELOW" }')
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)

section=$(cat <<EOF
## TLS

TLS file sending: \`sock_sendfile\` through the TLS read/write hooks
(\`examples/tls.c\`, OpenSSL) against the same OpenSSL writing the file itself
in a plain loop (\`pread\` + \`SSL_write\` on a blocking socket). ${mib} MiB file
in the page cache, loopback, ${cipher/\// }, 16 KiB chunks on both sides, same
receiver; median of ${rounds} alternating rounds. Ratio = hooks / plain
throughput (target >= 0.9). \`make bench-tls\` (bench/bench_tls.c).

| benchmark | libsock + TLS hooks | plain OpenSSL loop | ratio |
|---|---|---|---|
| TLS file send, ${mib} MiB | ${hooks} MiB/s (sender CPU ${hcpu} s) | ${plain} MiB/s (sender CPU ${pcpu} s) | ${ratio} (${verdict} the 0.9 target) |

Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs (${cpu:-unknown CPU}), shared with other work.
EOF
)

mkdir -p bench/results
printf '%s\n' "$section" > bench/results/tls.md
echo
echo "TLS row: hooks ${hooks} MiB/s, plain ${plain} MiB/s, ratio ${ratio} (${verdict} the 0.9 target)"
echo "written: bench/results/tls.md"

if [[ -f BENCHMARKS.md ]]; then
  # Replace the "## TLS" section (up to the next "## " heading) or append.
  awk -v file=bench/results/tls.md '
    function emit() { while ((getline line < file) > 0) print line; close(file) }
    /^## / && skip { skip = 0; print "" }
    /^## TLS[[:space:]]*$/ { emit(); done = 1; skip = 1; next }
    !skip { print }
    END { if (!done) { print ""; emit() } }
  ' BENCHMARKS.md > "$work/bm"
  cat "$work/bm" > BENCHMARKS.md
  echo "updated: BENCHMARKS.md (## TLS)"
fi
