#!/usr/bin/env bash
# The broker issue's maximum-throughput table, measured the way the issue
# defines it: 64-byte payloads, load tool and broker sharing all the
# machine's cores (no taskset split: Vane with --cores $VANE_CORES,
# vane-loadgen with --cores $LOADGEN_CORES, both pinning their executors to
# the same CPUs), against Vane and its peers in the same run:
#   fan-in-q0   8 publishers -> 1 subscriber on t/#, QoS 0
#   fan-out-q0  1 publisher  -> 16 subscribers, QoS 0 (deliveries counted)
#   pairs-q0    16 publisher -> subscriber pairs, QoS 0
#   pairs-q1    16 pairs, QoS 1
# Publishers run closed-loop (--rate 0): as fast as the tool can write,
# held back only by the socket (QoS 0) or the inflight window (QoS 1), so
# the offered load is the most the tool can push at that moment.
#
# ROUNDS rounds; in each, every scenario runs once against every broker,
# the brokers in a different order each round (benches/lib.sh
# round_order). Prints markdown: a summary (medians, per-round ratios to
# Mosquitto and rumqttd, the issue's targets) and every run's figures.
#
# Environment (see also benches/lib.sh: VANE, VANE_CORES, VANE_CONFIG,
# MOSQUITTO, RUMQTTD, BROKERS):
#   ROUNDS (3), DURATION (10s), WARMUP (2s), SCENARIOS (all four above)
#   LOADGEN_CORES (2), MQTT (5), EXTRA_ARGS (more vane-loadgen options)
#   QUIET_PCT      when set, each run waits to start until the machine's busy
#                  time over a second is under this percent of one CPU
#                  (QUIET_WAIT seconds at most, default 300; benches/lib.sh)
#   REPORT_ONLY=1  prints the tables of an earlier OUT_DIR without running
#   OUT_DIR        keeps the loadgen JSON and broker logs (default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SCENARIOS=${SCENARIOS:-"fan-in-q0 fan-out-q0 pairs-q0 pairs-q1"}
LOADGEN_CORES=${LOADGEN_CORES:-2}
MQTT=${MQTT:-5}
EXTRA_ARGS=${EXTRA_ARGS:-}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/vane-throughput-shared.XXXXXX)}
mkdir -p "$OUT_DIR"

[ -x "$LOADGEN" ] || cargo build --release -q -p vane-loadgen
BROKER_LIST=$(available_brokers)

scenario_args() {
    case "$1" in
        fan-in-q0)  echo "fan-in --publishers 8 --subscribers 1 --topic t/%i --filter t/# --qos 0" ;;
        fan-out-q0) echo "fan-out --publishers 1 --subscribers 16 --qos 0" ;;
        pairs-q0)   echo "pairs --publishers 16 --qos 0" ;;
        pairs-q1)   echo "pairs --publishers 16 --qos 1" ;;
        *) say "unknown scenario $1"; exit 2 ;;
    esac
}

trap stop_broker EXIT
# REPORT_ONLY=1 with an earlier OUT_DIR prints the tables again without running.
if [ "${REPORT_ONLY:-0}" != 1 ]; then
meta_start
: >"$OUT_DIR/runs.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for sc in $SCENARIOS; do
        # shellcheck disable=SC2086
        for broker in $(round_order "$round" $BROKER_LIST); do
            port=$(free_port)
            wait_quiet
            start_broker "$broker" "$port" "$OUT_DIR" || continue
            tag="$sc-$broker-$round"
            load0=$(loadavg)
            t0=$(cpu_ticks "$BROKER_PID")
            s0=$(sys_busy_ticks)
            say "round $round: $sc against $broker (load $load0)"
            # shellcheck disable=SC2046,SC2086
            "$LOADGEN" $(scenario_args "$sc") --port "$port" --mqtt "$MQTT" --size 64 --rate 0 \
                --cores "$LOADGEN_CORES" --warmup "$WARMUP" --duration "$DURATION" --drain 5s \
                $EXTRA_ARGS --json --quiet >"$OUT_DIR/$tag.json" 2>"$OUT_DIR/$tag.txt" || true
            t1=$(cpu_ticks "$BROKER_PID")
            s1=$(sys_busy_ticks)
            hwm=$(hwm_kib "$BROKER_PID")
            ctr=$(broker_counters "$broker" "$port")
            stop_broker
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sc" "$broker" "$round" "$((t1 - t0))" "$hwm" "$load0" "$ctr" "$((s1 - s0))" >>"$OUT_DIR/runs.tsv"
        done
    done
