//! The end-to-end scenario suite, written once and run against every
//! broker the tests know (`tests/mosquitto.rs`, `tests/vane.rs`): counts
//! must be exact whichever broker carries the messages.

/// Defines the scenario tests against the broker `$start()` returns.
#[macro_export]
macro_rules! scenario_tests {
    ($start:path) => {
        #[test]
        fn qos1_pairs_lose_nothing_and_published_equals_delivered() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "pairs",
                "--port",
                &port,
                "--publishers",
                "4",
                "--qos",
                "1",
                "--count",
                "200",
                "--rate",
                "1000",
                "--warmup",
                "0s",
                "--duration",
                "10s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.publish.sent, 800);
            assert_eq!(r.publish.acked, 800);
            assert_eq!(r.publish.unacked, 0);
            assert_eq!(r.delivery.expected, Some(800));
            assert_eq!(r.delivery.received, 800);
            assert_eq!(r.delivery.unique, 800);
            assert_eq!(r.delivery.lost, 0);
            assert_eq!(r.delivery.foreign, 0);
            for p in &r.per_publisher {
                assert_eq!(
                    (p.sent, p.acked, p.unique, p.lost),
                    (200, 200, 200, 0),
                    "{p:?}"
                );
            }
        }

        #[test]
        fn qos2_fan_out_has_no_loss_and_no_duplicates() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "fan-out",
                "--port",
                &port,
                "--subscribers",
                "3",
                "--qos",
                "2",
                "--count",
                "150",
                "--rate",
                "500",
                "--warmup",
                "0s",
                "--duration",
                "10s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.publish.sent, 150);
            assert_eq!(r.publish.acked, 150);
            assert_eq!(r.delivery.expected, Some(450));
            assert_eq!(r.delivery.received, 450);
            assert_eq!(r.delivery.duplicates, 0);
            assert_eq!(r.delivery.lost, 0);
            assert_eq!(r.publish.ack_latency.count, 150);
        }

        #[test]
        fn qos1_over_mqtt_3_1_1_fan_in() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "fan-in",
                "--port",
                &port,
                "--mqtt",
                "3.1.1",
                "--publishers",
                "5",
                "--qos",
                "1",
                "--count",
                "100",
                "--rate",
                "500",
                "--warmup",
                "0s",
                "--duration",
                "10s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.mqtt, "3.1.1");
            assert_eq!(r.publish.sent, 500);
            assert_eq!(r.delivery.received, 500);
            assert_eq!(r.delivery.lost, 0);
        }

        #[test]
        fn latency_percentiles_are_ordered() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "fan-in",
                "--port",
                &port,
                "--publishers",
                "4",
                "--qos",
                "0",
                "--count",
                "250",
                "--rate",
                "500",
                "--warmup",
                "0s",
                "--duration",
                "10s",
            ]);
            let l = &r.delivery.latency;
            assert_eq!(l.count, r.delivery.received);
            assert!(l.count > 0);
            assert!(l.min_us <= l.p50_us, "{l:?}");
            assert!(l.p50_us <= l.p90_us && l.p90_us <= l.p99_us, "{l:?}");
            assert!(l.p99_us <= l.p999_us && l.p999_us <= l.max_us, "{l:?}");
            assert_eq!(r.publish.sent, 1000);
            // QoS 0 on loopback at this rate: nothing should go missing either.
            assert_eq!(r.delivery.received, 1000, "{:?}", r.warnings);
        }

        #[test]
        fn shared_group_delivers_each_message_once() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "shared",
                "--port",
                &port,
                "--publishers",
                "3",
                "--subscribers",
                "3",
                "--qos",
                "1",
                "--count",
                "100",
                "--rate",
                "500",
                "--warmup",
                "0s",
                "--duration",
                "10s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.delivery.expected, Some(300));
            assert_eq!(r.delivery.received, 300);
            assert_eq!(r.delivery.duplicates, 0);
        }

        #[test]
        fn retained_storm_delivers_every_topic_to_every_subscriber() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "retained-storm",
                "--port",
                &port,
                "--topics",
                "60",
                "--publishers",
                "3",
                "--subscribers",
                "4",
                "--duration",
                "10s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            let ret = r.retained.as_ref().expect("retained section");
            assert_eq!(ret.topics, 60);
            assert_eq!(ret.expected, 240);
            assert_eq!(ret.received, 240);
            assert_eq!(ret.complete_latency.count, 4);
        }

        #[test]
        fn slow_consumer_does_not_disturb_the_measured_subscribers() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "slow-consumer",
                "--port",
                &port,
                "--publishers",
                "2",
                "--subscribers",
                "2",
                "--qos",
                "1",
                "--count",
                "100",
                "--rate",
                "200",
                "--warmup",
                "0s",
                "--duration",
                "10s",
                "--drain",
                "2s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.delivery.received, 400);
            let slow = r.slow_consumer.as_ref().expect("slow section");
            assert!(slow.received > 0 && slow.received <= 200, "{slow:?}");
        }

        #[test]
        fn conn_holds_every_connection() {
            let b = $start();
            let port = b.port.to_string();
            let r = run(&[
                "conn",
                "--port",
                &port,
                "-n",
                "200",
                "--connect-rate",
                "2000",
                "--duration",
                "1s",
            ]);
            assert!(r.passed(), "{:?}", r.problems);
            assert_eq!(r.connections.attempted, 200);
            assert_eq!(r.connections.established, 200);
            assert_eq!(r.connections.failed, 0);
            assert_eq!(r.connections.connect_latency.count, 200);
            assert!(r.disconnects.is_empty());
        }
    };
}
