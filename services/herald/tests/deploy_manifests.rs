//! What the deployment files ask of Herald, checked without Docker or Kubernetes: every Herald
//! service of docker-compose.yml and every Herald container the Helm chart renders runs a
//! real subcommand with real flags, its configuration (file plus `HERALD_*` environment)
//! passes `herald config check` (with `--channel` for a delivery worker, which builds the
//! provider), and the roles do not collide on ports or instance ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_test_support::{helm, repo_root, run, test_dir};
use serde::Deserialize;
use serde_yaml::Value;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// One Herald process as a deployment file describes it.
#[derive(Debug)]
struct HeraldProcess {
    /// Where it comes from, for failure messages.
    name: String,
    /// Its `herald` arguments, one invocation each (a setup step may chain several).
    invocations: Vec<Vec<String>>,
    /// Literal environment variables (those from secrets are left out).
    env: BTreeMap<String, String>,
    /// The configuration file it reads, on this machine.
    config: PathBuf,
}

impl HeraldProcess {
    /// Every invocation parses (`--help` after the arguments: clap still rejects an unknown
    /// subcommand or flag first) and the configuration it runs with passes `config check`.
    fn check(&self) {
        for args in &self.invocations {
            let output = self.herald(args.iter().map(String::as_str).chain(["--help"]));
            assert_eq!(
                output.code, 0,
                "{}: herald {args:?}: {}",
                self.name, output.stderr
            );
            let mut check = vec!["config", "check"];
            if let Some(channel) = channel_of(args) {
                check.extend(["--channel", channel]);
            }
            let output = self.herald(check);
            assert_eq!(
                output.code, 0,
                "{}: herald {args:?}: {}",
                self.name, output.stderr
            );
            assert!(
                output.stdout.starts_with("configuration ok"),
                "{}",
                output.stdout
            );
        }
    }

    fn herald<'a>(&self, args: impl IntoIterator<Item = &'a str>) -> herald_test_support::Run {
        let mut command = Command::new(HERALD);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .env("HERALD_CONFIG", &self.config)
            .args(args);
        run(command, None)
    }

    fn is_role(&self) -> bool {
        self.invocations
            .iter()
            .any(|args| matches!(args.first().map(String::as_str), Some("router" | "deliver")))
    }
}

fn channel_of(args: &[String]) -> Option<&str> {
    (args.first().map(String::as_str) == Some("deliver"))
        .then(|| {
            args.windows(2)
                .find(|w| w[0] == "--channel")
                .map(|w| w[1].as_str())
        })
        .flatten()
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        other => vec![scalar(other)],
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// `herald a b && herald c` (a shell line) or `[a, b]` (arguments to the `herald` entrypoint).
fn invocations(entrypoint: &[String], command: &[String]) -> Vec<Vec<String>> {
    let via_shell = entrypoint.first().is_some_and(|e| e.ends_with("/sh"));
    if !via_shell {
        return vec![command.to_vec()];
    }
    command
        .join(" ")
        .split("&&")
        .map(|step| {
            let mut words = step.split_whitespace().map(str::to_owned);
            assert_eq!(words.next().as_deref(), Some("herald"), "{step}");
            words.collect()
        })
        .collect()
}

/// `${NAME:-default}` as compose resolves it with NAME unset.
fn compose_default(value: &str) -> String {
    match value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .and_then(|v| v.split_once(":-"))
    {
        Some((_, default)) => default.to_owned(),
        None => value.to_owned(),
    }
}

/// `COPY <sources...> <dir>/` lines of the Dockerfile's final stage: image path → repo path.
fn image_files() -> BTreeMap<String, PathBuf> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut files = BTreeMap::new();
    for line in dockerfile.lines() {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from")) {
            continue;
        }
        let (dir, sources) = words.split_last().unwrap();
        // Named files only (not the build stage's `COPY . .`).
        for source in sources {
            if let Some(name) = Path::new(source).file_name().and_then(|n| n.to_str()) {
                files.insert(format!("{dir}{name}"), repo_root().join(source));
            }
        }
    }
    files
}

