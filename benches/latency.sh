#!/usr/bin/env bash
# End-to-end latency at a fixed, modest load (the broker issue's "p99 at
# 5,000 msg/s"): one publisher -> one subscriber, QoS 0, 64-byte payloads,
# open-loop at RATE msg/s (latency measured from each message's scheduled
# send time, so a stall counts), WARMUP then DURATION measured. Runs Vane
# with each of VANE_CORES_LIST executor counts, Mosquitto and rumqttd (when
# installed), in a different order each round, and prints markdown: the
# median over rounds of each percentile, and every run.
#
# Environment (see also benches/lib.sh: VANE, MOSQUITTO, RUMQTTD, BROKERS):
#   RATE (5000), DURATION (10s), WARMUP (2s), ROUNDS (3)
#   VANE_CORES_LIST ("1 2")   Vane is run once per entry per round
#   LOADGEN_CORES (1)         one executor: the publisher and the subscriber
#                             share it, and nothing else polls
#   NICE                      when set (e.g. -10), brokers and loadgen run
#                             under `nice -n $NICE`, all alike (to stand out
#                             from other work on a shared machine)
#   REPORT_ONLY=1 reprints the tables of an earlier OUT_DIR without running
#   QUIET_PCT, QUIET_WAIT     wait for an idle machine before each run (lib.sh)
#   OUT_DIR                   keeps the JSON, .hgrm histograms and logs
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

RATE=${RATE:-5000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
VANE_CORES_LIST=${VANE_CORES_LIST:-"1 2"}
LOADGEN_CORES=${LOADGEN_CORES:-1}
NICE=${NICE:-}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/vane-latency.XXXXXX)}
mkdir -p "$OUT_DIR"
[ -x "$LOADGEN" ] || cargo build --release -q -p vane-loadgen

# Variants: vane-c1, vane-c2, ..., then the peers.
VARIANTS=""
for b in $(available_brokers); do
    if [ "$b" = vane ]; then
        for c in $VANE_CORES_LIST; do VARIANTS="$VARIANTS vane-c$c"; done
    else
        VARIANTS="$VARIANTS $b"
    fi
done
prio=()
[ -n "$NICE" ] && prio=(nice -n "$NICE") && BROKER_NICE=$NICE

