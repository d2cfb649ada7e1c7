//! The chart's Grafana dashboards and Prometheus alerts, checked without Prometheus, Grafana or
//! Kubernetes: the PrometheusRule the chart renders passes `promtool check rules`, every
//! dashboard query parses as PromQL (promtool checks them too, as recording rules), and every
//! Herald metric a dashboard or an alert names is declared in metric_names.rs, so a renamed
//! metric cannot leave a panel or an alert silently empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use herald_test_support::chart::{assert_lint_refuses, helm_in_repo, render_chart};
use herald_test_support::{Run, promtool, repo_root, run, test_dir};
use serde_yaml::Value;

const ALERTS: [&str; 4] = [
    "HeraldConsumerLagGrowing",
    "HeraldDeadLetterRateHigh",
    "HeraldCircuitBreakerOpen",
    "HeraldDeliverySuccessRateLow",
];

/// The chart with dashboards and alerts on.
fn monitoring_manifests() -> Vec<Value> {
    render_chart(
        None,
        &["dashboards.enabled=true", "prometheusRule.enabled=true"],
    )
}

fn prometheus_rule(manifests: &[Value]) -> &Value {
    let rules: Vec<&Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "PrometheusRule")
        .collect();
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    assert_eq!(rules[0]["apiVersion"], "monitoring.coreos.com/v1");
    rules[0]
}

/// Each dashboard ConfigMap's name and its dashboards (parsed JSON).
fn dashboards(manifests: &[Value]) -> Vec<(String, serde_json::Value)> {
    manifests
        .iter()
        .filter(|m| {
            m["kind"] == "ConfigMap" && !m["metadata"]["labels"]["grafana_dashboard"].is_null()
        })
        .flat_map(|m| {
            let name = m["metadata"]["name"].as_str().unwrap().to_owned();
            m["data"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(move |(key, json)| {
                    let key = key.as_str().unwrap();
                    assert!(key.ends_with(".json"), "{name}: {key}");
                    let dashboard = serde_json::from_str(json.as_str().unwrap())
                        .unwrap_or_else(|e| panic!("{name}/{key} is not JSON: {e}"));
                    (format!("{name}/{key}"), dashboard)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every PromQL expression of a dashboard: the panels' queries (rows' nested panels too).
fn panel_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_owned());
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The template variables' queries (`label_values(metric{...}, label)`), which name metrics
/// but are Grafana's syntax, not PromQL.
fn variable_queries(dashboard: &serde_json::Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| v["definition"].as_str().map(str::to_owned))
        .collect()
}

/// A dashboard query as Prometheus would get it: Grafana's variables replaced by what they
/// stand for (a range for the interval ones, a match-all regex for the others).
fn as_promql(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "6h");
    while let Some(start) = out.find('$') {
        let rest = &out[start + 1..];
        let (name_len, skip) = if let Some(braced) = rest.strip_prefix('{') {
            (braced.find('}').unwrap(), 2)
        } else {
            (
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len()),
                0,
            )
        };
        // `$1`, `$2` in label_replace are Prometheus's own, not Grafana variables.
        if rest[..name_len.max(1)]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        {
            out.replace_range(start..start + 1, "\u{0}");
            continue;
        }
        out.replace_range(start..start + 1 + name_len + skip, ".*");
    }
    out.replace('\u{0}', "$")
}

/// The metric names declared in metric_names.rs.
fn declared_metrics() -> BTreeSet<String> {
    let source =
        std::fs::read_to_string(repo_root().join("services/herald-contracts/src/metric_names.rs"))
            .unwrap();
    let names: BTreeSet<String> = source
        .lines()
        .filter(|line| line.starts_with("pub const"))
        .filter_map(|line| line.split('"').nth(1))
        .map(str::to_owned)
        .collect();
    assert!(names.len() > 20, "{names:?}");
    names
}

/// The `herald_*` metric names an expression mentions (whole identifiers only).
fn herald_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("herald_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        if !before.is_some_and(is_ident) {
            names.insert(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// Whether `name` is a declared metric or a series Prometheus derives from one: a histogram's
/// or summary's `_bucket`, `_sum` and `_count`. (Counters are declared with their `_total`.)
fn is_declared(name: &str, declared: &BTreeSet<String>) -> bool {
    declared.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| !base.ends_with("_total") && declared.contains(base))
        })
}

