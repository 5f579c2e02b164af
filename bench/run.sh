#!/usr/bin/env bash
# make bench: libsock against raw system calls, side by side in one run.
# Prints the table and writes BENCHMARKS.md (results, command lines, machine).
#
# Knobs (environment; defaults are the sizes of issue 5):
#   BENCH_RUNS=7            timed runs per transfer case (the median is shown)
#   BENCH_SLOW_RUNS=3       runs per slow-reader case (each ~4.5 s: the slow
#                           reader sets the pace)
#   BENCH_HTTP_RUNS=5       wrk runs per HTTP case
#   BENCH_SMALL_MSGS=1000000  64-byte messages in the small-write cases
#   BENCH_BULK_MIB=1024     bytes of the bulk case
#   BENCH_BULK_PASSES=4     times each bulk run sends them (one connection)
#   BENCH_FILE_MIB=1024     size of the file of the file cases
#   BENCH_FILE_PASSES=4     times each file run sends the file (one
#                           connection): runs of ~1 s, steadier than 0.25 s
#   BENCH_HTTP_SECONDS=3    duration of one wrk run
#   BENCH_MEM_CONNS=10000   connections of the memory cases
#   BENCH_IDLE_CONNS=100000 idle connections beside 10 busy ones in the
#                           sock_flush_all case (fewer if RLIMIT_NOFILE's
#                           hard limit does not allow them)
#   BENCH_BURST_CONNS=1000  connections of the memory-after-a-burst case
#                           (each queues 256 KiB)
#   BENCH_QUICK=1           everything ~10x smaller, 1 run each (a smoke test;
#                           the numbers are not meaningful)
#   BENCH_OUT=BENCHMARKS.md where the report goes
#   BENCH_TMP=$TMPDIR       where the temporary file(s) go (needs FILE_MIB)
#
# Expects the programs built by `make bench` in build/bench/ (mk/bench.mk).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

if [[ -n ${BENCH_QUICK:-} ]]; then
  : "${BENCH_RUNS:=1}" "${BENCH_SLOW_RUNS:=1}" "${BENCH_HTTP_RUNS:=1}"
  : "${BENCH_SMALL_MSGS:=100000}" "${BENCH_BULK_MIB:=128}" "${BENCH_FILE_MIB:=128}"
  : "${BENCH_FILE_PASSES:=1}" "${BENCH_BULK_PASSES:=1}"
  : "${BENCH_HTTP_SECONDS:=1}" "${BENCH_MEM_CONNS:=1000}" "${BENCH_IDLE_CONNS:=10000}"
fi
RUNS=${BENCH_RUNS:-7}
SLOW_RUNS=${BENCH_SLOW_RUNS:-3}
HTTP_RUNS=${BENCH_HTTP_RUNS:-5}
SMALL_MSGS=${BENCH_SMALL_MSGS:-1000000}
BULK_MIB=${BENCH_BULK_MIB:-1024}
BULK_PASSES=${BENCH_BULK_PASSES:-4}
FILE_MIB=${BENCH_FILE_MIB:-1024}
FILE_PASSES=${BENCH_FILE_PASSES:-4}
HTTP_SECONDS=${BENCH_HTTP_SECONDS:-3}
MEM_CONNS=${BENCH_MEM_CONNS:-10000}
IDLE_CONNS=${BENCH_IDLE_CONNS:-100000}
BURST_CONNS=${BENCH_BURST_CONNS:-1000}
OUT=${BENCH_OUT:-BENCHMARKS.md}
B=build/bench

tmp=$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/libsock-bench.XXXXXX") || exit 2
server_pids=()
cleanup() {
  for p in "${server_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
started=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_busy() { awk '/^cpu / {print $2 + $3 + $4}' /proc/stat; } # user+nice+system jiffies
BUSY0=$(cpu_busy)

say() { printf '%s\n' "$*" >&2; }

# ---- tools ------------------------------------------------------------------

apt_install() { # package: install from Debian's archive when missing
  command -v apt-get >/dev/null 2>&1 || return 1
  say "installing $1 (apt-get)"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "$1" >/dev/null 2>&1 ||
    { timeout 600 apt-get update >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y "$1" >/dev/null 2>&1; }
}
command -v wrk >/dev/null 2>&1 || apt_install wrk
HAVE_WRK=0
command -v wrk >/dev/null 2>&1 && HAVE_WRK=1

# System calls are counted in the kernel (perf's syscall tracepoints, no
# slowdown) when possible, else with strace -c -f (which slows every call
# ~10x and so weakens the slow reader's backpressure: see the notes).
SYS_EVENTS=raw_syscalls:sys_enter
for s in write writev sendmsg sendto epoll_wait poll futex sendfile64 pread64 read rt_sigprocmask rt_sigpending ioctl; do
  SYS_EVENTS+=",syscalls:sys_enter_$s"
done
COUNTER=none
if command -v perf >/dev/null 2>&1 && perf stat -x, -e "$SYS_EVENTS" -o /dev/null true 2>/dev/null; then
  COUNTER=perf
else
  command -v strace >/dev/null 2>&1 || apt_install strace
  command -v strace >/dev/null 2>&1 && COUNTER=strace
fi

PIN0=() PIN1=()
if command -v taskset >/dev/null 2>&1 && [[ $(nproc) -ge 2 ]]; then
  PIN0=(taskset -c 0) # the program measured (writer, server)
  PIN1=(taskset -c 1) # its peer (sink, wrk)
fi

# ---- helpers -------------------------------------------------------------------

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }

