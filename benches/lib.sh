# Shared helpers for the broker-vs-peers benches (throughput_shared.sh,
# latency.sh, overload.sh). Source it from the repository root:
#   . benches/lib.sh
#
# Brokers (each started fresh, on loopback, on a free port):
#   vane       $VANE (default target/release/vane) with --cores $VANE_CORES,
#              --stats-listen on a free port, and --config $VANE_CONFIG when
#              that is set; VANE_ARGS adds options.
#   mosquitto  $MOSQUITTO (default: mosquitto on PATH or /usr/sbin) with
#              set_tcp_nodelay true (otherwise Nagle adds milliseconds), sys_interval 1,
#              persistence false, and its own defaults otherwise
#              (max_queued_messages 1000, max_inflight_messages 20);
#              MOSQUITTO_CONF adds lines.
#   rumqttd    $RUMQTTD (default: rumqttd on PATH, else
#              /tmp/rumqttd-inst/bin/rumqttd) with benches/rumqttd.toml, its
#              {PORT} replaced. Install: cargo install rumqttd --root DIR
#              (rumqttd 0.20.0; not with --locked, whose pinned metrics
#              crate does not build on current rustc), then RUMQTTD=DIR/bin/rumqttd.
# Every broker runs unpinned unless BROKER_TASKSET is set (a taskset CPU
# list), and at normal priority unless BROKER_NICE is set (a nice value).

VANE=${VANE:-target/release/vane}
LOADGEN=${LOADGEN:-target/release/vane-loadgen}
VANE_CORES=${VANE_CORES:-2}
VANE_ARGS=${VANE_ARGS:-}
VANE_CONFIG=${VANE_CONFIG:-}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
MOSQUITTO_CONF=${MOSQUITTO_CONF:-}
if [ -z "${RUMQTTD:-}" ]; then
    RUMQTTD=$(command -v rumqttd || true)
    [ -z "$RUMQTTD" ] && [ -x /tmp/rumqttd-inst/bin/rumqttd ] && RUMQTTD=/tmp/rumqttd-inst/bin/rumqttd
fi
BROKER_TASKSET=${BROKER_TASKSET:-}
BROKER_NICE=${BROKER_NICE:-}

say() { echo "$(basename "$0"): $*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 500); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    return 1
}
# User plus system CPU ticks of a whole process (all threads).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Peak and current resident memory (KiB) of a process.
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The peers this machine has, in the order given by BROKERS (default: vane,
# mosquitto, and rumqttd when installed).
available_brokers() {
    local want=${BROKERS:-"vane mosquitto rumqttd"} b out=""
    for b in $want; do
        case "$b" in
            vane) [ -x "$VANE" ] && out="$out vane" || say "skipping vane: $VANE is not executable" ;;
            mosquitto) [ -x "$MOSQUITTO" ] && out="$out mosquitto" || say "skipping mosquitto: not installed" ;;
            rumqttd) [ -n "$RUMQTTD" ] && [ -x "$RUMQTTD" ] && out="$out rumqttd" ||
                say "skipping rumqttd: not installed (cargo install rumqttd --root DIR; RUMQTTD=DIR/bin/rumqttd)" ;;
            *) say "unknown broker $b" ;;
        esac
    done
    echo $out
}

# broker_version NAME: one line naming the binary that runs.
broker_version() {
    case "$1" in
        vane) echo "vane $("$VANE" --version 2>/dev/null | awk '{print $2}') ($VANE, --cores $VANE_CORES${VANE_CONFIG:+, config $VANE_CONFIG}${VANE_ARGS:+ $VANE_ARGS})" ;;
        mosquitto) echo "$("$MOSQUITTO" -h 2>/dev/null | head -1)" ;;
        rumqttd) echo "rumqttd $("$RUMQTTD" --version 2>/dev/null | awk '{print $2}') ($RUMQTTD, benches/rumqttd.toml)" ;;
    esac
}

BROKER_PID=""
BROKER_STATS_PORT=""
# start_broker NAME PORT WORKDIR: sets BROKER_PID (and BROKER_STATS_PORT for vane).
start_broker() {
    local name=$1 port=$2 dir=$3
    local pin=()
    [ -n "$BROKER_NICE" ] && pin=(nice -n "$BROKER_NICE")
    [ -n "$BROKER_TASKSET" ] && pin+=(taskset -c "$BROKER_TASKSET")
    BROKER_STATS_PORT=""
    case "$name" in
        vane)
            BROKER_STATS_PORT=$(free_port)
            local cfg=()
            [ -n "$VANE_CONFIG" ] && cfg=(--config "$VANE_CONFIG")
            # shellcheck disable=SC2086
            "${pin[@]}" "$VANE" "${cfg[@]}" --listen "127.0.0.1:$port" --cores "$VANE_CORES" \
                --stats-listen "127.0.0.1:$BROKER_STATS_PORT" $VANE_ARGS >"$dir/vane.log" 2>&1 &
            ;;
        mosquitto)
            {
                # $SYS every second, for broker_counters.
                printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nsys_interval 1\n' "$port"
                [ -n "$MOSQUITTO_CONF" ] && printf '%b\n' "$MOSQUITTO_CONF"
            } >"$dir/mosquitto.conf"
            "${pin[@]}" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
            ;;
        rumqttd)
            sed "s/{PORT}/$port/" benches/rumqttd.toml >"$dir/rumqttd.toml"
            "${pin[@]}" "$RUMQTTD" -q -c "$dir/rumqttd.toml" >"$dir/rumqttd.log" 2>&1 &
            ;;
    esac
    BROKER_PID=$!
    if ! wait_port "$port"; then
        say "$name did not start listening on $port (see $dir/$name.log)"
        stop_broker
        return 1
    fi
}