done
meta_end
fi

versions=""
for b in $BROKER_LIST; do versions="$versions$(broker_version "$b");"; done
report_args "$WARMUP" "$DURATION" "$(getconf CLK_TCK)" "$versions" "$LOADGEN_CORES" "$MQTT"
python3 - "$OUT_DIR" "${REPORT_ARGS[@]}" <<'PY'
import sys
sys.path.insert(0, "benches")
from bench_util import load, steady, fmt_rate, median, seconds, header
out, warmup, duration, tck, versions, lcores, mqtt = sys.argv[1:]
warm, tck = seconds(warmup), int(tck)
# The issue's figures; the target is each times 1.3.
TARGET = {"fan-in-q0": 1.34e6, "fan-out-q0": 2.07e6, "pairs-q0": 1.61e6, "pairs-q1": 0.81e6}
NAMES = {"vane": "Vane", "mosquitto": "Mosquitto", "rumqttd": "rumqttd"}
runs = []
for line in open(f"{out}/runs.tsv"):
    f = line.rstrip("\n").split("\t")
    sc, broker, rnd, ticks, hwm, load0 = f[:6]
    ctr = f[6] if len(f) > 6 else "not read"
    sysbusy = int(f[7]) if len(f) > 7 and f[7] else None
    r = load(f"{out}/{sc}-{broker}-{rnd}.json")
    run = dict(sc=sc, broker=broker, round=int(rnd), load=load0, hwm=int(hwm or 0), ok=r is not None, ctr=ctr)
    if r:
        d, p, t = r["delivery"], r["publish"], r["tool"]
        run.update(
            steady=steady(r, warm), achieved=d["achieved_rate"], sent=p["sent"],
            received=d["received"], lost=d["lost"] or 0, expected=d["expected"],
            sent_steady=steady(r, warm, "sent_per_s"),
            bcpu=int(ticks) / tck / max(t["wall_seconds"], 1e-9) * 100,
            per_cpu=d["received"] / (int(ticks) / tck) if int(ticks) else None,
            # CPU used by everything else on the machine during the run
            # (percent of one CPU; the busy time of all CPUs less broker and loadgen).
            other=(sysbusy / tck - int(ticks) / tck - t["cpu_seconds"]) / max(t["wall_seconds"], 1e-9) * 100
            if sysbusy is not None else None,
            lcpu=t["cpu_percent"] * t["cores"], saturated=t["saturated"],
            notes="; ".join(r["problems"] + r["warnings"]))
    runs.append(run)
brokers = [b for b in ("vane", "mosquitto", "rumqttd") if any(x["broker"] == b for x in runs)]
scenarios = list(dict.fromkeys(x["sc"] for x in runs))
get = lambda sc, b, rnd: next((x for x in runs if x["sc"] == sc and x["broker"] == b and x["round"] == rnd and x["ok"]), None)
rounds = sorted({x["round"] for x in runs})
print(header(out) + f" MQTT {mqtt}, 64 B payloads, --rate 0, {warmup} warm-up + {duration} per run, {len(rounds)} rounds. "
      f"vane-loadgen --cores {lcores}; brokers unpinned. Brokers: {', '.join(v for v in versions.split(';') if v)}.")
