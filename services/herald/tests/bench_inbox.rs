//! `herald bench inbox` with a few streams on the real stack: it starts `herald api`, holds the
//! streams, delivers one message to each and prints every figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_test_support::{HeraldEnv, number_after};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn bench_inbox_delivers_to_every_stream_and_prints_every_figure() {
    let env = HeraldEnv::new(HERALD, "bench_inbox");
    let run = env.run(
        &["bench", "inbox", "--streams", "200", "--partitions", "3"],
        None,
    );
    run.assert_code(0);
    let connect = run.line("connect");
    assert!(connect.contains("200 streams"), "{connect}");
    assert!(
        number_after(connect, "with the streams (") > 0.0,
        "{connect}"
    );
    let fan_out = run.line("fan-out");
    assert!(fan_out.contains("200 of 200 streams"), "{fan_out}");
    assert!(
        number_after(fan_out, "p50") <= number_after(fan_out, "p99"),
        "{fan_out}"
    );
    assert!(number_after(run.line("baseline"), "consumer in") > 0.0);
    let api = run.line("api");
    assert!(number_after(api, "api") > 0.0, "{api}");
    let rss = number_after(api, "peak RSS");
    assert!(rss > 1.0 && rss < 4096.0, "{rss} MiB");
    std::fs::remove_dir_all(&env.dir).ok();
}
