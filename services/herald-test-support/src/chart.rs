//! The Helm chart, rendered by the `helm` that `dev/test` builds (`HERALD_TEST_HELM`).

use serde::Deserialize;
use serde_yaml::Value;
use std::path::Path;
use std::process::Command;

use crate::{Run, helm, repo_root, run};

/// `helm <args>` in the repository.
pub fn helm_in_repo(args: &[&str]) -> Run {
    let mut command = Command::new(helm());
    command.args(args).current_dir(repo_root());
    run(command, None)
}

/// The chart rendered with a values file (if any), then `--set` values, as one document per
/// manifest.
pub fn render_chart(values: Option<&Path>, set: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "herald", "helm/herald"];
    if let Some(file) = values {
        args.extend(["--values", file.to_str().unwrap()]);
    }
    for value in set {
        args.extend(["--set", value]);
    }
    let output = helm_in_repo(&args);
    assert_eq!(output.code, 0, "helm template: {}", output.stderr);
    serde_yaml::Deserializer::from_str(&output.stdout)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

/// `helm lint --strict` with `--set <set>` fails, naming `named` (the values schema refuses a
/// misspelled or mistyped value).
pub fn assert_lint_refuses(set: &str, named: &str) {
    let lint = helm_in_repo(&["lint", "--strict", "helm/herald", "--set", set]);
    let output = format!("{}{}", lint.stdout, lint.stderr);
    assert_ne!(lint.code, 0, "helm lint --set {set}: {output}");
    assert!(output.contains(named), "helm lint --set {set}: {output}");
}