# Vane: which executors the publisher and the subscriber landed on (the
# kernel's SO_REUSEPORT hash picks): polls /metrics until both connections
# are counted, then writes "one" (same core) or "two" to FILE.
watch_placement() {
    local port=$1 file=$2
    for _ in $(seq 1 100); do
        local split
        split=$(http_get "$port" /metrics 2>/dev/null | awk '
            /^vane_connections_current\{/ { n = $NF + 0; sum += n; if (n > most) most = n }
            END { if (sum >= 2) print (most >= 2 ? "one" : "two") }')
        if [ -n "$split" ]; then echo "$split" >"$file"; return 0; fi
        sleep 0.1
    done
}

trap stop_broker EXIT
# REPORT_ONLY=1 with an earlier OUT_DIR prints the tables again without running.
if [ "${REPORT_ONLY:-0}" != 1 ]; then
meta_start
: >"$OUT_DIR/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    # shellcheck disable=SC2086
    for v in $(round_order "$round" $VARIANTS); do
        broker=${v%%-c*}
        if [ "$broker" = vane ]; then VANE_CORES=${v#vane-c}; fi
        port=$(free_port)
        wait_quiet
        start_broker "$broker" "$port" "$OUT_DIR" || continue
        load0=$(loadavg)
        t0=$(cpu_ticks "$BROKER_PID")
        s0=$(sys_busy_ticks)
        p0=$(cpu_pressure_us)
        say "round $round: $v (load $load0)"
        watcher=""
        if [ "$broker" = vane ] && [ -n "$BROKER_STATS_PORT" ]; then
            watch_placement "$BROKER_STATS_PORT" "$OUT_DIR/$v-$round.cores" &
            watcher=$!
        fi
        "${prio[@]}" "$LOADGEN" pairs --publishers 1 --port "$port" --qos 0 --size 64 --rate "$RATE" \
            --cores "$LOADGEN_CORES" --warmup "$WARMUP" --duration "$DURATION" \
            --hdr-out "$OUT_DIR/$v-$round.hgrm" --json --quiet \
            >"$OUT_DIR/$v-$round.json" 2>"$OUT_DIR/$v-$round.txt" || true
        if [ "$broker" = vane ] && [ -n "$BROKER_STATS_PORT" ]; then
            # Connections handed to the core that feeds them (executor.follow_*).
            http_get "$BROKER_STATS_PORT" /metrics 2>/dev/null |
                awk '/^vane_connections_moved_total\{/ { s += $NF } END { print s + 0 }' >"$OUT_DIR/$v-$round.moved" || true
        fi
        t1=$(cpu_ticks "$BROKER_PID")
        s1=$(sys_busy_ticks)
        p1=$(cpu_pressure_us)
        [ -n "$watcher" ] && { kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true; }
        stop_broker
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$round" "$((t1 - t0))" "$load0" "$(loadavg)" "$((s1 - s0))" "$((p1 - p0))" >>"$OUT_DIR/runs.tsv"
    done
done
meta_end
fi

versions=""
VANE_CORES="${VANE_CORES_LIST// /, then }"
for b in $(available_brokers); do versions="$versions$(broker_version "$b");"; done
report_args "$RATE" "$WARMUP" "$DURATION" "$LOADGEN_CORES" "$versions" "${NICE:-}" "$(getconf CLK_TCK)"
python3 - "$OUT_DIR" "${REPORT_ARGS[@]}" <<'PY'
import sys
sys.path.insert(0, "benches")
from bench_util import load, median, header
out, rate, warmup, duration, lcores, versions, nice = sys.argv[1:8]
tck = int(sys.argv[8]) if len(sys.argv) > 8 else 100
def name(v):
    return f"Vane --cores {v[6:]}" if v.startswith("vane-c") else {"mosquitto": "Mosquitto", "rumqttd": "rumqttd"}[v]
runs = []
for line in open(f"{out}/runs.tsv"):
    f = line.rstrip("\n").split("\t")
    v, rnd, ticks, load0, load1 = f[:5]
    sysbusy = int(f[5]) if len(f) > 5 and f[5] else None
    psi = int(f[6]) if len(f) > 6 and f[6] else None
    r = load(f"{out}/{v}-{rnd}.json")
    try:
        cores = {"one": "one", "two": "two"}.get(open(f"{out}/{v}-{rnd}.cores").read().strip(), "?")
    except OSError:
        cores = "-"
    try:
        moved = int(open(f"{out}/{v}-{rnd}.moved").read().strip() or 0)
        if moved and cores == "two":
            cores = "two, then one (moved)"
    except (OSError, ValueError):
        pass
    x = dict(v=v, round=int(rnd), load0=load0, load1=load1, ok=r is not None, cores=cores)
    if r:
        lat, d = r["delivery"]["latency"], r["delivery"]
        x.update({k: lat[k] for k in ("p50_us", "p99_us", "p999_us", "max_us", "count")},
                 rate=d["achieved_rate"], lost=d["lost"] or 0, received=d["received"],
                 toollag=r["publish"]["tool_lag"]["p99_us"], saturated=r["tool"]["saturated"],
                 notes="; ".join(r["problems"] + r["warnings"]),
                 other=(sysbusy / tck - int(ticks) / tck - r["tool"]["cpu_seconds"]) / max(r["tool"]["wall_seconds"], 1e-9) * 100
                 if sysbusy is not None else None,
                 psi=psi / 1e6 / max(r["tool"]["wall_seconds"], 1e-9) * 100 if psi is not None else None)
    runs.append(x)
variants = list(dict.fromkeys(x["v"] for x in runs))
rounds = sorted({x["round"] for x in runs})
ok = lambda v: [x for x in runs if x["v"] == v and x["ok"]]
print(header(out) + " "
      f"1 publisher -> 1 subscriber (`vane-loadgen pairs --publishers 1`), QoS 0, 64 B, open-loop {int(rate):,} msg/s, "
      f"{warmup} warm-up then {duration} measured, vane-loadgen --cores {lcores}, brokers unpinned"
      + (f", everything under nice {nice}" if nice else "") + f"; {len(rounds)} rounds. "
      f"Brokers: {', '.join(v for v in versions.split(';') if v)}.")
print()
print("| broker | p50 µs | p99 µs | p99.9 µs | max µs | p99 < 150 µs? | Vane p99 / this p99 |")
print("|---|---:|---:|---:|---:|---|---:|")
med = {v: {k: median([x[k] for x in ok(v)]) for k in ("p50_us", "p99_us", "p999_us", "max_us")} for v in variants}
best_vane = min((med[v]["p99_us"] for v in variants if v.startswith("vane") and med[v]["p99_us"] is not None), default=None)
for v in variants:
    m = med[v]
    if m["p99_us"] is None:
        print(f"| {name(v)} | (no result) | | | | | |")
        continue
    target = ("met" if m["p99_us"] < 150 else "not met") if v.startswith("vane") else "-"
    rel = "-" if v.startswith("vane") or not best_vane else f"{best_vane / m['p99_us']:.2f}"
    print(f"| {name(v)} | {m['p50_us']:.0f} | {m['p99_us']:.0f} | {m['p999_us']:.0f} | {m['max_us']:.0f} | {target} | {rel} |")
print()
print("Medians over the rounds, percentile by percentile. The last column compares the better Vane variant's median p99 with each peer's.")
print()
print("Every run (*clients on*: for Vane, whether the publisher and the subscriber were served by one executor or by two, read from /metrics as they connected, and *then one (moved)* where the subscriber or the publisher then moved to the other's core (vane_connections_moved_total); *tool lag p99*: how late the loadgen itself was in sending, before any broker wait; large values mean the machine, not the broker, added that latency; *other CPU*: what everything else on the machine used during the run, percent of one CPU; *CPU pressure*: share of the run's time in which some runnable task waited for a CPU (/proc/pressure/cpu), when recorded):")
print()
print("| broker | round | clients on | load avg before | load avg after | other CPU % | CPU pressure % | delivered/s | samples | lost | p50 µs | p99 µs | p99.9 µs | max µs | tool lag p99 µs | tool saturated |")
print("|---|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
notes = []
for x in runs:
    if not x["ok"]:
        print(f"| {name(x['v'])} | {x['round']} | {x['cores']} | {x['load0']} | {x['load1']} | | | (no result) | | | | | | | | |")
        continue
    oc = "-" if x["other"] is None else f"{x['other']:.0f}"
    ps = "-" if x["psi"] is None else f"{x['psi']:.0f}"
    print(f"| {name(x['v'])} | {x['round']} | {x['cores']} | {x['load0']} | {x['load1']} | {oc} | {ps} | {x['rate']:,.0f} | {x['count']:,} | {x['lost']:,} | "
          f"{x['p50_us']} | {x['p99_us']} | {x['p999_us']} | {x['max_us']} | {x['toollag']} | {'SATURATED' if x['saturated'] else 'no'} |")
    if x["notes"]:
        notes.append(f"- {name(x['v'])} / round {x['round']}: {x['notes']}")
if notes:
    print("\nWhat the loadgen reported:\n")
    print("\n".join(notes))
PY
say "raw JSON and .hgrm histograms in $OUT_DIR"
