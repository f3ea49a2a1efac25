"""Interoperability scenarios: real clients (paho-mqtt 2.x, mosquitto_pub and
mosquitto_sub) against a running Vane (see run.sh). Every count is exact:
after the expected messages a final marker is published on the same topic
by the same client at the same QoS, which the ordering guarantee (MQTT
3.1.1 §4.6, 5.0 §4.6) delivers last, so anything extra or missing shows."""

import shutil
import subprocess
import threading

import pytest

from conftest import HOST, PORT, TIMEOUT, Client, PacketTypes, props, uid

BOTH = ["3.1.1", "5.0"]


def payloads(messages):
    return [m.payload.decode() for m in messages]


@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", BOTH)
def test_publish_subscribe_exact_counts(clients, version, qos):
    topic = f"it/{uid()}/data"
    sub = clients(version)
    sub.connect()
    assert sub.subscribe(topic, qos) == [qos]
    pub = clients(version)
    pub.connect()
    sent = [f"m{i:03}" for i in range(100)]
    for payload in sent:
        pub.publish(topic, payload, qos)
    pub.publish(topic, "end", qos)
    got = sub.wait_payload("end")
    assert payloads(got) == sent + ["end"]
    assert {m.qos for m in got} == {qos}
    assert not any(m.retain for m in got)


@pytest.mark.parametrize("version", BOTH)
def test_retained_message_set_and_cleared(clients, version):
    topic = f"it/{uid()}/state"
    pub = clients(version)
    pub.connect()
    pub.publish(topic, "on", qos=1, retain=True)

    late = clients(version)
    late.connect()
    late.subscribe(topic, 1)
    [first] = late.wait_messages(1, "the retained message")
    assert (first.payload, first.retain) == (b"on", True)
    pub.publish(topic, "live", qos=1)
    got = late.wait_payload("live")
    assert [(m.payload, m.retain) for m in got] == [(b"on", True), (b"live", False)]

    # An empty retained payload clears it ([MQTT-3.3.1-10]).
    pub.publish(topic, b"", qos=1, retain=True)
    later = clients(version)
    later.connect()
    later.subscribe(topic, 1)
    pub.publish(topic, "after", qos=1)
    got = later.wait_payload("after")
    assert payloads(got) == ["after"], "nothing retained is delivered before it"


@pytest.mark.parametrize("version", BOTH)
def test_will_published_on_abrupt_disconnect_only(clients, version):
    topic = f"it/{uid()}/will"
    watcher = clients(version)
    watcher.connect()
    watcher.subscribe(topic, 1)

    # A normal DISCONNECT discards the will ([MQTT-3.1.2-10]).
    polite = clients(version, will={"topic": topic, "payload": "polite", "qos": 1})
    polite.connect()
    polite.disconnect()
    # A connection closed without DISCONNECT publishes it ([MQTT-3.1.2-8]).
    crashed = clients(version, will={"topic": topic, "payload": "crashed", "qos": 1})
    crashed.connect()
    crashed.drop()
    watcher.wait_payload("crashed")

    marker = clients(version)
    marker.connect()
    marker.publish(topic, "end", qos=1)
    got = watcher.wait_payload("end")
    assert payloads(got) == ["crashed", "end"]
    assert got[0].qos == 1


@pytest.mark.parametrize("version", BOTH)
def test_persistent_session_queues_while_offline(clients, version):
    client_id = uid("ps")
    topic = f"it/{client_id}/queue"
    persistent = {}
    if version == "5.0":
        persistent = {"properties": props(PacketTypes.CONNECT, SessionExpiryInterval=300)}

    sub = clients(version, client_id=client_id, clean=False)
    sub.connect(**persistent)
    assert sub.subscribe(topic, 1) == [1]
    sub.disconnect()

    pub = clients(version)
    pub.connect()
    sent = [f"q{i:02}" for i in range(20)]
    for payload in sent:
        pub.publish(topic, payload, qos=1)

    back = clients(version, client_id=client_id, clean=False)
    flags, _, _ = back.connect(**persistent)
    assert flags.session_present
    back.wait_messages(len(sent), "queued messages")
    pub.publish(topic, "end", qos=1)
    got = back.wait_payload("end")
    assert payloads(got) == sent + ["end"]
    back.disconnect()

    # Clean up: a clean connection ends the session.
    gone = clients(version, client_id=client_id, clean=True)
    flags, _, _ = gone.connect()
    assert not flags.session_present
    gone.disconnect()


