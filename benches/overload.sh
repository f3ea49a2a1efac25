#!/usr/bin/env bash
# Overload: "Publishers faster than subscribers must not collapse delivery.
# Under an open-loop flood, delivered throughput must stay at or above 90%
# of what the broker delivers when it is not overloaded, with memory
# bounded. Dropping is allowed only for QoS 0, and is counted."
#
# Scenario: fan-in, PUBLISHERS (8) publishers -> 1 subscriber on t/#,
# 64-byte payloads, at each QoS in QOS_LIST (0 and 1). For each broker:
#   1. Not overloaded: short open-loop probes (PROBE_WARMUP + PROBE_DURATION,
#      a fresh broker each) at rising total offered rates, doubling from
#      START_RATE until one fails, then BISECT steps between the last pass
#      and the first failure. A probe passes when nothing is lost, the
#      delivered rate (per-second timeline, measured seconds only) is at
#      least 97% of the offered rate, and the tool sent at least 99% of its
#      schedule. The unloaded figure U is what the broker delivered at the
#      highest passing rate (at most the offered rate: a probe's measured
#      seconds can include catching up after a stall).
#   2. Flood: open-loop at FLOOD_FACTOR (3) x U for FLOOD_DURATION (30s)
#      after FLOOD_WARMUP (2s), on a fresh broker. Reported: delivered msg/s
#      (mean of the measured seconds, and the worst second), its ratio to U
#      (target >= 0.90), messages lost (loadgen), the broker's own drop
#      counters (Vane: vane_messages_dropped_total by cause from
#      --stats-listen /metrics; Mosquitto: $SYS/broker/publish/messages/dropped;
#      rumqttd: none read), and the broker's resident memory sampled every
#      0.5 s (/proc/PID/status VmRSS), with VmHWM.
# Brokers run in a different order each round (benches/lib.sh round_order).
#
# Environment (see also benches/lib.sh: VANE, VANE_CORES (2), VANE_CONFIG,
# MOSQUITTO, RUMQTTD, BROKERS):
#   ROUNDS (2), QOS_LIST ("0 1"), PUBLISHERS (8), LOADGEN_CORES (2), MQTT (5)
#   START_RATE (50000), MAX_RATE (8000000), BISECT (3)
#   PROBE_WARMUP (1s), PROBE_DURATION (4s)
#   FLOOD_FACTOR (3), FLOOD_WARMUP (2s), FLOOD_DURATION (30s)
#   REPORT_ONLY=1 reprints the tables of an earlier OUT_DIR without running
#   OUT_DIR   keeps the JSON, RSS samples, counters and logs
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

ROUNDS=${ROUNDS:-2}
QOS_LIST=${QOS_LIST:-"0 1"}
PUBLISHERS=${PUBLISHERS:-8}
LOADGEN_CORES=${LOADGEN_CORES:-2}
MQTT=${MQTT:-5}
START_RATE=${START_RATE:-50000}
MAX_RATE=${MAX_RATE:-8000000}
BISECT=${BISECT:-3}
PROBE_WARMUP=${PROBE_WARMUP:-1s}
PROBE_DURATION=${PROBE_DURATION:-4s}
FLOOD_FACTOR=${FLOOD_FACTOR:-3}
FLOOD_WARMUP=${FLOOD_WARMUP:-2s}
FLOOD_DURATION=${FLOOD_DURATION:-30s}
OUT_DIR=${OUT_DIR:-$(mktemp -d /tmp/vane-overload.XXXXXX)}
mkdir -p "$OUT_DIR"
[ -x "$LOADGEN" ] || cargo build --release -q -p vane-loadgen
BROKER_LIST=$(available_brokers)

SAMPLER_PID=""
cleanup() {
    if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""; fi
    stop_broker
}
trap cleanup EXIT

