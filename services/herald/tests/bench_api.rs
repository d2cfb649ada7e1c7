//! `herald bench api` with small counts on the real stack: it starts `herald api`, runs every
//! phase and prints each figure, every request accepted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_test_support::{HeraldEnv, number_after};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn bench_api_prints_every_figure() {
    let env = HeraldEnv::new(HERALD, "bench_api");
    let run = env.run(
        &[
            "bench",
            "api",
            "--requests",
            "300",
            "--batches",
            "3",
            "--concurrency",
            "8",
            "--rate",
            "100",
            "--rate-seconds",
            "1",
            "--partitions",
            "3",
        ],
        None,
    );
    run.assert_code(0);
    let line = |prefix: &str| run.line(prefix);
    for prefix in [
        "baseline",
        "api singles:",
        "api batches",
        "api fixed rate",
        "api singles latency",
    ] {
        assert!(!line(prefix).contains("failed"), "{}", line(prefix));
    }
    assert!(number_after(line("baseline"), "):") > 0.0);
    assert!(number_after(line("api singles:"), "api singles:") > 0.0);
    assert!(
        number_after(line("api singles:"), ")") > 0.0,
        "ratio to the baseline"
    );
    assert!(number_after(line("api batches"), "requests/s,") > 0.0);
    let latency = line("api singles latency");
    assert!(number_after(latency, "p50") <= number_after(latency, "p99"));
    let fixed = line("api fixed rate");
    assert!(fixed.contains(": 100 requests"), "{fixed}");
    assert!(number_after(fixed, "answered at") > 0.0, "{fixed}");
    let rss = number_after(line("api peak RSS"), "(VmHWM):");
    assert!(rss > 1.0 && rss < 4096.0, "{rss} MiB");
    assert!(number_after(line("api CPU per notification"), "singles") > 0.0);
    std::fs::remove_dir_all(&env.dir).ok();
}
