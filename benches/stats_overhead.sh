#!/usr/bin/env bash
# What the stats endpoint costs: vane-loadgen's fan-in throughput against
# Vane with stats disabled ([stats] enabled = false, no $SYS) and with stats
# enabled, $SYS topics on, and /metrics scraped every second. Rounds
# alternate the two (off, on, on, off, ...) so drift hits both alike, and
# the medians are compared. Writes a section into benches/RESULTS.md
# between the stats_overhead markers.
#
# Environment:
#   DURATION, WARMUP   measured time and warm-up per run (default 10s, 2s)
#   ROUNDS             runs per mode (default 3)
#   PUBLISHERS         fan-in publishers (default 50)
#   TOTAL_RATE         offered messages/s over all publishers; far above
#                      what the broker can carry, so the broker is the limit
#                      (default 2000000)
#   QOS, SIZE          (default 1, 64): QoS 1 is lossless, so the
#                      publishers are held back by the broker, not dropped
#   BROKER_CPUS        taskset list for Vane (default 0)
#   LOADGEN_CPUS       taskset list for vane-loadgen and the scraper (default 1)
#   VANE_CORES, LOADGEN_CORES  executors (default: CPUs in the lists)
#   VANE, LOADGEN      binaries (default target/release/...; built if missing)
#   VANE_CONFIG        TOML put at the top of both configurations (default:
#                      a 1000-message inflight window and 100000 queued, so
#                      QoS 1 delivery to the one subscriber is not held to
#                      the default 32-message window)
#   GIT_REV            the revision to name (default: git rev-parse)
#   RESULTS            output file (default benches/RESULTS.md); NO_RESULTS=1
#                      prints the section instead
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
PUBLISHERS=${PUBLISHERS:-50}
TOTAL_RATE=${TOTAL_RATE:-2000000}
QOS=${QOS:-1}
SIZE=${SIZE:-64}
BROKER_CPUS=${BROKER_CPUS:-0}
LOADGEN_CPUS=${LOADGEN_CPUS:-1}
count_cpus() { python3 -c "import sys
n=0
for part in sys.argv[1].split(','):
    a,_,b=part.partition('-'); n+= (int(b)-int(a)+1) if b else 1
print(n)" "$1"; }
VANE_CORES=${VANE_CORES:-$(count_cpus "$BROKER_CPUS")}
LOADGEN_CORES=${LOADGEN_CORES:-$(count_cpus "$LOADGEN_CPUS")}
VANE_CONFIG=${VANE_CONFIG:-"[limits]\nmax_inflight = 1000\nmax_queued = 100000"}
VANE=${VANE:-target/release/vane}
LOADGEN=${LOADGEN:-target/release/vane-loadgen}
RESULTS=${RESULTS:-benches/RESULTS.md}
OUT=$(mktemp -d /tmp/vane-stats-overhead.XXXXXX)

say() { echo "stats_overhead.sh: $*" >&2; }

if [ ! -x "$VANE" ] || [ ! -x "$LOADGEN" ]; then
    say "building vane and vane-loadgen (release)"
    cargo build --release -q -p vane -p vane-loadgen
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One GET /metrics over bash's /dev/tcp; prints the status line.
scrape() {
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
    head -n 1 <&3
    cat <&3 >/dev/null
    exec 3<&-
}

printf '%b\n' "${VANE_CONFIG:-}" >"$OUT/off.toml"
printf '%b\n' "${VANE_CONFIG:-}" >"$OUT/on.toml"
cat >>"$OUT/off.toml" <<'CONF'
[stats]
enabled = false
sys_interval = 0
CONF
cat >>"$OUT/on.toml" <<'CONF'
[stats]
enabled = true
sys_interval = 10
CONF

BROKER_PID=""
SCRAPER_PID=""
cleanup() {
    if [ -n "$SCRAPER_PID" ]; then
        kill "$SCRAPER_PID" 2>/dev/null || true
        wait "$SCRAPER_PID" 2>/dev/null || true
    fi
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    SCRAPER_PID=""
    BROKER_PID=""
}
trap cleanup EXIT

# run MODE ROUND: one fan-in run; leaves OUT/MODE-ROUND.json.
run() {
    local mode=$1 round=$2 port stats_port
    port=$(free_port)
    stats_port=$(free_port)
    taskset -c "$BROKER_CPUS" "$VANE" --config "$OUT/$mode.toml" --listen "127.0.0.1:$port" \
        --stats-listen "127.0.0.1:$stats_port" --cores "$VANE_CORES" >"$OUT/vane-$mode-$round.log" 2>&1 &
    BROKER_PID=$!
    wait_port "$port" || { say "vane did not start (see $OUT/vane-$mode-$round.log)"; exit 1; }
    if [ "$mode" = on ]; then
        (
            while sleep 1; do
                scrape "$stats_port" >>"$OUT/scrapes-$round.txt" 2>&1 || echo failed >>"$OUT/scrapes-$round.txt"
            done
        ) &
        SCRAPER_PID=$!
        taskset -cp "$LOADGEN_CPUS" "$SCRAPER_PID" >/dev/null
    fi
    say "round $round, stats $mode"
    local t0 t1
    t0=$(cpu_ticks "$BROKER_PID")
    # shellcheck disable=SC2086
    taskset -c "$LOADGEN_CPUS" "$LOADGEN" fan-in --port "$port" --cores "$LOADGEN_CORES" \
        --publishers "$PUBLISHERS" --total-rate "$TOTAL_RATE" --qos "$QOS" --size "$SIZE" \
        --duration "$DURATION" --warmup "$WARMUP" --drain 5s --json --quiet \
        >"$OUT/$mode-$round.json" 2>"$OUT/$mode-$round.txt" || true
    t1=$(cpu_ticks "$BROKER_PID")
    echo $((t1 - t0)) >"$OUT/$mode-$round.cpu"
    cleanup
}

for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
    for mode in $order; do run "$mode" "$round"; done
done

python3 - "$OUT" "$ROUNDS" "$RESULTS" "${NO_RESULTS:-0}" "$BROKER_CPUS" "$LOADGEN_CPUS" \
    "$VANE_CORES" "$LOADGEN_CORES" "$PUBLISHERS" "$TOTAL_RATE" "$QOS" "$SIZE" "$DURATION" \
    "$(printf '%b' "$VANE_CONFIG" | tr '\n' ' ')" "$(getconf CLK_TCK)" <<'PY'
import json, os, re, statistics, subprocess, sys, datetime
out, rounds, results, no_results, bcpus, lcpus, vcores, lcores, pubs, rate, qos, size, duration, config, tck = sys.argv[1:]
rounds = int(rounds)

def result(mode, r):
    """Delivered msgs/s, messages lost, and broker CPU microseconds per
    message handled (received plus delivered)."""
    try:
        with open(f"{out}/{mode}-{r}.json") as f:
            j = json.load(f)
        with open(f"{out}/{mode}-{r}.cpu") as f:
            cpu = int(f.read().strip() or 0) / int(tck)
        handled = j["publish"]["sent"] + j["delivery"]["received"]
        return j["delivery"]["achieved_rate"], j["delivery"]["lost"], cpu * 1e6 / max(handled, 1)
    except Exception:
        return None, None, None

runs = {m: [result(m, r) for r in range(1, rounds + 1)] for m in ("off", "on")}
off = [x[0] for x in runs["off"]]
on = [x[0] for x in runs["on"]]
cpu_off = statistics.median([x[2] for x in runs["off"] if x[2]] or [0])
cpu_on = statistics.median([x[2] for x in runs["on"] if x[2]] or [0])
lost = lambda m: ", ".join(f"{x[1]:,}" if x[1] is not None else "-" for x in runs[m])
scrapes = ok = 0
for r in range(1, rounds + 1):
    try:
        lines = open(f"{out}/scrapes-{r}.txt").read().splitlines()
    except OSError:
        continue
    scrapes += len(lines)
    ok += sum(1 for l in lines if l.startswith("HTTP/1.1 200"))
good_off = [x for x in off if x]
good_on = [x for x in on if x]
if not good_off or not good_on:
    sys.exit(f"stats_overhead.sh: runs failed; see {out}")
m_off, m_on = statistics.median(good_off), statistics.median(good_on)
diff = (m_on - m_off) / m_off * 100
rev = os.environ.get("GIT_REV") or subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
fmt = lambda xs: ", ".join(f"{x:,.0f}" if x else "failed" for x in xs)
lines = [
    "<!-- stats_overhead:begin -->",
    "## Stats overhead (benches/stats_overhead.sh)",
    "",
    f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at {rev}, {os.cpu_count()} CPUs, loopback. "
    f"vane-loadgen `fan-in`: {pubs} publishers to one wildcard subscriber, QoS {qos}, {size}-byte payloads, "
    f"{int(rate):,} msg/s offered, {duration} measured per run. "
    f"Vane pinned with `taskset -c {bcpus}` and `--cores {vcores}`; vane-loadgen and the scraper with `taskset -c {lcpus}` "
    f"(`--cores {lcores}`). Both with `{config}`. Off: `[stats] enabled = false`, `sys_interval = 0`. On: stats enabled, $SYS every 10 s, "
    f"and `GET /metrics` every second ({ok} of {scrapes} scrapes answered 200). {rounds} rounds, alternating the order.",
    "",
    "| stats | delivered msgs/s, each run | median | lost, each run | broker CPU per message (median) |",
    "|---|---|---:|---|---:|",
    f"| off | {fmt(off)} | {m_off:,.0f} | {lost('off')} | {cpu_off:.3f} µs |",
    f"| on, scraped every second | {fmt(on)} | {m_on:,.0f} | {lost('on')} | {cpu_on:.3f} µs |",
    "",
    f"With stats on and scraped, the median fan-in throughput is **{diff:+.1f}%** against stats off "
    f"(the target is within 3%; the spread between runs of one mode is "
    f"{(max(good_off) - min(good_off)) / m_off * 100:.1f}% off and {(max(good_on) - min(good_on)) / m_on * 100:.1f}% on). "
    f"Broker CPU per message handled (received plus delivered): {(cpu_on - cpu_off) / max(cpu_off, 1e-9) * 100:+.1f}% with stats on.",
    "<!-- stats_overhead:end -->",
]
section = "\n".join(lines) + "\n"
if no_results == "1":
    print(section)
    sys.exit(0)
try:
    text = open(results).read()
except OSError:
    text = ""
pattern = re.compile(r"<!-- stats_overhead:begin -->.*?<!-- stats_overhead:end -->\n?", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
open(results, "w").write(text)
print(section)
PY