# fanin TAG QOS TOTAL_RATE WARMUP DURATION: one run against the running broker.
fanin() {
    local tag=$1 qos=$2 rate=$3 warm=$4 dur=$5
    "$LOADGEN" fan-in --port "$PORT" --mqtt "$MQTT" --publishers "$PUBLISHERS" --subscribers 1 \
        --topic 't/%i' --filter 't/#' --qos "$qos" --size 64 --total-rate "$rate" \
        --cores "$LOADGEN_CORES" --warmup "$warm" --duration "$dur" --drain 5s --json --quiet \
        >"$OUT_DIR/$tag.json" 2>"$OUT_DIR/$tag.txt" || true
}

# verdict TAG WARMUP: prints "pass DELIVERED -" or "fail DELIVERED WHY".
verdict() {
    python3 - "$OUT_DIR/$1.json" "$2" <<'PY'
import sys
sys.path.insert(0, "benches")
from bench_util import load, steady, seconds
r = load(sys.argv[1])
if r is None:
    print("fail 0 no-result"); sys.exit()
p, d = r["publish"], r["delivery"]
offered = p["target_rate"]
got = steady(r, seconds(sys.argv[2])) or 0.0
sched = p["sent"] + p["behind_schedule"]
why = []
if d["lost"]:
    why.append(f"lost={d['lost']}")
if got < 0.97 * offered:
    why.append("delivered<97%")
if p["behind_schedule"] > 0.01 * max(sched, 1):
    why.append("tool-behind")
if r["problems"] and not d["lost"]:
    why.append("problems")
print(("fail" if why else "pass") + f" {got:.0f} {','.join(why) or '-'}")
PY
}

# probe BROKER QOS ROUND RATE: fresh broker, one probe; prints the verdict.
probe() {
    local broker=$1 qos=$2 round=$3 rate=$4
    PORT=$(free_port)
    start_broker "$broker" "$PORT" "$OUT_DIR" || { echo "fail 0 no-broker"; return; }
    local tag="probe-$broker-q$qos-r$round-$rate"
    fanin "$tag" "$qos" "$rate" "$PROBE_WARMUP" "$PROBE_DURATION"
    stop_broker
    local v; v=$(verdict "$tag" "$PROBE_WARMUP")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$broker" "$qos" "$round" "$rate" "$v" "$(loadavg)" >>"$OUT_DIR/probes.tsv"
    say "probe $broker QoS $qos at $rate msg/s: $v"
    echo "$v"
}

# unloaded BROKER QOS ROUND: prints "RATE DELIVERED" of the highest passing probe.
unloaded() {
    local broker=$1 qos=$2 round=$3 rate=$START_RATE lo=0 lo_got=0 hi=0 v
    while :; do
        v=$(probe "$broker" "$qos" "$round" "$rate")
        if [ "${v%% *}" = pass ]; then
            lo=$rate; lo_got=$(echo "$v" | cut -d' ' -f2)
            [ "$hi" -gt 0 ] && break
            [ "$rate" -ge "$MAX_RATE" ] && break
            rate=$((rate * 2))
        else
            hi=$rate
            [ "$lo" -gt 0 ] && break
            rate=$((rate / 2))
            [ "$rate" -lt 1000 ] && break
        fi
    done
    if [ "$lo" -gt 0 ] && [ "$hi" -gt 0 ]; then
        for _ in $(seq 1 "$BISECT"); do
            rate=$(python3 -c "print(int(($lo*$hi)**0.5))")
            v=$(probe "$broker" "$qos" "$round" "$rate")
            if [ "${v%% *}" = pass ]; then lo=$rate; lo_got=$(echo "$v" | cut -d' ' -f2); else hi=$rate; fi
        done
    fi
    echo "$lo $lo_got"
}