print()
hdr = "| scenario | target (issue × 1.3) | " + " | ".join(f"{NAMES[b]} median msg/s" for b in brokers)
others = [b for b in brokers if b != "vane"]
hdr += "".join(f" | Vane/{NAMES[b]} per round (median)" for b in others) + " | Vane vs target |"
print(hdr)
print("|" + "---|" * (2 + len(brokers) + len(others) + 1))
for sc in scenarios:
    row = [sc, fmt_rate(TARGET[sc] * 1.3)]
    med = {}
    for b in brokers:
        med[b] = median([get(sc, b, r)["steady"] for r in rounds if get(sc, b, r)])
        row.append(fmt_rate(med[b]))
    for b in others:
        rs = [get(sc, "vane", r)["steady"] / get(sc, b, r)["steady"] for r in rounds
              if get(sc, "vane", r) and get(sc, b, r) and get(sc, b, r)["steady"]]
        row.append(", ".join(f"{x:.2f}" for x in rs) + (f" (**{median(rs):.2f}**)" if rs else "-"))
    if "vane" in med and med["vane"]:
        row.append(f"{med['vane'] / (TARGET[sc] * 1.3):.2f} × target: " + ("met" if med["vane"] >= TARGET[sc] * 1.3 else "not met"))
    else:
        row.append("-")
    print("| " + " | ".join(row) + " |")
print()
print("Deliveries per second of broker CPU time (everything the subscribers received, drain included, over the CPU time the "
      "broker process used during the loadgen's run; Mosquitto is one thread, Vane and rumqttd use both cores). "
      "On a machine shared with other work this is less sensitive to how much CPU each broker got than msg/s is:")
print()
print("| scenario | " + " | ".join(f"{NAMES[b]} deliveries per CPU-second (median)" for b in brokers)
      + "".join(f" | Vane/{NAMES[b]}" for b in others) + " |")
print("|---|" + "---:|" * (len(brokers) + len(others)))
for sc in scenarios:
    med = {b: median([get(sc, b, r)["per_cpu"] for r in rounds if get(sc, b, r)]) for b in brokers}
    row = [sc] + [fmt_rate(med[b]) for b in brokers]
    row += [f"{med['vane'] / med[b]:.2f}" if med.get("vane") and med[b] else "-" for b in others]
    print("| " + " | ".join(row) + " |")
print()
print("Every run. *delivered/s*: mean of the loadgen's per-second received counts over the measured seconds "
      "(warm-up and the drain after publishing excluded); *loadgen figure*: its `delivery.achieved_rate` "
      "(everything received, drain included, over the publishing time). *lost*: published but never delivered "
      "(sequence gaps per subscriber), share of the deliveries owed. CPU: percent of one core over the loadgen's whole run (connecting and drain included); "
      "*other CPU*: what everything else on the machine used meanwhile (all CPUs' busy time less broker and loadgen).")
print()
print("| scenario | round | broker | load avg before | delivered/s | loadgen figure | offered (sent/s) | lost | broker's drop counters | broker CPU % | loadgen CPU % | other CPU % | broker peak RSS | tool saturated |")
print("|---|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
notes = []
for sc in scenarios:
    for x in [x for x in runs if x["sc"] == sc]:
        if not x["ok"]:
            print(f"| {sc} | {x['round']} | {NAMES[x['broker']]} | {x['load']} | (no result) | | | | {x['ctr']} | | | | | |")
            continue
        lostpct = x["lost"] / x["expected"] * 100 if x["expected"] else 0
        print(f"| {sc} | {x['round']} | {NAMES[x['broker']]} | {x['load']} | {fmt_rate(x['steady'])} | {fmt_rate(x['achieved'])} | "
              f"{fmt_rate(x['sent_steady'])} | {x['lost']:,} ({lostpct:.1f}%) | {x['ctr']} | {x['bcpu']:.0f} | {x['lcpu']:.0f} | {'-' if x['other'] is None else format(x['other'], '.0f')} | "
              f"{x['hwm'] / 1024:.1f} MiB | {'SATURATED' if x['saturated'] else 'no'} |")
        if x["notes"]:
            notes.append(f"- {sc} / {NAMES[x['broker']]} / round {x['round']}: {x['notes']}")
if notes:
    print()
    print("What the loadgen reported:")
    print()
    print("\n".join(notes))
PY
say "raw JSON in $OUT_DIR"