# Counters of the last counted run, by syscall name.
declare -A SC
parse_counts() { # file
  SC=()
  if [[ $COUNTER == perf ]]; then
    while IFS=, read -r val _ ev _; do
      [[ $val =~ ^[0-9]+$ ]] || continue
      case $ev in
        raw_syscalls:sys_enter) SC[total]=$val ;;
        syscalls:sys_enter_*) SC[${ev#syscalls:sys_enter_}]=$val ;;
      esac
    done <"$1"
  else
    while read -r -a f; do
      [[ ${#f[@]} -ge 5 && ${f[0]} =~ ^[0-9.]+$ ]] || continue
      local name=${f[-1]} calls=${f[3]}
      [[ $name == total ]] && SC[total]=$calls || SC[$name]=$calls
    done <"$1"
  fi
}
counts_summary() { # the main calls of SC, "name=N ..."
  local s="" k
  for k in sendto sendmsg writev write sendfile64 sendfile pread64 epoll_wait poll futex rt_sigprocmask rt_sigpending ioctl; do
    [[ -n ${SC[$k]:-} && ${SC[$k]} != 0 ]] && s+="$k ${SC[$k]}, "
  done
  printf '%s' "${s%, }"
}

# transfer MODE READER AMOUNT BYTES [FILE]: one writer run against a fresh
# sink; sets T_SECONDS T_MAXRSS T_USER T_SYS (and SC when COUNT=1).
transfer() {
  local mode=$1 reader=$2 amount=$3 bytes=$4 file=${5:-} check=
  [[ $mode == small-* ]] && check=check64
  local fifo="$tmp/sink.fifo" port= out rc
  rm -f "$fifo" && mkfifo "$fifo"
  timeout 600 "${PIN1[@]}" "$B/sink" "$reader" "$bytes" $check >"$fifo" 2>"$tmp/sink.err" &
  local spid=$!
  exec {sfd}<"$fifo"
  read -r -t 10 -u "$sfd" port
  exec {sfd}<&-
  local cmd=("$B/writer" "$mode" "$port" "$amount")
  [[ -n $file ]] && cmd+=("$file")
  if [[ ${COUNT:-0} == 1 && $COUNTER == perf ]]; then
    cmd=(perf stat -x, -o "$tmp/count.out" -e "$SYS_EVENTS" -- "${cmd[@]}")
  elif [[ ${COUNT:-0} == 1 && $COUNTER == strace ]]; then
    cmd=(strace -f -c -o "$tmp/count.out" "${cmd[@]}")
  fi
  out=$(timeout 600 "${PIN0[@]}" "${cmd[@]}" 2>"$tmp/writer.err")
  rc=$?
  wait "$spid"
  local src=$?
  if [[ $rc -ne 0 || $src -ne 0 || -z $port ]]; then
    say "FAILED: $mode/$reader (writer $rc, sink $src): $(cat "$tmp/writer.err" "$tmp/sink.err" | head -c 400)"
    return 1
  fi
  T_SECONDS=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
  T_MAXRSS=$(sed -n 's/.*maxrss_kb=\([0-9]*\).*/\1/p' <<<"$out")
  T_USER=$(sed -n 's/.*user_s=\([0-9.]*\).*/\1/p' <<<"$out")
  T_SYS=$(sed -n 's/.*sys_s=\([0-9.]*\).*/\1/p' <<<"$out")
  T_PEAKQ=$(sed -n 's/.*peak_queued=\([0-9]*\).*/\1/p' <<<"$out")
  T_STALLS=$(sed -n 's/.*stalls=\([0-9]*\).*/\1/p' <<<"$out")
  [[ ${COUNT:-0} == 1 ]] && parse_counts "$tmp/count.out"
  return 0
}

# Results: R[key] = median, RUNS_OF[key] = every run.
declare -A R RUNS_OF CALLS BREAKDOWN RSS PEAKQ STALLS USER SYS
FAILURES=0

# measure READER AMOUNT BYTES FILE MODE...: RUNS timed runs of every mode,
# interleaved (run i starts with a different mode, so a burst of load from
# elsewhere on the machine does not land on one side only); results under
# the key MODE-READER (or MODE for bulk/file cases: KEY_SUFFIX=""). With
# COUNTED=1, one more run per mode counting system calls.
measure() {
  local reader=$1 amount=$2 bytes=$3 file=$4 n=$RUNS i j
  shift 4
  local modes=("$@") m key
  local -A secs=() rss=() peakq=() user=() sys=()
  [[ $reader == slow ]] && n=$SLOW_RUNS
  # slow-reader runs are paced by the reader: count in the same runs
  local count_in_run=0
  [[ $reader == slow && $COUNTER == perf ]] && count_in_run=1
  for ((i = 0; i < n; i++)); do
    for ((j = 0; j < ${#modes[@]}; j++)); do
      m=${modes[$(((i + j) % ${#modes[@]}))]}
      key=$m${KEY_SUFFIX-"-$reader"}
      if COUNT=$count_in_run transfer "$m" "$reader" "$amount" "$bytes" "$file"; then
        secs[$key]+="$T_SECONDS "
        rss[$key]+="$T_MAXRSS "
        peakq[$key]+="${T_PEAKQ:-0} "
        STALLS[$key]+="${T_STALLS:-0} "
        user[$key]+="${T_USER:-0} "
        sys[$key]+="${T_SYS:-0} "
        if [[ $count_in_run == 1 ]]; then
          CALLS[$key]+="${SC[total]:-0} "
          BREAKDOWN[$key]=$(counts_summary)
        fi
      else
        FAILURES=$((FAILURES + 1))
      fi
    done
  done
  for m in "${modes[@]}"; do
    key=$m${KEY_SUFFIX-"-$reader"}
    R[$key]=$(printf '%s\n' ${secs[$key]:-} | median)
    RUNS_OF[$key]=$(echo ${secs[$key]:-})
    RSS[$key]=$(printf '%s\n' ${rss[$key]:-} | median)
    PEAKQ[$key]=$(printf '%s\n' ${peakq[$key]:-0} | sort -g | tail -n 1)
    USER[$key]=$(printf '%s\n' ${user[$key]:-} | median)
    SYS[$key]=$(printf '%s\n' ${sys[$key]:-} | median)
    if [[ ${COUNTED:-0} == 1 && $count_in_run == 0 && $COUNTER != none ]]; then
      local amt=$amount by=$bytes
      if [[ $COUNTER == strace && $m == small-* && $amount -gt 100000 ]]; then
        amt=100000 # strace: ~40 us per call; a tenth of the messages
        by=$((amt * 64))
      fi
      if COUNT=1 transfer "$m" "$reader" "$amt" "$by" "$file"; then
        CALLS[$key]=$(calc '%.0f' "${SC[total]:-0} * $amount / $amt")
        BREAKDOWN[$key]=$(counts_summary)
      fi
    fi
    if [[ -n ${CALLS[$key]:-} ]]; then
      CALLS[$key]=$(printf '%s\n' ${CALLS[$key]} | median)
    fi
    say "  $key: ${R[$key]} s (runs: ${RUNS_OF[$key]})${CALLS[$key]:+, ${CALLS[$key]} system calls}"
  done
}

# ---- the cases ---------------------------------------------------------------

say "== building (make bench builds build/bench/)"
for p in sink writer mem mem_raw http_hello_lib http_hello_raw http_hello_mt_lib \
  http_hello_mt_raw syscalls flushall burst; do
  [[ -x $B/$p ]] || { say "missing $B/$p: run make bench"; exit 2; }
done

SMALL_BYTES=$((SMALL_MSGS * 64))
BULK_BYTES=$((BULK_MIB * 1048576 * BULK_PASSES))
FILE_BYTES=$((FILE_MIB * 1048576))
FILE_SENT=$((FILE_BYTES * FILE_PASSES)) # bytes one file run sends

say "== small writes: $SMALL_MSGS x 64 B, fast reader"
COUNTED=1 measure fast "$SMALL_MSGS" "$SMALL_BYTES" "" \
  small-naive small-sendmsg small-ideal small-lib small-lib-deferred
say "== small writes: $SMALL_MSGS x 64 B, slow reader (backpressure)"
COUNTED=1 measure slow "$SMALL_MSGS" "$SMALL_BYTES" "" \
  small-naive small-ideal small-lib small-lib-drain small-lib-deferred small-lib-lowat

say "== bulk: $BULK_MIB MiB x $BULK_PASSES in 64 KiB writes"
COUNTED=1 KEY_SUFFIX="" measure fast "$BULK_BYTES" "$BULK_BYTES" "" bulk-raw bulk-lib

say "== files: $FILE_MIB MiB file"
file="$tmp/file.bin"
head -c $((64 * 1048576)) /dev/urandom >"$tmp/chunk"
: >"$file"
for ((i = 0; i < (FILE_MIB + 63) / 64; i++)); do cat "$tmp/chunk" >>"$file"; done
truncate -s "$FILE_BYTES" "$file"
rm -f "$tmp/chunk"
cat "$file" >/dev/null # in the page cache for every case
WRITER_FILE_PASSES=$FILE_PASSES COUNTED=1 KEY_SUFFIX="" \
  measure fast "$FILE_BYTES" "$FILE_SENT" "$file" file-raw file-lib hook-raw hook-lib
rm -f "$file"

# ---- HTTP --------------------------------------------------------------------

declare -A RPS RPS_RUNS CPUREQ CPUREQ_RUNS
http_ok=1
if [[ $HAVE_WRK == 1 ]]; then
  say "== HTTP: wrk against http_hello (libsock) and the same server on raw calls, single-threaded and in the 2017 pattern"
  www="$tmp/www"
  mkdir -p "$www"
  head -c 65536 /dev/urandom >"$www/64k.bin"
  declare -A URL SPID
  # lib/raw: examples/loop.c (one thread); mtlib/mtraw: bench/loop_mt.c (the
  # 2017 pattern: reactor thread + 4 workers behind async_run)
  declare -A BIN=([lib]=http_hello_lib [raw]=http_hello_raw [mtlib]=http_hello_mt_lib [mtraw]=http_hello_mt_raw)
  for impl in lib raw mtlib mtraw; do
    fifo="$tmp/http-$impl.fifo"
    mkfifo "$fifo"
    "${PIN0[@]}" "$B/${BIN[$impl]}" -a 127.0.0.1 -p 0 -t 60 "$www" >"$fifo" 2>"$tmp/http-$impl.err" &
    server_pids+=($!)
    SPID[$impl]=$!
    exec {hfd}<"$fifo"
    read -r -t 10 -u "$hfd" line
    cat <&"$hfd" >/dev/null &
    exec {hfd}<&-
    URL[$impl]=$(grep -o 'http://[^ ]*' <<<"$line")
    [[ -n ${URL[$impl]} ]] || { say "${BIN[$impl]} did not start"; http_ok=0; }
  done
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # user + system
  wrk_run() { # impl conns path seconds -> "requests/s server-CPU-us-per-request"
    local out t0 t1 rps
    t0=$(cpu_ticks "${SPID[$1]}")
    out=$(timeout $(($4 + 30)) "${PIN1[@]}" wrk -t1 -c"$2" -d"$4"s --timeout 5s "${URL[$1]}$3" 2>&1)
    t1=$(cpu_ticks "${SPID[$1]}")
    if grep -qE 'Socket errors|Non-2xx' <<<"$out"; then
      say "  wrk $1 -c$2 $3: $(grep -E 'Socket errors|Non-2xx' <<<"$out" | tr '\n' ' ')"
    fi
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
    awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v r="${rps:-0}" -v d="$4" \
      'BEGIN { if (r > 0) printf "%s %.2f\n", r, t / hz * 1e6 / (r * d); else print "0 nan" }'
  }
  if [[ $http_ok == 1 ]]; then
    for impl in lib raw mtlib mtraw; do wrk_run "$impl" 50 / 1 >/dev/null; done # warm-up
    for ((i = 0; i < HTTP_RUNS; i++)); do
      for case in "50 / lib raw" "1000 / lib raw" "50 /64k.bin lib raw" "50 / mtlib mtraw" "1000 / mtlib mtraw"; do
        set -- $case
        order=("$3" "$4")
        ((i % 2)) && order=("$4" "$3") # alternate who goes first
        for impl in "${order[@]}"; do
          read -r v cpu < <(wrk_run "$impl" "$1" "$2" "$HTTP_SECONDS")
          RPS_RUNS["$impl $1 $2"]+="${v:-0} "
          CPUREQ_RUNS["$impl $1 $2"]+="${cpu:-nan} "
        done
      done
    done
    for k in "${!RPS_RUNS[@]}"; do
      RPS[$k]=$(printf '%s\n' ${RPS_RUNS[$k]} | median)
      CPUREQ[$k]=$(printf '%s\n' ${CPUREQ_RUNS[$k]} | grep -v nan | median)
      say "  $k: ${RPS[$k]} req/s, ${CPUREQ[$k]} us CPU per request (runs: ${RPS_RUNS[$k]})"
    done
  fi
  # stop both servers cleanly
  for p in "${server_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${server_pids[@]}"; do
    timeout 10 tail --pid="$p" -f /dev/null || kill -KILL "$p" 2>/dev/null
    wait "$p" || say "  a server exited with status $?"
  done
  server_pids=()
else
  say "== HTTP: skipped (wrk missing and not installable)"
  http_ok=0
fi

# ---- memory ------------------------------------------------------------------

say "== memory: $MEM_CONNS connections"
declare -A MEM
mem_keys=(rss_start_kb rss_listen_kb rss_idle_kb idle_bytes_per_conn rss_queued_kb
  queued_written_bytes kernel_held_bytes library_held_bytes queued_rss_bytes connections)
declare -A MEMRUNS
for ((i = 0; i < 3; i++)); do
  out=$(timeout 300 "$B/mem" "$MEM_CONNS" 2>"$tmp/mem.err") || { say "mem failed: $(cat "$tmp/mem.err")"; FAILURES=$((FAILURES + 1)); continue; }
  for k in "${mem_keys[@]}"; do
    MEMRUNS[$k]+="$(sed -n "s/^$k=//p" <<<"$out") "
  done
  MEM[by_mapping]=$(sed -n 's/^rss_listen_by_mapping_kb=//p' <<<"$out")
  out=$(timeout 60 "$B/mem_raw")
  MEMRUNS[raw_start_kb]+="$(sed -n 's/^rss_start_kb=//p' <<<"$out") "
  MEMRUNS[raw_listen_kb]+="$(sed -n 's/^rss_listen_kb=//p' <<<"$out") "
  MEM[raw_by_mapping]=$(sed -n 's/^rss_listen_by_mapping_kb=//p' <<<"$out")
done
for k in "${mem_keys[@]}" raw_start_kb raw_listen_kb; do
  MEM[$k]=$(printf '%s\n' ${MEMRUNS[$k]:-} | median)
done
say "  after sock_listen: ${MEM[rss_listen_kb]} KiB (no library: ${MEM[raw_listen_kb]} KiB); idle: ${MEM[idle_bytes_per_conn]} B/connection"

# ---- system calls per write ---------------------------------------------------

say "== system calls per write, by path (bench/syscalls)"
declare -A SCW SCB
for path in plain hook hookflush pipe file poolwait; do
  n=1000
  out=$(timeout 120 "$B/syscalls" "$path" "$n" 2>"$tmp/syscalls.err") ||
    { say "syscalls $path failed: $(head -c 300 "$tmp/syscalls.err")"; FAILURES=$((FAILURES + 1)); continue; }
  SCW[$path]=$(sed -n 's/.*per_write=\([-0-9.]*\).*/\1/p' <<<"$out")
  SCB[$path]=$(sed -n 's/.*breakdown="\([^"]*\)".*/\1/p' <<<"$out")
  [[ ${SCW[$path]} == -1.000 || ${SCW[$path]} == -1 ]] && SCW[$path]=n/a
  say "  $path: ${SCW[$path]} per write (${SCB[$path]})"
done

# ---- sock_flush_all with many idle connections ---------------------------------

say "== sock_flush_all: 10 connections with data, alone and beside $IDLE_CONNS idle ones"
declare -A FA
fa_runs=""
for ((i = 0; i < 3; i++)); do
  out=$(timeout 300 "$B/flushall" "$IDLE_CONNS" 10 2000 2>"$tmp/flushall.err") ||
    { say "flushall failed: $(head -c 300 "$tmp/flushall.err")"; FAILURES=$((FAILURES + 1)); continue; }
  for k in idle alone_ns with_idle_ns ratio; do
    FA[$k]+="$(sed -n "s/.*\b$k=\([0-9.]*\).*/\1/p" <<<"$out") "
  done
  fa_runs+="$(sed -n 's/.*ratio=\([0-9.]*\).*/\1/p' <<<"$out") "
done
for k in idle alone_ns with_idle_ns ratio; do FA[$k]=$(printf '%s\n' ${FA[$k]:-} | median); done
say "  ${FA[idle]} idle: ${FA[alone_ns]} ns alone, ${FA[with_idle_ns]} ns beside them (ratio ${FA[ratio]}; runs: $fa_runs)"

# ---- memory given back after a burst ---------------------------------------------

say "== memory after a burst: $BURST_CONNS connections x 256 KiB"
declare -A BU
for ((i = 0; i < 3; i++)); do
  out=$(timeout 300 "$B/burst" "$BURST_CONNS" 256 2>"$tmp/burst.err") ||
    { say "burst failed: $(head -c 300 "$tmp/burst.err")"; FAILURES=$((FAILURES + 1)); continue; }
  for k in rss_before_kb rss_peak_kb rss_after_kb after_minus_before_kb anon_before_kb anon_after_kb burst_s; do
    BU[$k]+="$(sed -n "s/.*\b$k=\([-0-9.]*\).*/\1/p" <<<"$out") "
  done
done
BU[runs]=${BU[after_minus_before_kb]:-}
for k in rss_before_kb rss_peak_kb rss_after_kb after_minus_before_kb anon_before_kb anon_after_kb burst_s; do
  BU[$k]=$(printf '%s\n' ${BU[$k]:-} | median)
done
say "  RSS ${BU[rss_before_kb]} KiB before, ${BU[rss_peak_kb]} KiB at the peak, ${BU[rss_after_kb]} KiB 1 s after (+${BU[after_minus_before_kb]} KiB; runs: ${BU[runs]}); burst ${BU[burst_s]} s"

# ---- the report ----------------------------------------------------------------

elapsed=$(($(date +%s) - started))
# CPU time the machine spent outside this benchmark's processes while it ran
# (other work on a shared machine disturbs the numbers).
busy=$(($(cpu_busy) - BUSY0))
ours=$(times | tail -n 1 | awk '{
  t = 0
  for (i = 1; i <= NF; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
  print t }')
hz=$(getconf CLK_TCK)
others=$(calc '%.0f' "($busy / $hz - $ours) / ($elapsed * $(nproc)) * 100")
[[ $others -lt 0 ]] && others=0
rows=()  # markdown table rows
notes=() # notes for missed targets

# status VALUE OP LIMIT: "met" or "**missed** ..." (counted afterwards)
status() {
  local v=$1 op=$2 lim=$3
  if [[ $v == nan || -z $v || $v == n/a ]]; then echo "not measured"; return; fi
  if awk "BEGIN {exit !($v $op $lim)}"; then
    echo "met"
  elif [[ $op == ">=" || $op == ">" ]]; then
    echo "**missed** by $(calc '%.0f' "($lim - $v) / $lim * 100")%"
  else
    echo "**missed**: $(calc '%.2f' "$v / $lim")× the limit"
  fi
}
fmt() { calc "$1" "$2"; }
ratio() { [[ -n $1 && -n $2 && $1 != nan && $2 != nan ]] && calc '%.2f' "$1 / $2" || echo nan; }
# pratio BASE LIB: for the transfer cases, the median over rounds of BASE's
# time / LIB's time in the same round (measure runs every mode once per
# round, one after the other), so that the machine's slow drifts — on a
# shared VM, runs of the same program spread by 2x — fall on both sides.
# Falls back to the ratio of the medians when a run failed.
pratio() {
  local -a a=(${RUNS_OF[$1]:-}) b=(${RUNS_OF[$2]:-})
  local n=${#a[@]} i
  if ((n == 0 || n != ${#b[@]})); then
    ratio "${R[$1]:-}" "${R[$2]:-}"
    return
  fi
  calc '%.2f' "$(for ((i = 0; i < n; i++)); do calc '%.6f\n' "${a[i]} / ${b[i]}"; done | median)"
}
per_msg() { [[ -n ${1:-} ]] && calc '%.3f' "$1 / $SMALL_MSGS" || echo "n/a"; }
mps() { calc '%.2f' "$SMALL_MSGS / $1 / 1e6"; } # million messages/s
gbs() { calc '%.2f' "$2 / $1 / 1e9"; }         # GB/s

# small writes, fast reader
r_fast=$(pratio small-naive-fast small-lib-fast) # lib speed / naive speed
st_fast=$(status "$r_fast" ">=" 0.9)
rows+=("| small writes, fast reader: \`sock_write\` vs naive \`write\` loop | $(mps "${R[small-lib-fast]}") M msg/s | $(mps "${R[small-naive-fast]}") M msg/s | **$r_fast** | ≥ 0.90 | $st_fast |")
rows+=("| ↳ same, vs ideal (\`writev\` of 1024 messages) | $(mps "${R[small-lib-fast]}") M msg/s | $(mps "${R[small-ideal-fast]}") M msg/s | $(ratio "${R[small-ideal-fast]}" "${R[small-lib-fast]}") | — | |")
rows+=("| ↳ naive loop with \`sendmsg\` (the call the library makes) vs \`write\` | $(mps "${R[small-sendmsg-fast]}") M msg/s | $(mps "${R[small-naive-fast]}") M msg/s | $(ratio "${R[small-naive-fast]}" "${R[small-sendmsg-fast]}") | — | context |")
rows+=("| ↳ \`sock_write\`, flush deferred to the loop (\`async_run\`) vs naive | $(mps "${R[small-lib-deferred-fast]}") M msg/s | $(mps "${R[small-naive-fast]}") M msg/s | $(ratio "${R[small-naive-fast]}" "${R[small-lib-deferred-fast]}") | — | program option |")
rows+=("| ↳ system calls per message, fast reader: lib / naive / ideal / deferred | $(per_msg "${CALLS[small-lib-fast]:-}") | $(per_msg "${CALLS[small-naive-fast]:-}") / $(per_msg "${CALLS[small-ideal-fast]:-}") | — | — | deferred: $(per_msg "${CALLS[small-lib-deferred-fast]:-}") |")
# small writes, slow reader
sc_slow=$(per_msg "${CALLS[small-lib-slow]:-}")
st_slow=$(status "$sc_slow" "<=" 0.05)
rows+=("| small writes, slow reader: system calls per message, \`sock_write\` vs naive | **$sc_slow** | $(per_msg "${CALLS[small-naive-slow]:-}") | — | ≤ 0.05 | $st_slow |")
rows+=("| ↳ program waits for the queue to drain at 1 MiB (Node-style) | $(per_msg "${CALLS[small-lib-drain-slow]:-}") | ideal: $(per_msg "${CALLS[small-ideal-slow]:-}") | — | — | |")
rows+=("| ↳ flush deferred to the loop (\`async_run\`) | $(per_msg "${CALLS[small-lib-deferred-slow]:-}") | | — | — | program option |")
rows+=("| ↳ program sets \`TCP_NOTSENT_LOWAT\` (256 KiB) on its socket | $(per_msg "${CALLS[small-lib-lowat-slow]:-}") | | — | — | program option |")
# The pool holds at most 1024 packets of 16 KiB: with Q bytes queued at
# once, the packets held at least Q / 64 / 1024 messages each on average.
mpp=$(calc '%.0f' "${PEAKQ[small-lib-slow]:-0} / 64 / 1024")
st_pool=$(status "$mpp" ">" 1)
rows+=("| ↳ pool under backpressure: most bytes queued at once / messages per 16 KiB packet | $(calc '%.1f' "${PEAKQ[small-lib-slow]:-0} / 1048576") MiB / ≥ $mpp | pool: 1024 packets | — | > 1 message per packet | $st_pool |")
rows+=("| ↳ writer peak RSS with the slow reader | ${RSS[small-lib-slow]} KiB | ${RSS[small-naive-slow]} KiB | — | — | |")
rows+=("| ↳ time with the slow reader (paced by the reader) | ${R[small-lib-slow]} s | ${R[small-naive-slow]} s | $(ratio "${R[small-naive-slow]}" "${R[small-lib-slow]}") | — | |")
# bulk
r_bulk=$(pratio bulk-raw bulk-lib)
st_bulk=$(status "$r_bulk" ">=" 0.9)
rows+=("| bulk: $BULK_MIB MiB × $BULK_PASSES in 64 KiB \`sock_write\` vs raw \`write\` loop | $(gbs "${R[bulk-lib]}" "$BULK_BYTES") GB/s | $(gbs "${R[bulk-raw]}" "$BULK_BYTES") GB/s | **$r_bulk** | ≥ 0.90 | $st_bulk |")
# files
r_file=$(pratio file-raw file-lib)
st_file=$(status "$r_file" ">=" 0.95)
rows+=("| file: $FILE_MIB MiB × $FILE_PASSES \`sock_sendfile\` vs raw \`sendfile\` loop | $(gbs "${R[file-lib]}" "$FILE_SENT") GB/s | $(gbs "${R[file-raw]}" "$FILE_SENT") GB/s | **$r_file** | ≥ 0.95 | $st_file |")
r_hook=$(pratio hook-raw hook-lib)
st_hook=$(status "$r_hook" ">=" 0.8)
rows+=("| file through an rw hook (read-and-write path) vs raw \`pread\`+\`write\` (16 KiB) | $(gbs "${R[hook-lib]}" "$FILE_SENT") GB/s | $(gbs "${R[hook-raw]}" "$FILE_SENT") GB/s | **$r_hook** | ≥ 0.80 | $st_hook |")
# HTTP
if [[ $http_ok == 1 ]]; then
  for case in "50 /" "1000 /" "50 /64k.bin"; do
    set -- $case
    r=$(ratio "${RPS[lib $1 $2]}" "${RPS[raw $1 $2]}")
    if [[ $2 == / ]]; then
      st=$(status "$r" ">=" 0.9)
      rows+=("| HTTP \`GET $2\` (keep-alive), $1 connections: http_hello vs same server on raw calls | $(fmt '%.0f' "${RPS[lib $1 $2]}") req/s | $(fmt '%.0f' "${RPS[raw $1 $2]}") req/s | **$r** | ≥ 0.90 | $st |")
      eval "st_http_$1=\$st r_http_$1=\$r"
    else
      rows+=("| HTTP \`GET $2\` (sendfile), $1 connections | $(fmt '%.0f' "${RPS[lib $1 $2]}") req/s | $(fmt '%.0f' "${RPS[raw $1 $2]}") req/s | $r | — | |")
    fi
  done
  rows+=("| ↳ server CPU per request (user + kernel), \`GET /\`, 50 / 1000 connections | $(fmt '%.2f' "${CPUREQ[lib 50 /]:-0}") / $(fmt '%.2f' "${CPUREQ[lib 1000 /]:-0}") µs | $(fmt '%.2f' "${CPUREQ[raw 50 /]:-0}") / $(fmt '%.2f' "${CPUREQ[raw 1000 /]:-0}") µs | — | — | |")
  for c in 50 1000; do
    r=$(ratio "${RPS[mtlib $c /]}" "${RPS[mtraw $c /]}")
    st=$(status "$r" ">=" 1.0)
    rows+=("| 2017 server pattern (reactor thread + 4 workers behind \`async_run\`), \`GET /\`, $c connections: http_hello vs same server on raw calls | $(fmt '%.0f' "${RPS[mtlib $c /]}") req/s | $(fmt '%.0f' "${RPS[mtraw $c /]}") req/s | **$r** | ≥ 1.00 | $st |")
    eval "st_mt_$c=\$st r_mt_$c=\$r"
  done
  rows+=("| ↳ server CPU per request (user + kernel), 2017 pattern, 50 / 1000 connections | $(fmt '%.2f' "${CPUREQ[mtlib 50 /]:-0}") / $(fmt '%.2f' "${CPUREQ[mtlib 1000 /]:-0}") µs | $(fmt '%.2f' "${CPUREQ[mtraw 50 /]:-0}") / $(fmt '%.2f' "${CPUREQ[mtraw 1000 /]:-0}") µs | — | — | the library's share: the difference |")
else
  rows+=("| HTTP | — | — | — | ≥ 0.90 | **missed**: not measured (no wrk) |")
fi
# system calls per write
sc_worst=$(printf '%s\n' "${SCW[plain]:-nan}" "${SCW[hook]:-nan}" "${SCW[hookflush]:-nan}" "${SCW[pipe]:-nan}" | sort -g | tail -n 1)
st_scw=$(status "$sc_worst" "<=" 1.05)
rows+=("| system calls per 64-byte \`sock_write\` (reader keeps up): plain socket / write hook / write + flush hook / pipe | **${SCW[plain]:-n/a} / ${SCW[hook]:-n/a} / ${SCW[hookflush]:-n/a} / ${SCW[pipe]:-n/a}** | — | — | ≤ 1.05 each | $st_scw |")
rows+=("| ↳ under backpressure: per 40 KiB \`sock_sendfile\` (16 KiB socket buffers) / per 64 KiB \`sock_write\` waiting for a 16-packet pool | ${SCW[file]:-n/a} / ${SCW[poolwait]:-n/a} | — | — | — | ${SCB[file]:-}; ${SCB[poolwait]:-} |")
# sock_flush_all
st_fa=$(status "${FA[ratio]:-nan}" "<=" 1.5)
rows+=("| \`sock_flush_all\`: 10 connections with data beside ${FA[idle]:-?} idle ones vs the 10 alone | $(calc '%.1f' "${FA[with_idle_ns]:-0} / 1000") µs | $(calc '%.1f' "${FA[alone_ns]:-0} / 1000") µs | **${FA[ratio]:-nan}×** | ≤ 1.5× | $st_fa |")
# memory after a burst
st_bu=$(status "${BU[after_minus_before_kb]:-nan}" "<=" 1024)
rows+=("| memory after a burst ($BURST_CONNS connections × 256 KiB queued): RSS before / peak / 1 s after | ${BU[rss_before_kb]:-?} / ${BU[rss_peak_kb]:-?} / **${BU[rss_after_kb]:-?}** KiB | — | — | after ≤ before + 1 MiB | $st_bu |")
# memory
rss_mib=$(calc '%.2f' "${MEM[rss_listen_kb]} / 1024")
st_rss=$(status "${MEM[rss_listen_kb]}" "<=" 2048)
rows+=("| memory: RSS after the first \`sock_listen\` (whole process) | ${MEM[rss_listen_kb]} KiB ($rss_mib MiB) | no library: ${MEM[raw_listen_kb]} KiB | — | ≤ 2 MiB | $st_rss |")
st_idle=$(status "${MEM[idle_bytes_per_conn]}" "<=" 1024)
rows+=("| memory per idle connection (${MEM[connections]} connections) | **${MEM[idle_bytes_per_conn]} B** | — | — | ≤ 1 KiB | $st_idle |")
per_q=$(calc '%.1f' "${MEM[queued_rss_bytes]} / ${MEM[connections]} / 1024")
held_q=$(calc '%.1f' "${MEM[library_held_bytes]} / ${MEM[connections]} / 1024")
rows+=("| memory per connection holding 64 KiB queued (${MEM[connections]} connections) | $per_q KiB | bytes held by the library: $held_q KiB | $(ratio "${MEM[queued_rss_bytes]}" "${MEM[library_held_bytes]}") | — | (RSS / bytes held) |")

missed=$(printf '%s\n' "${rows[@]}" | grep -c '\*\*missed\*\*')

# notes for missed targets (why, by how much, what would close it)
us_per() { calc '%.2f' "${1:-0} / $SMALL_MSGS * 1e6"; } # seconds -> us per message
[[ $st_fast == met ]] || notes+=("**Small writes, fast reader ($r_fast× the naive loop, target 0.90).** System calls per message: $(per_msg "${CALLS[small-lib-fast]:-}") with \`sock_write\` ($(tr -d '|' <<<"${BREAKDOWN[small-lib-fast]:-}")), $(per_msg "${CALLS[small-naive-fast]:-}") for the naive loop; \`sendmsg\` against \`write\` is the sendmsg row. CPU per message (writer, medians): $(us_per "${USER[small-lib-fast]}") µs user + $(us_per "${SYS[small-lib-fast]}") µs kernel with the library, $(us_per "${USER[small-naive-fast]}") + $(us_per "${SYS[small-naive-fast]}") µs for the naive loop. With the same system calls, the gap is the library's own work per call (locks, its queue and pool, the callbacks). What would close it: less work per \`sock_write\` when nothing is queued — one lock, the caller's buffer sent directly, no pool round trip. A program can already drop the per-message system call by deferring flushes to its loop with \`async_run\` (the deferred rows: $(ratio "${R[small-naive-fast]}" "${R[small-lib-deferred-fast]}")× the naive loop).")
# The first messages fill the kernel's buffers (send buffer up to
# tcp_wmem's maximum, plus the sink's fixed receive buffer) before any
# backpressure: left out, what the backpressured part costs (an estimate).
wmax=$(sysctl -n net.ipv4.tcp_wmem 2>/dev/null | awk '{print $3}')
n0=$(((${wmax:-4194304} + 262144) / 64))
bp_est=$(calc '%.3f' "(${CALLS[small-lib-slow]:-0} - $n0) / ($SMALL_MSGS - $n0)")
[[ $st_slow == met ]] || notes+=("**Small writes, slow reader ($sc_slow system calls per message, target 0.05).** Breakdown: $(tr -d '|' <<<"${BREAKDOWN[small-lib-slow]:-n/a}"). Messages coalesce into packets only while the library holds writes back, i.e. after the kernel refused data (\`EAGAIN\` or a short write); until then each message is its own system call, and the kernel takes ~4 MiB before it pushes back (send buffer autotuned up to \`tcp_wmem\`'s maximum, $wmax bytes here, plus the reader's receive buffer): ~$n0 of the $SMALL_MSGS messages. Leaving those out (an estimate: counted calls minus one per message of the fill), the backpressured part costs ~$bp_est per message. The drain loop (a program that waits for the queue to empty before producing more) makes $(per_msg "${CALLS[small-lib-drain-slow]:-}") per message. What would close it: treat a large unread backlog in the kernel (\`SIOCOUTQ\`, or \`TCP_NOTSENT_LOWAT\`) like a full socket from the first write, and keep doing so after the queue drains — while making sure the program gets an \`EPOLLOUT\` (or the library flushes by itself) for what it keeps queued (without \`EAGAIN\` the kernel owes an edge-triggered loop no event: b5817df held data back on a large \`SIOCOUTQ\` alone and answers waited for the idle timeout, see \`tests.d/20-http-demo.sh\` answer-after-large-file-not-held); or defer flushes to the event loop with \`async_run\` ($(per_msg "${CALLS[small-lib-deferred-slow]:-}") per message in the deferred row). A program can get there today with one \`setsockopt\`: \`TCP_NOTSENT_LOWAT\` 256 KiB on the socket makes the kernel itself refuse data once that much waits unsent (an \`EAGAIN\`, so the edge-triggered wake-up is guaranteed): $(per_msg "${CALLS[small-lib-lowat-slow]:-}") per message in the lowat row. The library does not set it by default: the bytes the kernel no longer holds wait in the pool, which all connections share, so many moderately slow peers would exhaust it sooner and make writers wait.")
[[ $st_bulk == met ]] || notes+=("**Bulk ($r_bulk× raw, target 0.90).** System calls: ${CALLS[bulk-lib]:-?} with the library ($(tr -d '|' <<<"${BREAKDOWN[bulk-lib]:-}")), ${CALLS[bulk-raw]:-?} raw; CPU: $(calc '%.3f' "${USER[bulk-lib]:-0}") s user + $(calc '%.3f' "${SYS[bulk-lib]:-0}") s kernel vs $(calc '%.3f' "${USER[bulk-raw]:-0}") + $(calc '%.3f' "${SYS[bulk-raw]:-0}"). The raw loop blocks inside \`write\` until the kernel takes its 64 KiB; the library copies what the kernel does not take into pool packets (an extra memory copy; on loopback the transfer runs at memory-copy speed) and goes back to \`epoll_wait\` + \`sock_flush\`. What would close it: fewer copies — send from the caller's buffer first and copy only the remainder; a program can avoid the copy today with \`sock_write2(.move = 1)\` or \`sock_send_packet\`. Runs: lib ${RUNS_OF[bulk-lib]} s, raw ${RUNS_OF[bulk-raw]} s.")
[[ $st_file == met ]] || notes+=("**sendfile ($r_file× raw, target 0.95).** Both send with \`sendfile\` (system calls: lib ${CALLS[file-lib]:-?} — $(tr -d '|' <<<"${BREAKDOWN[file-lib]:-}") —, raw ${CALLS[file-raw]:-?}); the raw loop blocks inside one call while the library's socket is non-blocking, so each time the socket buffer fills it goes back to \`epoll_wait\` + \`sock_flush\`. Runs: lib ${RUNS_OF[file-lib]} s, raw ${RUNS_OF[file-raw]} s: on this shared 2-core VM the spread between runs is larger than the gap, so this is within noise unless it repeats.")
[[ $st_hook == met ]] || notes+=("**rw hook path ($r_hook× raw, target 0.80).** System calls: lib ${CALLS[hook-lib]:-?} ($(tr -d '|' <<<"${BREAKDOWN[hook-lib]:-}")), raw ${CALLS[hook-raw]:-?} ($(tr -d '|' <<<"${BREAKDOWN[hook-raw]:-}")). Both read 16 KiB (\`BUFFER_FILE_READ_SIZE\`) per \`pread\` and write each chunk once; the library adds its SIGPIPE guard around each flush round (\`rt_sigprocmask\`, \`rt_sigpending\`) and returns to \`epoll_wait\` when the socket is full. Runs: lib ${RUNS_OF[hook-lib]} s, raw ${RUNS_OF[hook-raw]} s. What would close it: a larger chunk for the read-and-write path, and one signal-mask change per flush rather than per round.")
if [[ $http_ok == 1 ]]; then
  for c in 50 1000; do
    eval "st=\$st_http_$c r=\$r_http_$c"
    [[ $st == met ]] || notes+=("**HTTP, $c connections ($r× the raw server, target 0.90).** Same source, same system calls per request (\`read\`, one \`sendmsg\`/\`write\` of header and body, and a \`read\` that finds nothing only when a read filled the buffer); the difference is the library's per-call work (UUID validation, the connection's lock, its queue) on every \`sock_read\`/\`sock_write\`/\`sock_flush\`. Runs: lib ${RPS_RUNS[lib $c /]}, raw ${RPS_RUNS[raw $c /]} req/s.")
  done
fi
if [[ $http_ok == 1 ]]; then
  for c in 50 1000; do
    eval "st=\$st_mt_$c r=\$r_mt_$c"
    [[ $st == met ]] || notes+=("**2017 server pattern, $c connections ($r× the raw server, target 1.00).** Server CPU per request: $(fmt '%.2f' "${CPUREQ[mtlib $c /]:-0}") µs with the library, $(fmt '%.2f' "${CPUREQ[mtraw $c /]:-0}") µs raw. The program defines \`async_run\`, so the library hands the flush after each answer to a worker as a task, as the original did by default (the contract, checked by c-tests/test_cb_async.c); the raw server writes inline. The hand-off costs one more task per answer, a second visit to the connection's state after other tasks have run (cold in the cache when there are many connections), and more thread switches on the one core the server has here. Sending at once under \`async_run\` was measured (one condition in \`sends_now\`, src/write.rs) and not taken: it lowers the cost at 1000 connections without reaching the raw server's, and at 50 it puts this program's task pool into a wake-up ping-pong (a worker empties the queue and sleeps, and each new task wakes it, with a switch each way), which is slower than the hand-off. Runs: lib ${RPS_RUNS[mtlib $c /]}, raw ${RPS_RUNS[mtraw $c /]} req/s.")
  done
fi
[[ $st_rss == met ]] || notes+=("**RSS after \`sock_listen\` (${MEM[rss_listen_kb]} KiB, target 2048 KiB: $(calc '%.0f' "(${MEM[rss_listen_kb]} - 2048)") KiB over).** Most of it is the C runtime: the same program without the library, listening with raw calls, is at ${MEM[raw_listen_kb]} KiB (resident KiB by mapping: ${MEM[raw_by_mapping]}). With the library: ${MEM[by_mapping]}. The library's share is its code pages touched at load and by the first calls (libsock), \`libgcc_s\` (the unwinder Rust's panic handling links), the first chunk of the connection table (256 slots, allocated for the first fd), and libc pages it uses that the raw program does not (threads; numeric addresses skip the resolver). Most of these are shared, file-backed pages, and the C library's part varies by ~100 KiB from run to run. What would close it: a smaller library text (most of it is Rust's standard library: formatting and the panic machinery), or \`panic = \"abort\"\` (drops \`libgcc_s\`, but a panic would then end the program instead of failing the call).")
[[ $st_idle == met ]] || notes+=("**Idle connections (${MEM[idle_bytes_per_conn]} B each, target 1024 B).**")

# Stalls: the library held queued data on a socket it never found full, so
# the EPOLLOUT an edge-triggered loop waits for did not come.
stalled=""
for k in "${!STALLS[@]}"; do
  t=$(printf '%s\n' ${STALLS[$k]} | awk '{t += $1} END {print t + 0}')
  [[ $t -gt 0 ]] && stalled+="$k ($t), "
done
if [[ -n $stalled ]]; then
  notes+=("**Stalls (not a target, a liveness problem): ${stalled%, }.** In these runs the writer's loop, waiting on \`epoll\` (edge-triggered \`EPOLLOUT\`) with output still queued, got no event within 100 ms although the socket was writable, and had to call \`sock_flush\` on its own: the library kept data queued without having found the socket full, so no writability edge was due. An event loop without such a timer keeps that data until some other event (in \`http_hello\`, the idle timeout). The count is per case, summed over its runs; each stall costs up to 100 ms here.")
fi

machine() {
  echo "- CPU: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores online"
  echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -sr), $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-unknown OS}")"
  echo "- compiler: $(cc --version | head -n 1); $(rustc --version 2>/dev/null || echo 'rustc: n/a')"
  echo "- libsock: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)'), release build (\`make build\`), linked as a shared library"
  echo "- wrk: $(wrk -v 2>&1 | head -n 1 | cut -c1-60)"
  echo "- TCP buffers: tcp_wmem $(sysctl -n net.ipv4.tcp_wmem 2>/dev/null | tr '\t' ' '), tcp_rmem $(sysctl -n net.ipv4.tcp_rmem 2>/dev/null | tr '\t' ' ')"
  echo "- load average before the run: $LOAD0; after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- CPU used by other processes during the run: ~$others% of the machine's capacity (estimate: /proc/stat busy time minus this run's processes)"
}

{
  echo "# Benchmarks"
  echo
  echo "Generated by \`make bench\` (\`bench/run.sh\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), in ${elapsed} s. Every ratio compares two"
  echo "programs measured in this same run, on this machine; **ratio** is libsock's speed divided by"
  echo "the baseline's (above 1: libsock is faster). Medians of $RUNS runs (slow reader: $SLOW_RUNS, HTTP: $HTTP_RUNS)."
  echo "The ratios in bold of the transfer rows (small writes, bulk, files) are the median of the"
  echo "per-round ratios: each round runs both programs one after the other, so a slow spell of the"
  echo "machine weighs on both; the speeds beside them are each program's median."
  echo "Regenerate with \`make bench\`; the knobs are at the top of \`bench/run.sh\`."
  echo
  echo "| benchmark | libsock | baseline | ratio | target | status |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "$missed target(s) missed."
  if [[ ${#notes[@]} -gt 0 ]]; then
    echo
    echo "## Targets missed: by how much, why, and what would close it"
    echo
    for n in "${notes[@]}"; do
      echo "- $n"
      echo
    done
  fi
  echo "## How each case is measured"
  echo
  echo "All transfers run over loopback TCP between two processes: \`build/bench/writer\` (the program measured, pinned to CPU 0)"
  echo "and \`build/bench/sink\` (the reader, pinned to CPU 1), which reads exactly the bytes expected and answers with one"
  echo "byte; the writer's clock runs from its connect until that byte arrives. Raw baselines use a blocking socket;"
  echo "the libsock writers use a non-blocking one with an \`epoll\` loop calling \`sock_flush\` on \`EPOLLOUT\`."
  echo
  echo "- small writes: \`sink fast|slow $SMALL_BYTES check64\` + \`writer small-MODE PORT $SMALL_MSGS\` — every message"
  echo "  carries its sequence number and the sink checks them all. Fast reader: 256 KiB reads. Slow reader: 16 KiB"
  echo "  reads with a 1 ms sleep after each (~16 MB/s) and a fixed 128 KiB receive buffer. Modes: \`naive\` (one"
  echo "  \`write\` per message), \`sendmsg\` (one \`sendmsg(MSG_NOSIGNAL)\` per message), \`ideal\` (\`writev\` of 1024"
  echo "  messages), \`lib\` (one \`sock_write\` per message; every 256 messages the loop polls \`epoll\` and calls"
  echo "  \`sock_flush\` on \`EPOLLOUT\` when output is queued; the 16 MiB pool bounds the queue), \`lib-drain\` (after"
  echo "  each 1 MiB, wait until the queue is empty), \`lib-deferred\` (\`sock_register_async_run\` takes the library's"
  echo "  flushes; the loop runs them once per 256 messages)."
  echo "- system calls: counted by the kernel for the writer process only: \`perf stat -e raw_syscalls:sys_enter,...\`"
  echo "  (counter used in this run: $COUNTER). Fast reader: one extra run per mode; slow reader: the timed runs"
  echo "  themselves (the reader sets the pace). \`strace -c -f\` is the fallback when perf's tracepoints are not"
  echo "  available; it slows every call ~10x (40 s for a million), which removes the backpressure of the slow case."
  echo "- bulk: \`writer bulk-raw|bulk-lib PORT $BULK_BYTES\` — 64 KiB buffers ($BULK_MIB MiB × $BULK_PASSES per run, one"
  echo "  connection: runs of ~1 s, steadier than 0.25 s)."
  echo "- files: a $FILE_MIB MiB file in the page cache, sent $FILE_PASSES times per run on one connection"
  echo "  (\`WRITER_FILE_PASSES=$FILE_PASSES writer file-raw|file-lib|hook-raw|hook-lib PORT $FILE_BYTES FILE\`);"
  echo "  the hook is \`{.write = <write(2) on the fd>}\`, so the library takes its read-and-write path (16 KiB \`pread\` +"
  echo "  hook write per chunk); \`hook-raw\` does the same with 16 KiB \`pread\` + \`write\`."
  echo "- HTTP: \`build/bench/http_hello_lib\` is \`examples/http_hello.c\` + \`examples/loop.c\` linked with libsock;"
  echo "  \`build/bench/http_hello_raw\` is the same two files linked with \`bench/rawsock.c\` (the API subset they use,"
  echo "  written on raw \`read\`/\`write\`/\`sendfile\`, copying only what the kernel does not take at once) instead of the"
  echo "  library. Server on CPU 0, \`wrk -t1 -cN -d${HTTP_SECONDS}s --timeout 5s URL\` on CPU 1, after a 1 s warm-up; the two"
  echo "  servers alternate who goes first."
  echo "- 2017 server pattern: \`build/bench/http_hello_mt_lib\` is \`examples/http_hello.c\` + \`bench/loop_mt.c\` (an edge-triggered"
  echo "  reactor thread that accepts, calls \`sock_flush\` on \`EPOLLOUT\` and hands readable connections to 4 worker threads;"
  echo "  the program defines \`async_run\`, so the library's flush after each write runs as a task on a worker);"
  echo "  \`http_hello_mt_raw\` is the same with \`bench/rawsock.c\` built with \`-DRAWSOCK_THREADS\` (a mutex per connection,"
  echo "  answers written inline). Same wrk runs as above; server CPU per request: the server's utime + stime"
  echo "  (\`/proc/PID/stat\`) over the run, divided by the requests served."
  echo "- system calls per write: \`build/bench/syscalls PATH 1000\` counts the writing thread's calls with"
  echo "  \`perf_event_open\` on the syscall tracepoints, enabled around the writes only (after one write that does the"
  echo "  thread's one-time work). plain/hook/hookflush/pipe: 64-byte \`sock_write\`s, a forked reader drains. file: 40 KiB"
  echo "  \`sock_sendfile\`s, 16 KiB socket buffers, a reader at 16 KiB per 100 µs, an edge-triggered loop calling \`sock_flush\`"
  echo "  on \`EPOLLOUT\` (the program's own open and epoll_wait left out). poolwait: 64 KiB \`sock_write\`s with the pool bounded"
  echo "  to 16 packets, same reader."
  echo "- \`sock_flush_all\`: \`build/bench/flushall $IDLE_CONNS 10 2000\`: 10 socketpairs whose peer never reads, with data"
  echo "  queued (every flush meets EAGAIN); ns per \`sock_flush_all\` alone, then after opening idle eventfds registered with"
  echo "  \`sock_open\` (as many as RLIMIT_NOFILE's hard limit allows, up to $IDLE_CONNS). Medians of 3 runs."
  echo "- memory after a burst: \`build/bench/burst $BURST_CONNS 256\`: the connections from a child process that reads as fast"
  echo "  as it can (16 KiB buffers both sides); 256 KiB \`sock_write\` to each (default pool), an edge-triggered loop sends"
  echo "  them; VmRSS before, VmHWM, VmRSS 1 s after the last byte left the library (connections still open). Medians of 3."
  echo "- memory: \`build/bench/mem $MEM_CONNS\`: VmRSS after the first \`sock_listen\`; then $MEM_CONNS connections from a"
  echo "  child process, accepted with \`sock_accept\` (RSS growth / connections); then new connections with small kernel"
  echo "  buffers (\`SO_SNDBUF\`/\`SO_RCVBUF\` 4 KiB), \`sock_set_packet_pool_size\` raised, and one 64 KiB \`sock_write\` each"
  echo "  that the peer never reads; bytes the kernel took (\`SIOCOUTQ\`, peer's \`FIONREAD\`) are subtracted to get"
  echo "  what the library holds. \`build/bench/mem_raw\` is the same program listening with raw calls, no library."
  echo "  Medians of 3 runs."
  echo "- stalls: how often a libsock writer, waiting for \`EPOLLOUT\` with output queued, saw none for 100 ms while"
  echo "  \`poll\` said the socket was writable, and called \`sock_flush\` anyway (the loop's safety net; 0 when the"
  echo "  library holds data back only after the kernel refused some)."
  echo
  echo "## All runs"
  echo
  echo "| case | seconds per run | median | system calls (median) | writer peak RSS (KiB) | stalls per run |"
  echo "|---|---|---|---|---|---|"
  for k in small-naive-fast small-sendmsg-fast small-ideal-fast small-lib-fast small-lib-deferred-fast \
    small-naive-slow small-ideal-slow small-lib-slow small-lib-drain-slow small-lib-deferred-slow small-lib-lowat-slow \
    bulk-raw bulk-lib file-raw file-lib hook-raw hook-lib; do
    echo "| $k | ${RUNS_OF[$k]:-} | ${R[$k]:-} | ${CALLS[$k]:-}${BREAKDOWN[$k]:+ ($(tr -d '|' <<<"${BREAKDOWN[$k]}"))} | ${RSS[$k]:-} | ${STALLS[$k]:-} |"
  done
  if [[ $http_ok == 1 ]]; then
    for k in "lib 50 /" "raw 50 /" "lib 1000 /" "raw 1000 /" "lib 50 /64k.bin" "raw 50 /64k.bin" \
      "mtlib 50 /" "mtraw 50 /" "mtlib 1000 /" "mtraw 1000 /"; do
      echo "| HTTP $k | req/s: ${RPS_RUNS[$k]} | ${RPS[$k]} | | | server CPU µs per request: ${CPUREQ_RUNS[$k]} |"
    done
  fi
  echo "| system calls per write | $(for p in plain hook hookflush pipe file poolwait; do printf '%s %s (%s); ' "$p" "${SCW[$p]:-}" "${SCB[$p]:-}"; done) | | | | |"
  echo "| sock_flush_all ratio | runs: $fa_runs | ${FA[ratio]:-} | | | |"
  echo "| burst: RSS after minus before (KiB) | runs: ${BU[runs]:-}; RssAnon before ${BU[anon_before_kb]:-}, after ${BU[anon_after_kb]:-}; burst ${BU[burst_s]:-} s | ${BU[after_minus_before_kb]:-} | | | |"
  echo "| memory (KiB unless noted) | start ${MEMRUNS[rss_start_kb]:-}; listen ${MEMRUNS[rss_listen_kb]:-}; idle ${MEMRUNS[rss_idle_kb]:-}; queued ${MEMRUNS[rss_queued_kb]:-}; no library: start ${MEMRUNS[raw_start_kb]:-}, listen ${MEMRUNS[raw_listen_kb]:-} | | | | |"
  echo
  echo "Resident KiB by mapping after \`sock_listen\` (last run): with the library ${MEM[by_mapping]:-}; without it ${MEM[raw_by_mapping]:-}."
  echo
  echo "## Machine"
  echo
  machine
  if [[ $FAILURES -gt 0 ]]; then
    echo
    echo "**$FAILURES run(s) failed** (see the output of \`make bench\`)."
  fi
  # Sections other work adds to the report (e.g. "## TLS", written by
  # bench/tls-bench.sh) are kept as they are.
  if [[ -f $OUT ]]; then
    awk '
      /^## / {
        keep = ($0 !~ /^## (Targets missed|How each case is measured|All runs|Machine)/)
        if (keep) print ""
      }
      keep { print }
    ' "$OUT"
  fi
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"

echo
echo "| benchmark | libsock | baseline | ratio | target | status |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "$missed target(s) missed; report written to $OUT (${elapsed} s; other processes used ~$others% of the CPUs meanwhile)"
[[ $FAILURES -eq 0 ]]
