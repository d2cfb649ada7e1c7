//! `herald bench router` with small counts on the real stack: it runs the baseline, the router
//! as a child process and the steady phase, and prints every figure, each one measured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_test_support::{HeraldEnv, number_after};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

#[test]
fn bench_router_prints_every_figure() {
    let env = HeraldEnv::new(HERALD, "bench_router");
    let run = env.run(
        &[
            "bench",
            "router",
            "--users",
            "500",
            "--events",
            "2000",
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
    assert!(number_after(run.line("baseline"), "):") > 0.0);
    assert!(number_after(run.line("router (decode"), "emit):") > 0.0);
    assert!(number_after(run.line("router / baseline"), "baseline:") > 0.0);

    // Costs per event, counted from the router's readiness on.
    let cpu = run.line("CPU µs per event");
    assert!(number_after(cpu, "herald") > 0.0, "{cpu}");
    assert!(number_after(cpu, "whole machine") > 0.0, "{cpu}");
    let per_event = run.line("per event:");
    // At least a dedupe write per event, and more than a handful of allocations.
    let statements = number_after(per_event, "per event:");
    assert!((0.1..20.0).contains(&statements), "{per_event}");
    assert!(number_after(per_event, "statements,") > 10.0, "{per_event}");

    // Every steady-phase event's dispatch was seen committed, p50 <= p99.
    let steady = run.line("steady 100 events/s for 2 s");
    assert!(steady.contains("(200 of 200 dispatches seen)"), "{steady}");
    assert!(
        number_after(steady, "p50") <= number_after(steady, "p99"),
        "{steady}"
    );

    let rss = number_after(run.line("router peak RSS"), "RSS:");
    assert!(rss > 1.0 && rss < 4096.0, "{rss} MiB");
    std::fs::remove_dir_all(&env.dir).ok();
}