fn compose_processes() -> Vec<HeraldProcess> {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    let mut doc: Value = serde_yaml::from_str(&text).unwrap();
    doc.apply_merge().unwrap();
    let image_files = image_files();
    let mut processes = Vec::new();
    for (name, service) in doc["services"].as_mapping().unwrap() {
        let name = scalar(name);
        if service["build"].as_str() != Some(".") {
            continue;
        }
        let mut env: BTreeMap<String, String> = service["environment"]
            .as_mapping()
            .unwrap()
            .iter()
            .map(|(k, v)| (scalar(k), compose_default(&scalar(v))))
            .collect();
        // The configuration file: the volume mounted where HERALD_CONFIG points.
        let in_container = env.remove("HERALD_CONFIG").expect("HERALD_CONFIG");
        let config = strings(&service["volumes"])
            .iter()
            .find_map(|volume| {
                let mut parts = volume.split(':');
                let (host, target) = (parts.next()?, parts.next()?);
                (target == in_container).then(|| repo_root().join(host))
            })
            .unwrap_or_else(|| panic!("{name}: nothing mounted at {in_container}"));
        let invocations = invocations(
            &strings(&service["entrypoint"]),
            &strings(&service["command"]),
        );
        // Files the commands read from the image are in it.
        for arg in invocations.iter().flatten() {
            if arg.starts_with("/usr/share/herald/") {
                let source = image_files
                    .get(arg)
                    .unwrap_or_else(|| panic!("{name}: {arg} is not copied into the image"));
                assert!(source.is_file(), "{}", source.display());
            }
        }
        processes.push(HeraldProcess {
            name,
            invocations,
            env,
            config,
        });
    }
    processes
}

#[test]
fn every_herald_service_in_docker_compose_runs_with_a_valid_configuration() {
    let processes = compose_processes();
    for process in &processes {
        process.check();
    }
    let roles: Vec<&HeraldProcess> = processes.iter().filter(|p| p.is_role()).collect();
    let mut commands: Vec<String> = roles.iter().map(|p| p.invocations[0].join(" ")).collect();
    commands.sort();
    assert_eq!(
        commands,
        [
            "deliver --channel email",
            "deliver --channel inapp",
            "deliver --channel sms",
            "router"
        ]
    );
    let ids: HashSet<String> = roles
        .iter()
        .filter_map(|p| {
            p.env
                .get("HERALD_ROUTER__INSTANCE_ID")
                .or(p.env.get("HERALD_DELIVER__INSTANCE_ID"))
                .cloned()
        })
        .collect();
    assert_eq!(ids.len(), roles.len(), "one instance id per role");
}

/// `helm <args>` in the repository.
fn helm_in_repo(args: &[&str]) -> herald_test_support::Run {
    let mut command = Command::new(helm());
    command.args(args).current_dir(repo_root());
    run(command, None)
}