def test_v5_request_response_properties_round_trip(clients):
    base = f"it/{uid()}"
    requester = clients("5.0")
    requester.connect()
    requester.subscribe(f"{base}/response", 1)
    responder = clients("5.0")
    responder.connect()
    responder.subscribe(f"{base}/request", 1)

    user = [("a", "1"), ("b", "2"), ("a", "3")]
    request = props(
        PacketTypes.PUBLISH,
        ResponseTopic=f"{base}/response",
        CorrelationData=b"\x00\x01corr",
        UserProperty=user,
        ContentType="text/plain",
        PayloadFormatIndicator=1,
    )
    requester.publish(f"{base}/request", "ping", qos=1, properties=request)
    [got] = responder.wait_messages(1, "the request")
    p = got.properties
    assert p.ResponseTopic == f"{base}/response"
    assert p.CorrelationData == b"\x00\x01corr"
    # [MQTT-3.3.2-18]: user properties unchanged, in order.
    assert p.UserProperty == user
    assert p.ContentType == "text/plain"
    assert p.PayloadFormatIndicator == 1

    reply = props(
        PacketTypes.PUBLISH,
        CorrelationData=p.CorrelationData,
        UserProperty=[("status", "ok")],
    )
    responder.publish(p.ResponseTopic, "pong", qos=1, properties=reply)
    [answer] = requester.wait_messages(1, "the response")
    assert answer.payload == b"pong"
    assert answer.properties.CorrelationData == b"\x00\x01corr"
    assert answer.properties.UserProperty == [("status", "ok")]


@pytest.mark.parametrize("version", BOTH)
def test_shared_subscription_delivers_each_message_once(clients, version):
    topic = f"it/{uid()}/work"
    shared = f"$share/{uid('g')}/{topic}"
    members = [clients(version), clients(version)]
    for member in members:
        member.connect()
        assert member.subscribe(shared, 1) == [1]
    pub = clients(version)
    pub.connect()
    sent = [f"job{i:02}" for i in range(40)]
    for payload in sent:
        pub.publish(topic, payload, qos=1)
    pub.publish(topic, "end", qos=1)

    def total():
        return sum(len(m.messages) for m in members)

    members[0].wait(lambda: total() >= len(sent) + 1, "every shared message")
    got = sorted(p for m in members for p in payloads(m.messages))
    assert got == sorted(sent + ["end"]), "each message exactly once across the group"
    assert all(m.messages for m in members), "both members get a share"


def test_v5_topic_aliases_both_ways(clients):
    topic = f"it/{uid()}/alias"
    plain = clients("5.0")
    plain.connect()
    plain.subscribe(topic, 1)
    aliasing = clients("5.0")
    aliasing.connect(properties=props(PacketTypes.CONNECT, TopicAliasMaximum=4))
    aliasing.subscribe(topic, 1)

    pub = clients("5.0")
    _, _, connack = pub.connect()
    assert connack.TopicAliasMaximum >= 1
    # The first PUBLISH sets alias 1 with the topic; the others use the
    # alias alone (empty topic name).
    pub.publish(topic, "a0", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", "a1", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", "a2", qos=0, properties=props(PacketTypes.PUBLISH, TopicAlias=1))
    pub.publish("", "end", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=1))

    got = plain.wait_payload("end")
    assert [(m.topic, m.payload) for m in got] == [
        (topic, b"a0"),
        (topic, b"a1"),
        (topic, b"a2"),
        (topic, b"end"),
    ]
    assert not any(hasattr(m.properties, "TopicAlias") for m in got)

    # A client with a Topic Alias Maximum gets the name once, then the
    # alias alone (paho leaves the alias to the application).
    got = aliasing.wait_payload("end")
    assert [m.payload for m in got] == [b"a0", b"a1", b"a2", b"end"]
    alias = got[0].properties.TopicAlias
    assert 1 <= alias <= 4 and got[0].topic == topic
    assert [(m.topic, m.properties.TopicAlias) for m in got[1:]] == [("", alias)] * 3