/// `promtool <args> <file>`, `contents` written as YAML to `file` in the test's directory.
fn promtool_on(args: &[&str], file: &str, contents: &impl serde::Serialize) -> (PathBuf, Run) {
    let path = test_dir("dashboards").join(file);
    std::fs::write(&path, serde_yaml::to_string(contents).unwrap()).unwrap();
    let mut command = Command::new(promtool());
    command.args(args).arg(&path);
    (path.clone(), run(command, None))
}

/// `promtool <args> <file>` passes on `contents` written to `file`.
fn promtool_passes(args: &[&str], file: &str, contents: &impl serde::Serialize) {
    let (path, output) = promtool_on(args, file, contents);
    assert_eq!(
        output.code,
        0,
        "promtool {args:?} {}:\n{}{}\n{}",
        path.display(),
        output.stdout,
        output.stderr,
        std::fs::read_to_string(&path).unwrap()
    );
}

#[test]
fn the_alert_rules_pass_promtool() {
    let manifests = monitoring_manifests();
    let rule = prometheus_rule(&manifests);
    let spec = &rule["spec"];
    promtool_passes(&["check", "rules"], "alerts.yaml", spec);
    let alerts: BTreeSet<&str> = spec["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    assert_eq!(alerts, ALERTS.into_iter().collect());

    // promtool refuses what is wrong: a rule file with a broken expression fails.
    let broken: Value = serde_yaml::from_str(
        "groups: [{name: broken, rules: [{alert: Broken, expr: 'sum(rate(herald_x[5m])'}]}]",
    )
    .unwrap();
    let (_, output) = promtool_on(&["check", "rules"], "broken.yaml", &broken);
    assert_ne!(output.code, 0, "{}", output.stdout);
}

/// The alerts fire on the series they are about and stay quiet otherwise, per `promtool test
/// rules` on synthetic series (one sample a minute) with the chart's default thresholds.
/// Annotations are left out here: `check rules` above checks their templates.
#[test]
fn the_alerts_fire_when_they_should_and_only_then() {
    let manifests = monitoring_manifests();
    let mut spec = prometheus_rule(&manifests)["spec"].clone();
    for group in spec["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            rule.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    let (rules, output) = promtool_on(&["check", "rules"], "alerts_bare.yaml", &spec);
    assert_eq!(output.code, 0, "{}{}", output.stdout, output.stderr);
    let ns = r#"namespace="default""#;
    let lag = |job: &str, topic: &str, values: &str| {
        serde_json::json!({
            "series": format!(r#"herald_consumer_lag_records{{{ns},job="{job}",topic="{topic}",partition="0"}}"#),
            "values": values,
        })
    };
    let statuses = |channel: &str, status: &str, values: &str| {
        serde_json::json!({
            "series": format!(r#"herald_track_statuses_total{{{ns},tenant="acme",category="c",channel="{channel}",status="{status}"}}"#),
            "values": values,
        })
    };
    let breaker = |provider: &str, values: String| {
        serde_json::json!({
            "series": format!(r#"herald_deliver_breaker_state{{{ns},pod="w-0",provider="{provider}"}}"#),
            "values": values,
        })
    };
    let input_series = vec![
        // Growing lag fires; the same growth on a retry tier, or a high but steady lag, not.
        lag("herald-router", "notifications.requested", "0+1000x60"),
        lag(
            "herald-deliver-email",
            "notifications.retry.email.1",
            "0+1000x60",
        ),
        lag("herald-track", "notifications.status", "50000x60"),
        // 1 record/s dead-lettered by the workers.
        serde_json::json!({
            "series": format!(r#"herald_deliver_dead_lettered_total{{{ns},class="retries_exhausted"}}"#),
            "values": "0+60x60",
        }),
        // smtp's breaker never closes; twilio's closes every third minute.
        breaker("smtp", "2x60".to_owned()),
        breaker("twilio", "2 2 0 ".repeat(20).trim_end().to_owned()),
        // email sends nothing and dead-letters 1/s; sms sends 1/s and dead-letters 1/min;
        // webhook dead-letters too little (0.01/s) to count.
        statuses("email", "dead_lettered", "0+60x60"),
        statuses("sms", "sent", "0+60x60"),
        statuses("sms", "dead_lettered", "0+1x60"),
        statuses("webhook", "dead_lettered", "0+0.6x60"),
    ];
    let expect = |alert: &str, labels: Vec<serde_json::Value>| {
        serde_json::json!({
            "eval_time": "45m",
            "alertname": alert,
            "exp_alerts": labels.into_iter().map(|l| serde_json::json!({"exp_labels": l})).collect::<Vec<_>>(),
        })
    };
    let tests = serde_json::json!({
        "rule_files": [rules.to_str().unwrap()],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series,
            "alert_rule_test": [
                expect("HeraldConsumerLagGrowing", vec![serde_json::json!({
                    "severity": "warning", "namespace": "default", "job": "herald-router",
                    "topic": "notifications.requested"})]),
                expect("HeraldDeadLetterRateHigh", vec![serde_json::json!({
                    "severity": "warning", "namespace": "default"})]),
                expect("HeraldCircuitBreakerOpen", vec![serde_json::json!({
                    "severity": "warning", "namespace": "default", "provider": "smtp"})]),
                expect("HeraldDeliverySuccessRateLow", vec![serde_json::json!({
                    "severity": "critical", "namespace": "default", "channel": "email"})]),
            ],
        }],
    });
    promtool_passes(&["test", "rules"], "alerts_test.yaml", &tests);
}

#[test]
fn the_dashboard_queries_parse_as_promql() {
    let manifests = monitoring_manifests();
    let boards = dashboards(&manifests);
    let names: BTreeSet<&str> = boards
        .iter()
        .map(|(_, d)| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["herald-delivery", "herald-pipeline"])
    );
    let groups: Vec<serde_json::Value> = boards
        .iter()
        .enumerate()
        .map(|(board, (name, dashboard))| {
            let exprs = panel_exprs(dashboard);
            assert!(exprs.len() >= 10, "{name}: {} queries", exprs.len());
            let rules: Vec<serde_json::Value> = exprs
                .iter()
                .enumerate()
                .map(|(i, expr)| {
                    // Distinct names: promtool refuses the same recorded series twice.
                    let record = format!("dashboard:board{board}_query{i}");
                    serde_json::json!({"record": record, "expr": as_promql(expr)})
                })
                .collect();
            serde_json::json!({"name": name, "rules": rules})
        })
        .collect();
    let groups = serde_json::json!({ "groups": groups });
    promtool_passes(&["check", "rules"], "dashboard-queries.yaml", &groups);
}

/// The first query of the panel titled `title` on the dashboard `uid`, as Prometheus gets it.
fn panel_query(boards: &[(String, serde_json::Value)], uid: &str, title: &str) -> String {
    let (_, dashboard) = boards.iter().find(|(_, d)| d["uid"] == uid).unwrap();
    let panel = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?} on {uid}"));
    as_promql(panel["targets"][0]["expr"].as_str().unwrap())
}

/// The queries that reshape labels give what their panels promise, per `promtool test rules`
/// on synthetic series: lag per role (joined from `herald_build_info`) and channel (from the
/// topic, prefixed or not, priority lane included), retry depth per channel and tier, and a
/// success rate that is 0 for a channel that only dead-letters and leaves out statuses that
/// name no channel.
#[test]
fn the_reshaping_panels_split_by_role_channel_and_tier() {
    let boards = dashboards(&monitoring_manifests());
    let series = |name: &str, labels: &str, values: &str| serde_json::json!({"series": format!(r#"{name}{{namespace="herald",{labels}}}"#), "values": values});
    let lag = "herald_consumer_lag_records";
    let statuses = "herald_track_statuses_total";
    let sample = |labels: &str, value: f64| serde_json::json!({"labels": labels, "value": value});
    let check = |expr: String, samples: Vec<serde_json::Value>| serde_json::json!({"expr": expr, "eval_time": "5m", "exp_samples": samples});
    let tests = serde_json::json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                series("herald_build_info", r#"instance="a:9464",role="deliver",version="0.1.0""#, "1x10"),
                series("herald_build_info", r#"instance="b:9464",role="router",version="0.1.0""#, "1x10"),
                series(lag, r#"instance="a:9464",topic="notifications.dispatch.email",partition="0""#, "10x10"),
                series(lag, r#"instance="a:9464",topic="notifications.dispatch.email.priority",partition="0""#, "5x10"),
                series(lag, r#"instance="a:9464",topic="notifications.retry.email.2",partition="1""#, "7x10"),
                series(lag, r#"instance="b:9464",topic="staging.notifications.requested",partition="3""#, "20x10"),
                series(statuses, r#"tenant="acme",category="c",channel="email",status="dead_lettered""#, "0+60x10"),
                series(statuses, r#"tenant="acme",category="c",channel="sms",status="sent""#, "0+180x10"),
                series(statuses, r#"tenant="acme",category="c",channel="sms",status="dead_lettered""#, "0+60x10"),
                series(statuses, r#"tenant="acme",category="unknown",channel="none",status="dead_lettered""#, "0+60x10"),
            ],
            "promql_expr_test": [
                check(
                    panel_query(&boards, "herald-pipeline", "Consumer lag by role and channel"),
                    vec![sample(r#"{role="deliver",channel="email"}"#, 22.0), sample(r#"{role="router"}"#, 20.0)],
                ),
                check(
                    panel_query(&boards, "herald-pipeline", "Retry-tier depth by channel and tier"),
                    vec![sample(r#"{channel="email",tier="2"}"#, 7.0)],
                ),
                check(
                    panel_query(&boards, "herald-delivery", "Success rate by channel"),
                    vec![sample(r#"{channel="email"}"#, 0.0), sample(r#"{channel="sms"}"#, 0.75)],
                ),
            ],
        }],
    });
    promtool_passes(&["test", "rules"], "panels_test.yaml", &tests);
}

#[test]
fn every_metric_a_dashboard_or_an_alert_names_is_declared() {
    let declared = declared_metrics();
    let manifests = monitoring_manifests();
    let mut named: Vec<(String, String)> = Vec::new();
    for (board, dashboard) in dashboards(&manifests) {
        for expr in panel_exprs(&dashboard)
            .into_iter()
            .chain(variable_queries(&dashboard))
        {
            named.extend(herald_names(&expr).into_iter().map(|n| (board.clone(), n)));
        }
    }
    let rule = prometheus_rule(&manifests);
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in group["rules"].as_sequence().unwrap() {
            let alert = r["alert"].as_str().unwrap().to_owned();
            for n in herald_names(r["expr"].as_str().unwrap()) {
                named.push((alert.clone(), n));
            }
        }
    }
    let undeclared: Vec<&(String, String)> = named
        .iter()
        .filter(|(_, n)| !is_declared(n, &declared))
        .collect();
    assert!(
        undeclared.is_empty(),
        "metrics not in metric_names.rs: {undeclared:?}"
    );
    // What the issue asks the dashboards and alerts to show is there.
    let used: BTreeSet<&str> = named.iter().map(|(_, n)| n.as_str()).collect();
    for needed in [
        "herald_track_statuses_total",
        "herald_track_end_to_end_seconds_bucket",
        "herald_consumer_lag_records",
        "herald_router_transactions_total",
        "herald_deliver_transactions_total",
        "herald_deliver_dead_lettered_total",
        "herald_deliver_breaker_state",
        "herald_deliver_retries_total",
    ] {
        assert!(
            used.contains(needed),
            "{needed} is on no dashboard or alert"
        );
    }
}

/// The name check itself: it finds whole names, sees through histogram suffixes, and
/// refuses a misspelled one.
#[test]
fn the_metric_name_check_tells_declared_from_misspelled() {
    let declared = declared_metrics();
    assert_eq!(
        herald_names(
            "sum by (le) (rate(herald_track_end_to_end_seconds_bucket{x=\"herald_no\"}[5m])) / notherald_x"
        ),
        BTreeSet::from([
            "herald_no".to_owned(),
            "herald_track_end_to_end_seconds_bucket".to_owned()
        ])
    );
    assert!(is_declared(
        "herald_track_end_to_end_seconds_bucket",
        &declared
    ));
    assert!(is_declared("herald_router_stage_seconds_count", &declared));
    assert!(is_declared("herald_track_statuses_total", &declared));
    assert!(!is_declared("herald_track_statuses_totl", &declared));
    assert!(!is_declared("herald_track_statuses_total_count", &declared));
    assert_eq!(
        as_promql(
            r#"label_replace(x{a=~"$tenant",b="${channel}"}[$__rate_interval], "c", "$2", "t", "(.)(.)")"#
        ),
        r#"label_replace(x{a=~".*",b=".*"}[5m], "c", "$2", "t", "(.)(.)")"#
    );
}

#[test]
fn dashboards_and_alerts_are_off_by_default_and_labelled_as_configured() {
    let defaults = render_chart(None, &[]);
    assert!(defaults.iter().all(|m| m["kind"] != "PrometheusRule"));
    assert!(dashboards(&defaults).is_empty());

    // A fraction from a values file: `--set` would pass it as a string, which the schema
    // refuses (`--set-json` works too).
    let values = test_dir("dashboards_values").join("values.yaml");
    std::fs::write(
        &values,
        "prometheusRule:\n  deliverySuccess:\n    threshold: 0.9\n",
    )
    .unwrap();
    let manifests = render_chart(
        Some(&values),
        &[
            "dashboards.enabled=true",
            "dashboards.label=my_dashboards",
            "dashboards.labelValue=herald",
            "dashboards.annotations.grafana_folder=Herald",
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=kube-prometheus",
            "prometheusRule.breakerOpen.enabled=false",
        ],
    );
    let maps: Vec<&Value> = manifests
        .iter()
        .filter(|m| {
            m["kind"] == "ConfigMap" && m["metadata"]["labels"]["my_dashboards"] == "herald"
        })
        .collect();
    assert_eq!(maps.len(), 2);
    assert!(
        maps.iter()
            .all(|m| m["metadata"]["annotations"]["grafana_folder"] == "Herald")
    );
    let rule = prometheus_rule(&manifests);
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let rules = rule["spec"]["groups"][0]["rules"].as_sequence().unwrap();
    assert!(
        rules
            .iter()
            .all(|r| r["alert"] != "HeraldCircuitBreakerOpen")
    );
    let success = rules
        .iter()
        .find(|r| r["alert"] == "HeraldDeliverySuccessRateLow")
        .unwrap();
    assert!(
        success["expr"].as_str().unwrap().contains(") < 0.9\n"),
        "{success:?}"
    );

    let lint = helm_in_repo(&[
        "lint",
        "--strict",
        "helm/herald",
        "--set",
        "dashboards.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
    ]);
    assert_eq!(lint.code, 0, "helm lint: {}{}", lint.stdout, lint.stderr);
}

/// The new values are closed like the others: a misspelled one fails `helm lint`.
#[test]
fn a_misspelled_monitoring_value_fails_lint() {
    for (set, named) in [
        ("dashboards.enabeld=true", "enabeld"),
        ("prometheusRule.consumerLag.treshold=5", "treshold"),
        (
            "prometheusRule.deliverySucess.threshold=0.9",
            "deliverySucess",
        ),
        ("prometheusRule.deadLetters.for=ten", "for"),
        ("prometheusRule.deliverySuccess.threshold=2", "threshold"),
    ] {
        assert_lint_refuses(set, named);
    }
}