/// The chart rendered with `--set` values, as one document per manifest.
fn render_chart(set: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", "herald", "helm/herald"];
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

/// Every Herald container of the rendered manifests (init containers included), its
/// configuration taken from the ConfigMap it mounts.
fn chart_processes(manifests: &[Value], dir: &Path) -> Vec<HeraldProcess> {
    let config_maps: BTreeMap<String, &Value> = manifests
        .iter()
        .filter(|m| m["kind"] == "ConfigMap")
        .map(|m| (scalar(&m["metadata"]["name"]), m))
        .collect();
    let mut processes = Vec::new();
    for manifest in manifests {
        let spec = match manifest["kind"].as_str() {
            Some("Deployment" | "Job") => &manifest["spec"]["template"]["spec"],
            _ => continue,
        };
        let workload = scalar(&manifest["metadata"]["name"]);
        let volumes: BTreeMap<String, &Value> = spec["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| (scalar(&v["name"]), v))
            .collect();
        let containers = spec["initContainers"]
            .as_sequence()
            .into_iter()
            .flatten()
            .chain(spec["containers"].as_sequence().unwrap());
        for container in containers {
            let name = format!("{workload}/{}", scalar(&container["name"]));
            let args: Vec<String> = strings(&container["command"])
                .into_iter()
                .chain(strings(&container["args"]))
                .skip_while(|a| a == "herald")
                .collect();
            let mut env: BTreeMap<String, String> = container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter(|e| !e["value"].is_null())
                .map(|e| (scalar(&e["name"]), scalar(&e["value"])))
                .collect();
            // `--config <path>` in the arguments, or HERALD_CONFIG.
            let mut args_iter = args.iter();
            let mut config_path = env.remove("HERALD_CONFIG");
            let mut rest = Vec::new();
            while let Some(arg) = args_iter.next() {
                if arg == "--config" || arg == "-c" {
                    config_path = args_iter.next().cloned();
                } else {
                    rest.push(arg.clone());
                }
            }
            let config_path = config_path.unwrap_or_else(|| panic!("{name}: no --config"));
            // The ConfigMap behind the mount that holds that path.
            let mount = container["volumeMounts"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|m| config_path.starts_with(m["mountPath"].as_str().unwrap()))
                .unwrap_or_else(|| panic!("{name}: {config_path} is not mounted"));
            let volume = volumes[&scalar(&mount["name"])];
            let config_map = config_maps[&scalar(&volume["configMap"]["name"])];
            // The key: the mount's subPath, or the path below a mounted directory.
            let key = match mount["subPath"].as_str() {
                Some(sub_path) => sub_path.to_owned(),
                None => Path::new(&config_path)
                    .strip_prefix(mount["mountPath"].as_str().unwrap())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned(),
            };
            let file = dir.join(format!("{}.toml", processes.len()));
            std::fs::write(&file, scalar(&config_map["data"][key.as_str()])).unwrap();
            processes.push(HeraldProcess {
                name,
                invocations: vec![rest],
                env,
                config: file,
            });
        }
    }
    processes
}

#[test]
fn every_herald_container_the_helm_chart_renders_runs_with_a_valid_configuration() {
    let dir = test_dir("helm");
    let lint = helm_in_repo(&["lint", "--strict", "helm/herald"]);
    assert_eq!(lint.code, 0, "helm lint: {}{}", lint.stdout, lint.stderr);

    // The defaults (setup job, router, the email, webhook and in-app workers), with the one
    // thing they leave to the operator: an email provider.
    let manifests = render_chart(&[
        "config.deliver.providers.smtp.host=smtp.example.com",
        "config.deliver.providers.smtp.from=no-reply@acme.example",
    ]);
    let processes = chart_processes(&manifests, &dir);
    for process in &processes {
        process.check();
    }
    let mut roles: Vec<String> = processes
        .iter()
        .filter(|p| p.is_role())
        .map(|p| p.invocations[0].join(" "))
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "deliver --channel email",
            "deliver --channel inapp",
            "deliver --channel webhook",
            "router"
        ]
    );
    let setup: Vec<String> = processes
        .iter()
        .filter(|p| !p.is_role())
        .map(|p| p.invocations[0][..2].join(" "))
        .collect();
    for step in ["topics apply", "schemas register", "db migrate"] {
        assert!(setup.iter().any(|s| s == step), "{step} in {setup:?}");
    }

    // Every channel, scaled on its lag by KEDA: one scaler per Deployment, never an HPA too.
    let manifests = render_chart(&[
        "deliver.channels.sms.enabled=true",
        "deliver.channels.push.enabled=true",
        "keda.enabled=true",
        "router.autoscaling.enabled=true",
    ]);
    let deployments: HashSet<String> = manifests
        .iter()
        .filter(|m| m["kind"] == "Deployment")
        .map(|m| scalar(&m["metadata"]["name"]))
        .collect();
    assert_eq!(deployments.len(), 6, "{deployments:?}");
    let mut scaled: Vec<String> = manifests
        .iter()
        .filter_map(|m| match m["kind"].as_str() {
            Some("ScaledObject") => Some(scalar(&m["spec"]["scaleTargetRef"]["name"])),
            Some("HorizontalPodAutoscaler") => Some(scalar(&m["spec"]["scaleTargetRef"]["name"])),
            _ => None,
        })
        .collect();
    scaled.sort();
    let unique: HashSet<&String> = scaled.iter().collect();
    assert_eq!(
        unique.len(),
        scaled.len(),
        "one autoscaler each: {scaled:?}"
    );
    assert_eq!(
        unique,
        deployments.iter().collect::<HashSet<_>>(),
        "every Deployment is scaled"
    );
    std::fs::remove_dir_all(&dir).ok();
}