@pytest.mark.parametrize("version", BOTH)
def test_refused_subscription_gets_0x80(clients, version):
    client = clients(version)
    client.connect()
    topic = f"it/{uid()}/ok"
    assert client.subscribe("test/nosubscribe", 1) == [0x80]
    assert client.subscribe(topic, 1) == [1]


def test_mqtt_3_1_client(clients):
    topic = f"it/{uid()}/v31"
    sub = clients("3.1", client_id=uid("s31"))
    sub.connect()
    assert sub.subscribe(topic, 2) == [2]
    pub = clients("3.1", client_id=uid("p31"))
    pub.connect()
    pub.publish(topic, "one", qos=2)
    # The marker at the same QoS: paho hands a QoS 2 message over on PUBREL,
    # so a QoS 1 marker could overtake it in the client.
    pub.publish(topic, "end", qos=2)
    assert payloads(sub.wait_payload("end")) == ["one", "end"]


# mosquitto_pub / mosquitto_sub

needs_mosquitto = pytest.mark.skipif(
    not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")),
    reason="mosquitto_pub/mosquitto_sub not installed (Debian package mosquitto-clients)",
)


class MosquittoSub:
    """mosquitto_sub -d in the background: stdout is read on a thread, so
    the SUBACK line can be awaited before anything is published."""

    def __init__(self, *args):
        # stdbuf: line-buffered stdout, so each debug line arrives when printed.
        line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        self.proc = subprocess.Popen(
            [*line_buffered, "mosquitto_sub", "-h", HOST, "-p", str(PORT), "-d", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self.subscribed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if "received SUBACK" in line:
                self.subscribed.set()

    def wait_subscribed(self):
        assert self.subscribed.wait(TIMEOUT), f"no SUBACK: {self.lines}"

    def finish(self):
        try:
            rc = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"mosquitto_sub did not exit: {self.lines}")
        self.reader.join(TIMEOUT)
        return rc

    def payloads(self, prefix):
        return [line for line in self.lines if line.startswith(prefix)]


def mosquitto_pub(*args, input=None):
    return subprocess.run(
        ["mosquitto_pub", "-h", HOST, "-p", str(PORT), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@needs_mosquitto
@pytest.mark.parametrize("qos", [0, 1, 2])
@pytest.mark.parametrize("version", ["31", "311", "5"])
def test_mosquitto_sub_count_with_pub_lines(version, qos):
    topic = f"it/{uid()}/lines"
    count = 50
    lines = [f"line-{i:03}" for i in range(count)]
    sub = MosquittoSub("-V", version, "-q", str(qos), "-t", topic, "-C", str(count))
    try:
        sub.wait_subscribed()
        done = mosquitto_pub("-V", version, "-q", str(qos), "-t", topic, "-l", input="\n".join(lines) + "\n")
        assert done.returncode == 0, done.stdout + done.stderr
        assert sub.finish() == 0, sub.lines
    finally:
        if sub.proc.poll() is None:
            sub.proc.kill()
            sub.proc.wait()
    # -C N exits after exactly N messages: all of them, in order.
    assert sub.payloads("line-") == lines


@needs_mosquitto
def test_mosquitto_pub_mqtt_3_1_to_paho(clients):
    topic = f"it/{uid()}/from31"
    sub = clients("3.1.1")
    sub.connect()
    sub.subscribe(topic, 1)
    for qos in (0, 1, 2):
        done = mosquitto_pub("-V", "31", "-q", str(qos), "-t", topic, "-m", f"v31-q{qos}")
        assert done.returncode == 0, done.stdout + done.stderr
    got = sub.wait_messages(3)
    # Three connections, one after another: no order between them is promised.
    assert sorted((m.payload.decode(), m.qos) for m in got) == [("v31-q0", 0), ("v31-q1", 1), ("v31-q2", 1)]


@needs_mosquitto
def test_mosquitto_will_on_kill(clients):
    topic = f"it/{uid()}/mwill"
    watcher = clients("5.0")
    watcher.connect()
    watcher.subscribe(topic, 1)
    sub = MosquittoSub(
        "-V", "311", "-t", f"{topic}/ignored", "--will-topic", topic, "--will-payload", "killed", "--will-qos", "1"
    )
    try:
        sub.wait_subscribed()
    finally:
        sub.proc.kill()
        sub.proc.wait()
    got = watcher.wait_payload("killed")
    assert payloads(got) == ["killed"]
