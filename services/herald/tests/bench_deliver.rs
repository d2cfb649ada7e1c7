//! `herald bench deliver` with small counts on the real stack: it runs the baseline, the worker
//! as a child process and the steady phase, and prints every figure, each one measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_test_support::{HeraldEnv, number_after};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn bench_deliver_prints_every_figure() {
    let env = HeraldEnv::new(HERALD, "bench_deliver");
    let run = env.run(
        &[
            "bench",
            "deliver",
            "--channel",
            "webhook",
            "--dispatches",
            "1000",
            "--recipients",
            "200",
            "--partitions",
            "3",
            "--steady-rate",
            "100",
            "--steady-seconds",
            "2",
        ],
        None,
    );
    run.assert_code(0);
    assert!(number_after(run.line("baseline (consume"), "retry):") > 0.0);
    assert!(number_after(run.line("worker (herald deliver"), "process):") > 0.0);
    assert!(number_after(run.line("worker / baseline"), "baseline:") > 0.0);

    // Costs per delivery, counted from the worker's readiness on.
    let cpu = run.line("CPU µs per delivery");
    assert!(number_after(cpu, "herald") > 0.0, "{cpu}");
    assert!(number_after(cpu, "whole machine") > 0.0, "{cpu}");
    let per_delivery = run.line("per delivery:");
    // The send ledger is written for every delivery; and more than a handful of allocations.
    let statements = number_after(per_delivery, "per delivery:");
    assert!((0.01..20.0).contains(&statements), "{per_delivery}");
    assert!(
        number_after(per_delivery, "statements,") > 10.0,
        "{per_delivery}"
    );

    // Every steady-phase dispatch reached the sink, p50 <= p99.
    let steady = run.line("steady 100 dispatches/s for 2 s");
    assert!(steady.contains("(200 of 200 delivered)"), "{steady}");
    assert!(
        number_after(steady, "p50") <= number_after(steady, "p99"),
        "{steady}"
    );

    let rss = number_after(run.line("worker peak RSS"), "RSS:");
    assert!(rss > 1.0 && rss < 4096.0, "{rss} MiB");
    std::fs::remove_dir_all(&env.dir).ok();
}