# REPORT_ONLY=1 with an earlier OUT_DIR prints the tables again without running.
if [ "${REPORT_ONLY:-0}" != 1 ]; then
meta_start
: >"$OUT_DIR/probes.tsv"
: >"$OUT_DIR/floods.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for qos in $QOS_LIST; do
        # shellcheck disable=SC2086
        for broker in $(round_order "$round" $BROKER_LIST); do
            read -r u_rate u_got <<<"$(unloaded "$broker" "$qos" "$round")"
            if [ "$u_rate" -eq 0 ]; then
                say "$broker QoS $qos: no probe passed; no flood"
                printf '%s\t%s\t%s\t0\t0\t0\t\t\t\t\n' "$broker" "$qos" "$round" >>"$OUT_DIR/floods.tsv"
                continue
            fi
            # U: what it delivered at that rate, but no more than was offered
            # (a probe's measured seconds can include catching up).
            flood=$(python3 -c "print(int(min($u_got, $u_rate) * $FLOOD_FACTOR))")
            PORT=$(free_port)
            start_broker "$broker" "$PORT" "$OUT_DIR" || continue
            tag="flood-$broker-q$qos-r$round"
            rss0=$(rss_kib "$BROKER_PID")
            (
                while :; do
                    printf '%s %s\n' "$(date +%s.%N)" "$(rss_kib "$BROKER_PID")"
                    sleep 0.5
                done
            ) >"$OUT_DIR/$tag.rss" &
            SAMPLER_PID=$!
            load0=$(loadavg)
            t0=$(cpu_ticks "$BROKER_PID")
            say "round $round: $broker QoS $qos flood at $flood msg/s (unloaded $u_got delivered at $u_rate offered; load $load0)"
            fanin "$tag" "$qos" "$flood" "$FLOOD_WARMUP" "$FLOOD_DURATION"
            t1=$(cpu_ticks "$BROKER_PID")
            ctr=$(broker_counters "$broker" "$PORT")
            hwm=$(hwm_kib "$BROKER_PID")
            kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
            stop_broker
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$broker" "$qos" "$round" "$u_rate" "$u_got" "$flood" \
                "$rss0" "$hwm" "$((t1 - t0))" "$ctr" "$load0" >>"$OUT_DIR/floods.tsv"
        done
    done
done
meta_end
fi

versions=""
for b in $BROKER_LIST; do versions="$versions$(broker_version "$b");"; done
report_args "$FLOOD_WARMUP" "$FLOOD_DURATION" "$FLOOD_FACTOR" "$PUBLISHERS" "$LOADGEN_CORES" "$MQTT" "$(getconf CLK_TCK)" \
    "$versions" "$PROBE_WARMUP" "$PROBE_DURATION"
python3 - "$OUT_DIR" "${REPORT_ARGS[@]}" <<'PY'
import sys
sys.path.insert(0, "benches")
from bench_util import load, steady, seconds, fmt_rate, median, header
out, fw, fd, factor, pubs, lcores, mqtt, tck, versions, pw, pd = sys.argv[1:]
NAMES = {"vane": "Vane", "mosquitto": "Mosquitto", "rumqttd": "rumqttd"}
print(header(out) + f" MQTT {mqtt}. fan-in: {pubs} publishers -> 1 subscriber on t/#, 64 B, open-loop (--total-rate), vane-loadgen --cores {lcores}, "
      f"brokers unpinned. Probes {pw} + {pd}; flood {factor} x the unloaded delivered rate, {fw} warm-up + {fd} measured. "
      f"Brokers: {', '.join(v for v in versions.split(';') if v)}.")