stop_broker() {
    if [ -n "$BROKER_PID" ]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}

# One HTTP GET on loopback over bash's /dev/tcp; prints the body.
http_get() {
    local port=$1 path=$2
    exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' "$path" >&3
    sed '1,/^\r$/d' <&3
    exec 3<&-
}

# Order of the brokers in round R (1-based): rotated each round and
# reversed every other round, so none is always first or always after the
# same peer.
round_order() {
    local r=$1; shift
    python3 - "$r" "$@" <<'PY'
import sys
r, b = int(sys.argv[1]), sys.argv[2:]
k = (r - 1) // 2 % max(len(b), 1)
b = b[k:] + b[:k]
print(" ".join(b if r % 2 else b[::-1]))
PY
}

# meta_start / meta_end: what the report's header says about the run, kept
# in $OUT_DIR/meta.txt so that REPORT_ONLY=1 can print it again later.
meta_start() {
    local dirty=""
    git diff --quiet HEAD -- src loadgen 2>/dev/null || dirty=" (with uncommitted changes in src/ or loadgen/)"
    {
        echo "started=$(date -u +'%Y-%m-%d %H:%M')"
        echo "checkout=$(git rev-parse --short HEAD 2>/dev/null)$dirty"
        echo "vane_binary=$VANE, built $(date -u -r "$VANE" +'%Y-%m-%d %H:%M' 2>/dev/null) UTC"
        echo "load_start=$(loadavg)"
        echo "cpus=$(nproc)"
    } >"$OUT_DIR/meta.txt"
}
meta_end() {
    { echo "ended=$(date -u +'%Y-%m-%d %H:%M')"; echo "load_end=$(loadavg)"; } >>"$OUT_DIR/meta.txt"
}
# report_args ARGS...: saves the report's arguments at run time; with
# REPORT_ONLY=1, reads them back instead. Leaves them in REPORT_ARGS.
report_args() {
    if [ "${REPORT_ONLY:-0}" != 1 ]; then printf '%s\n' "$@" >"$OUT_DIR/report-args"; fi
    mapfile -t REPORT_ARGS <"$OUT_DIR/report-args"
}

# broker_counters NAME PORT: the running broker's own drop counters, one
# line of text (Vane: vane_messages_dropped_total by cause from the stats
# endpoint; Mosquitto: $SYS/broker/publish/messages/dropped; rumqttd: none).
broker_counters() {
    case "$1" in
        vane)
            http_get "$BROKER_STATS_PORT" /metrics 2>/dev/null | awk '
                /^vane_messages_dropped_total\{/ { match($0, /cause="[^"]*"/); c = substr($0, RSTART + 7, RLENGTH - 8); n[c] += $NF }
                /^vane_queued_messages\{/ { q += $NF }
                END { s = ""; for (c in n) if (n[c] > 0) s = s c "=" n[c] " "; if (s == "") s = "none "; print "dropped: " s "(queued now " q+0 ")" }' ;;
        mosquitto)
            local d
            d=$(timeout 5 mosquitto_sub -p "$2" -t '$SYS/broker/publish/messages/dropped' -C 1 -W 4 2>/dev/null || echo "?")
            echo "\$SYS/broker/publish/messages/dropped=$d" ;;
        *) echo "not read" ;;
    esac
}

# Busy CPU time of the whole machine so far, in ticks (all CPUs together):
# uptime times the CPU count less idle and iowait from /proc/stat. Idle time
# is accounted exactly (tickless idle); /proc/stat's user and system fields
# are sampled per tick and undercount short bursts, so they are not used.
sys_busy_ticks() {
    awk -v tck="$(getconf CLK_TCK)" -v n="$(nproc)" '
        FILENAME == "/proc/uptime" { up = $1 }
        FILENAME == "/proc/stat" && /^cpu / { idle = $5 + $6 }
        END { printf "%d\n", up * tck * n - idle }' /proc/uptime /proc/stat
}
# CPU pressure so far: microseconds in which some runnable task waited for a
# CPU (/proc/pressure/cpu "some" total; 0 where PSI is off).
cpu_pressure_us() { awk '/^some/ { sub("total=", "", $5); print $5 }' /proc/pressure/cpu 2>/dev/null || echo 0; }
# wait_quiet: when QUIET_PCT is set, waits (QUIET_WAIT seconds at most,
# default 300) until the machine's busy time over one second is under
# QUIET_PCT percent of one CPU, so that a run starts while nothing else is
# running (it may still be disturbed later: the reports give each run's
# "other CPU"). Called while no broker is running.
wait_quiet() {
    [ -z "${QUIET_PCT:-}" ] && return 0
    local waited=0 b0 b1 tck
    tck=$(getconf CLK_TCK)
    while [ "$waited" -lt "${QUIET_WAIT:-300}" ]; do
        b0=$(sys_busy_ticks); sleep 1; b1=$(sys_busy_ticks)
        [ $(((b1 - b0) * 100 / tck)) -lt "$QUIET_PCT" ] && return 0
        waited=$((waited + 1))
    done
    say "the machine was still busy after ${QUIET_WAIT:-300}s; running anyway"
}