print()
print("| QoS | broker | round | load avg before flood | unloaded: highest lossless offered → delivered/s | flood offered/s (tool sent/s) | flood delivered/s, mean (worst second) | ÷ unloaded | lost (loadgen) | broker's drop counters | RSS: before → peak (VmHWM), last sample | ≥ 0.90, no QoS>0 loss? |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|---|---|---|")
rows = []
for line in open(f"{out}/floods.tsv"):
    f = line.rstrip("\n").split("\t")
    broker, qos, rnd, u_rate, u_got, flood = f[:6]
    if int(u_rate) == 0:
        print(f"| {qos} | {NAMES[broker]} | {rnd} | | no probe passed | | | | | | | |")
        continue
    rss0, hwm, ticks, ctr, load0 = f[6:11]
    r = load(f"{out}/flood-{broker}-q{qos}-r{rnd}.json")
    if r is None:
        print(f"| {qos} | {NAMES[broker]} | {rnd} | {load0} | {int(u_rate):,} → {float(u_got):,.0f} | {int(flood):,} | (no result) | | | {ctr} | | |")
        continue
    got = steady(r, seconds(fw))
    ticks_run = [t for t in r["timeline"] if t["phase"] == "running"][int(seconds(fw)) + 1:]
    worst = min((t["received_per_s"] for t in ticks_run), default=None)
    sent = steady(r, seconds(fw), "sent_per_s")
    unloaded = min(float(u_got), float(u_rate))
    ratio = got / unloaded if got is not None and unloaded else None
    samples = []
    try:
        samples = [int(l.split()[1]) for l in open(f"{out}/flood-{broker}-q{qos}-r{rnd}.rss") if len(l.split()) == 2 and l.split()[1].isdigit()]
    except OSError:
        pass
    last = samples[-1] if samples else 0
    lost = r["delivery"]["lost"] or 0
    ok = ratio is not None and ratio >= 0.90 and (qos == "0" or lost == 0)
    rows.append((qos, broker, ratio, lost))
    print(f"| {qos} | {NAMES[broker]} | {rnd} | {load0} | {int(u_rate):,} → {float(u_got):,.0f} | {int(flood):,} ({fmt_rate(sent)}) | "
          f"{fmt_rate(got)} ({fmt_rate(worst)}) | {ratio:.2f} | {lost:,} | {ctr} | "
          f"{int(rss0) / 1024:.1f} → {int(hwm or 0) / 1024:.1f} MiB, {last / 1024:.1f} MiB | {'yes' if ok else '**no**'} |")
print()
print("Medians over the rounds of the flood ÷ unloaded ratio:")
print()
for qos in sorted({r[0] for r in rows}):
    for b in ("vane", "mosquitto", "rumqttd"):
        xs = [r[2] for r in rows if r[0] == qos and r[1] == b and r[2] is not None]
        if xs:
            print(f"- QoS {qos}, {NAMES[b]}: {median(xs):.2f} (runs: {', '.join(f'{x:.2f}' for x in xs)})")
qos_loss = []
for line in open(f"{out}/probes.tsv"):
    broker, qos, rnd, rate, v, loadv = line.rstrip("\n").split("\t")
    if qos != "0" and "lost=" in v:
        qos_loss.append(f"{NAMES[broker]} round {rnd} at {int(rate):,} msg/s offered: {v.split()[2].split('lost=')[1].split(',')[0]} lost")
if qos_loss:
    print()
    print("Messages lost at QoS 1 or 2 in the probes (not overloaded by the flood's standard, still a loss): " + "; ".join(qos_loss) + ".")
print()
print("Probes (offered total msg/s → verdict (why it failed: lost=N messages lost, delivered<97% of offered, tool-behind: the loadgen sent under 99% of its schedule), delivered/s):")
print()
probes = {}
for line in open(f"{out}/probes.tsv"):
    broker, qos, rnd, rate, v, loadv = line.rstrip("\n").split("\t")
    verdict, got, why = v.split()
    why = "" if why == "-" else f" ({why})"
    probes.setdefault((qos, broker, rnd), []).append(f"{int(rate):,} → {verdict}{why} {float(got):,.0f}")
for (qos, broker, rnd), xs in probes.items():
    print(f"- QoS {qos}, {NAMES[broker]}, round {rnd}: " + "; ".join(xs))
notes = []
for line in open(f"{out}/floods.tsv"):
    broker, qos, rnd = line.split("\t")[:3]
    r = load(f"{out}/flood-{broker}-q{qos}-r{rnd}.json")
    if r and (r["problems"] or r["warnings"]):
        notes.append(f"- flood, QoS {qos}, {NAMES[broker]}, round {rnd}: " + "; ".join(r["problems"] + r["warnings"]))
if notes:
    print("\nWhat the loadgen reported for the floods:\n")
    print("\n".join(notes))
PY
say "raw JSON, RSS samples and logs in $OUT_DIR"
