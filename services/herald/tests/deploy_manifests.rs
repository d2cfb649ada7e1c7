//! What the deployment files ask of Herald, checked without Docker or Kubernetes: every Herald
//! service of docker-compose.yml and every Herald container the Helm chart renders runs a
//! real subcommand with real flags, its configuration (file plus `HERALD_*` environment, with
//! the Secrets the container is given and no others) passes `herald config check` (with
//! `--channel` for a delivery worker, which builds the provider), the roles do not collide on
//! ports or instance ids, and the chart's values schema refuses a misspelled value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_test_support::chart::{assert_lint_refuses, helm_in_repo, render_chart};
use herald_test_support::keys::{EC_P256, RSA_2048, openssl, openssl_key, write_service_account};
use herald_test_support::{repo_root, run, test_dir};
use serde_yaml::Value;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// One Herald process as a deployment file describes it.
#[derive(Debug)]
struct HeraldProcess {
    /// Where it comes from, for failure messages.
    name: String,
    /// Its `herald` arguments, one invocation each (a setup step may chain several).
    invocations: Vec<Vec<String>>,
    /// Its environment: literal variables, and those a Secret gives it.
    env: BTreeMap<String, String>,
    /// The configuration file it reads, on this machine.
    config: PathBuf,
    /// The Secrets it is given (as variables or as mounted files).
    secrets: BTreeSet<String>,
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
            if args.first().is_some_and(|role| role == "api") {
                check.push("--api");
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
        self.invocations.iter().any(|args| {
            matches!(
                args.first().map(String::as_str),
                Some("router" | "deliver" | "api" | "track")
            )
        })
    }

    /// `router`, `deliver --channel sms`, `topics apply ...`: its first invocation.
    fn command(&self) -> String {
        self.invocations[0].join(" ")
    }
}

/// The Secrets of the cluster a chart is installed in, as a test stands them in: Secret name
/// -> key -> value.
type Secrets = BTreeMap<&'static str, BTreeMap<&'static str, String>>;

/// The value of `key` in Secret `name`; a reference to anything else is a mistake in the test.
fn secret_value<'a>(secrets: &'a Secrets, name: &str, key: &str) -> &'a str {
    secrets
        .get(name)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("Secret {name} key {key} is not one the test stands in"))
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
            secrets: BTreeSet::new(),
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
            "api",
            "deliver --channel email",
            "deliver --channel inapp",
            "deliver --channel sms",
            "router",
            "track"
        ]
    );
    // The router and the workers need an instance id each (their transactional ids); the API
    // produces without transactions and the tracker does not produce.
    let transactional: Vec<&&HeraldProcess> = roles
        .iter()
        .filter(|p| !["api", "track"].contains(&p.command().as_str()))
        .collect();
    let ids: HashSet<String> = transactional
        .iter()
        .filter_map(|p| {
            p.env
                .get("HERALD_ROUTER__INSTANCE_ID")
                .or(p.env.get("HERALD_DELIVER__INSTANCE_ID"))
                .cloned()
        })
        .collect();
    assert_eq!(ids.len(), transactional.len(), "one instance id per role");
}

/// Every Herald container of the rendered manifests (init containers included), its
/// configuration taken from the ConfigMap it mounts, its environment from its literal
/// variables and from `secrets` as its `env` and `envFrom` refer to them. A Secret mounted as
/// a volume is written out, one file per key, at the mount path, which must therefore be in a
/// directory of the test's own.
fn chart_processes(manifests: &[Value], dir: &Path, secrets: &Secrets) -> Vec<HeraldProcess> {
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
            let mut given = BTreeSet::new();
            // envFrom first: a variable of `env` wins over one of the same name from envFrom.
            let mut env = BTreeMap::new();
            for source in container["envFrom"].as_sequence().into_iter().flatten() {
                let Some(secret) = source["secretRef"]["name"].as_str() else {
                    continue;
                };
                let prefix = source["prefix"].as_str().unwrap_or_default();
                let keys = secrets.get(secret).unwrap_or_else(|| {
                    panic!("{name}: Secret {secret} is not one the test stands in")
                });
                for (key, value) in keys {
                    env.insert(format!("{prefix}{key}"), value.clone());
                }
                given.insert(secret.to_owned());
            }
            for var in container["env"].as_sequence().into_iter().flatten() {
                let reference = &var["valueFrom"]["secretKeyRef"];
                if !var["value"].is_null() {
                    env.insert(scalar(&var["name"]), scalar(&var["value"]));
                } else if !reference.is_null() {
                    let secret = scalar(&reference["name"]);
                    let value = secret_value(secrets, &secret, &scalar(&reference["key"]));
                    env.insert(scalar(&var["name"]), value.to_owned());
                    given.insert(secret);
                }
            }
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
            // Secrets mounted as files.
            for mount in container["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let volume = volumes
                    .get(&scalar(&mount["name"]))
                    .unwrap_or_else(|| panic!("{name}: mount of a volume the pod does not have"));
                let Some(secret) = volume["secret"]["secretName"].as_str() else {
                    continue;
                };
                let target = PathBuf::from(scalar(&mount["mountPath"]));
                assert!(
                    target.starts_with(dir),
                    "{name}: the test mounts Secrets in its own directory, not {}",
                    target.display()
                );
                std::fs::create_dir_all(&target).unwrap();
                let keys = secrets.get(secret).unwrap_or_else(|| {
                    panic!("{name}: Secret {secret} is not one the test stands in")
                });
                for (key, value) in keys {
                    std::fs::write(target.join(key), value).unwrap();
                }
                given.insert(secret.to_owned());
            }
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
                secrets: given,
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

    // The defaults (setup job, router, API, the email, webhook and in-app workers), with the one
    // thing they leave to the operator: an email provider.
    let manifests = render_chart(
        None,
        &[
            "config.deliver.providers.smtp.host=smtp.example.com",
            "config.deliver.providers.smtp.from=no-reply@acme.example",
        ],
    );
    let processes = chart_processes(&manifests, &dir, &Secrets::new());
    for process in &processes {
        process.check();
    }
    let mut roles: Vec<String> = processes
        .iter()
        .filter(|p| p.is_role())
        .map(HeraldProcess::command)
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            "api",
            "deliver --channel email",
            "deliver --channel inapp",
            "deliver --channel webhook",
            "router",
            "track"
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
    let manifests = render_chart(
        None,
        &[
            "deliver.channels.sms.enabled=true",
            "deliver.channels.push.enabled=true",
            "keda.enabled=true",
            "router.autoscaling.enabled=true",
            "api.autoscaling.enabled=true",
        ],
    );
    let deployments: HashSet<String> = manifests
        .iter()
        .filter(|m| m["kind"] == "Deployment")
        .map(|m| scalar(&m["metadata"]["name"]))
        .collect();
    assert_eq!(deployments.len(), 8, "{deployments:?}");
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

/// Every channel the chart can render, each provider's credentials given only to the worker
/// that uses them, as an operator would: the SendGrid key to the email worker, the Twilio
/// token (envFrom) to sms, the APNs and FCM keys (a Secret volume) to push, the webhook
/// signing secret to webhook, the unsubscribe and tracking link secrets to the email worker and
/// the API. Every other container (router, in-app, the setup hook's three) runs without them
/// and still passes `config check`; each worker's check builds its provider, the API's checks
/// the links it verifies.
#[test]
fn every_channel_worker_runs_with_only_its_own_provider_secrets() {
    let dir = test_dir("helm-channels");
    let keys = dir.join("keys");
    let generated = dir.join("generated");
    std::fs::create_dir_all(&generated).unwrap();
    let apns = openssl_key(&generated, "apns", EC_P256);
    let fcm = openssl_key(&generated, "fcm", RSA_2048);
    let account = generated.join("fcm.json");
    write_service_account(
        &account,
        &fcm,
        "acme-app",
        "herald@acme-app.iam.gserviceaccount.com",
        "https://oauth2.googleapis.com/token",
    );
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let secrets: Secrets = BTreeMap::from([
        (
            "herald-sendgrid",
            BTreeMap::from([("api-key", "SG.test-key".to_owned())]),
        ),
        (
            "herald-twilio",
            BTreeMap::from([(
                "HERALD_DELIVER__PROVIDERS__TWILIO__AUTH_TOKEN",
                "twilio-token".to_owned(),
            )]),
        ),
        (
            "herald-push",
            BTreeMap::from([
                ("apns.p8", read(&apns.private_pem)),
                ("fcm.json", read(&account)),
            ]),
        ),
        (
            "herald-webhook",
            BTreeMap::from([(
                "default-secret",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
            )]),
        ),
        (
            "herald-links",
            BTreeMap::from([
                ("unsubscribe", "u".repeat(32)),
                ("tracking", "t".repeat(32)),
            ]),
        ),
    ]);
    let keys = keys.display();
    let values = dir.join("values.yaml");
    std::fs::write(
        &values,
        format!(
            r#"
config:
  unsubscribe:
    base_url: https://notify.acme.example
  tracking:
    base_url: https://notify.acme.example
  deliver:
    providers:
      sendgrid:
        from: billing@acme.example
      twilio:
        account_sid: AC0123456789abcdef
        from: "+15005550006"
      apns:
        team_id: TEAM123456
        key_id: KEY1234567
        topic: com.acme.app
        key_file: {keys}/apns.p8
      fcm:
        service_account_file: {keys}/fcm.json
api:
  env:
    - name: HERALD_UNSUBSCRIBE__SECRET
      valueFrom: {{secretKeyRef: {{name: herald-links, key: unsubscribe}}}}
    - name: HERALD_TRACKING__SECRET
      valueFrom: {{secretKeyRef: {{name: herald-links, key: tracking}}}}
deliver:
  channels:
    email:
      env:
        - name: HERALD_DELIVER__PROVIDERS__SENDGRID__API_KEY
          valueFrom: {{secretKeyRef: {{name: herald-sendgrid, key: api-key}}}}
        - name: HERALD_UNSUBSCRIBE__SECRET
          valueFrom: {{secretKeyRef: {{name: herald-links, key: unsubscribe}}}}
        - name: HERALD_TRACKING__SECRET
          valueFrom: {{secretKeyRef: {{name: herald-links, key: tracking}}}}
    sms:
      enabled: true
      envFrom:
        - secretRef: {{name: herald-twilio}}
    push:
      enabled: true
      extraVolumes:
        - name: push-keys
          secret: {{secretName: herald-push}}
      extraVolumeMounts:
        - name: push-keys
          mountPath: {keys}
          readOnly: true
    webhook:
      env:
        - name: HERALD_DELIVER__PROVIDERS__WEBHOOK__DEFAULT_SECRET
          valueFrom: {{secretKeyRef: {{name: herald-webhook, key: default-secret}}}}
"#
        ),
    )
    .unwrap();
    let manifests = render_chart(Some(&values), &[]);
    let processes = chart_processes(&manifests, &dir, &secrets);

    // Each Secret reaches only the worker it belongs to.
    let given: BTreeMap<String, Vec<&str>> = processes
        .iter()
        .map(|p| {
            let secrets = p.secrets.iter().map(String::as_str).collect();
            (p.command(), secrets)
        })
        .collect();
    let expected: BTreeMap<String, Vec<&str>> = [
        ("router", vec![]),
        ("api", vec!["herald-links"]),
        ("track", vec![]),
        (
            "deliver --channel email",
            vec!["herald-links", "herald-sendgrid"],
        ),
        ("deliver --channel sms", vec!["herald-twilio"]),
        ("deliver --channel push", vec!["herald-push"]),
        ("deliver --channel webhook", vec!["herald-webhook"]),
        ("deliver --channel inapp", vec![]),
    ]
    .into_iter()
    .map(|(command, secrets)| (command.to_owned(), secrets))
    .chain(
        processes
            .iter()
            .filter(|p| !p.is_role())
            .map(|p| (p.command(), vec![])),
    )
    .collect();
    assert_eq!(given, expected);
    let setup = processes.iter().filter(|p| !p.is_role()).count();
    assert_eq!(setup, 3, "the setup hook's containers");

    for process in &processes {
        process.check();
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The manifest of `kind` named `name`, if rendered.
fn manifest<'a>(manifests: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    manifests
        .iter()
        .find(|m| m["kind"] == kind && m["metadata"]["name"] == name)
}

/// The tracker: a Deployment running `herald track`, scaled by KEDA on the lag of its group on
/// notifications.status when KEDA is on; nothing with track.enabled=false.
#[test]
fn the_tracker_renders_a_deployment_scaled_on_the_status_lag() {
    let manifests = render_chart(None, &[]);
    let deployment = manifest(&manifests, "Deployment", "herald-track").expect("track Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["args"]).last().unwrap(), "track");
    assert!(manifest(&manifests, "PodDisruptionBudget", "herald-track").is_some());

    let manifests = render_chart(None, &["keda.enabled=true"]);
    let scaled = manifest(&manifests, "ScaledObject", "herald-track").expect("track ScaledObject");
    let text = serde_yaml::to_string(scaled).unwrap();
    assert!(text.contains("herald-track"), "{text}");
    assert!(text.contains("notifications.status"), "{text}");

    let manifests = render_chart(None, &["track.enabled=false"]);
    assert!(
        !manifests
            .iter()
            .any(|m| m["metadata"]["labels"]["app.kubernetes.io/component"] == "track")
    );
}

/// The API role: a Deployment running `herald api` with its HTTP port and probes on the admin
/// port, a Service with both ports, a PDB; an HPA on CPU targeting it and an Ingress to the
/// Service's http port only when asked for.
#[test]
fn the_api_renders_a_deployment_service_and_optionally_an_hpa_and_an_ingress() {
    let manifests = render_chart(None, &[]);
    let deployment = manifest(&manifests, "Deployment", "herald-api").expect("api Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(strings(&container["args"]).last().unwrap(), "api");
    let ports: BTreeMap<String, String> = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (scalar(&p["name"]), scalar(&p["containerPort"])))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("admin".to_owned(), "9464".to_owned()),
            ("http".to_owned(), "8080".to_owned())
        ])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(!container["resources"]["requests"]["cpu"].is_null());
    assert_eq!(deployment["spec"]["replicas"], 2);
    let service = manifest(&manifests, "Service", "herald-api").expect("api Service");
    let mut service_ports: Vec<(String, String)> = service["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (scalar(&p["name"]), scalar(&p["targetPort"])))
        .collect();
    service_ports.sort();
    assert_eq!(
        service_ports,
        [
            ("admin".to_owned(), "admin".to_owned()),
            ("http".to_owned(), "http".to_owned())
        ]
    );
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "api"
    );
    assert!(manifest(&manifests, "PodDisruptionBudget", "herald-api").is_some());
    assert!(manifest(&manifests, "HorizontalPodAutoscaler", "herald-api").is_none());
    assert!(!manifests.iter().any(|m| m["kind"] == "Ingress"));

    let manifests = render_chart(
        None,
        &[
            "api.autoscaling.enabled=true",
            "api.ingress.enabled=true",
            "api.ingress.className=nginx",
            "api.ingress.hosts[0].host=api.acme.example",
            "api.ingress.hosts[0].paths[0].path=/v1",
            "api.ingress.tls[0].secretName=acme-tls",
        ],
    );
    let hpa = manifest(&manifests, "HorizontalPodAutoscaler", "herald-api").expect("api HPA");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "herald-api");
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let deployment = manifest(&manifests, "Deployment", "herald-api").unwrap();
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "the HPA owns replicas"
    );
    let ingress = manifest(&manifests, "Ingress", "herald-api").expect("api Ingress");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "acme-tls");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "api.acme.example");
    let path = &rule["http"]["paths"][0];
    assert_eq!(path["path"], "/v1");
    assert_eq!(path["pathType"], "Prefix");
    assert_eq!(path["backend"]["service"]["name"], "herald-api");
    assert_eq!(path["backend"]["service"]["port"]["name"], "http");

    // The API turned off renders nothing of it.
    let manifests = render_chart(None, &["api.enabled=false", "api.ingress.enabled=true"]);
    assert!(
        !manifests
            .iter()
            .any(|m| m["metadata"]["labels"]["app.kubernetes.io/component"] == "api"),
        "nothing of the API"
    );
    // A loopback api.listen would be unreachable for the Service: refused at render time.
    let output = helm_in_repo(&[
        "template",
        "herald",
        "helm/herald",
        "--set",
        "config.api.listen=127.0.0.1:8080",
    ]);
    assert_ne!(output.code, 0);
    assert!(
        output.stderr.contains("config.api.listen"),
        "{}",
        output.stderr
    );
}

/// `values.schema.json` closes every set of values the chart defines: a misspelled or
/// mistyped value fails `helm lint` (and `helm install`) instead of being silently ignored.
#[test]
fn the_values_schema_refuses_a_misspelled_value() {
    for (set, named) in [
        ("routr.replicas=2", "routr"),
        ("router.replica=2", "replica"),
        ("router.replicas=two", "replicas"),
        ("deliver.channels.sms.enabeld=true", "enabeld"),
        ("deliver.channels.fax.enabled=true", "fax"),
        ("deliver.resource.requests.cpu=1", "resource"),
        ("setup.topics.partition=6", "partition"),
        ("keda.enable=true", "enable"),
        ("image.tga=1.0", "tga"),
        ("api.ingress.hostz[0].host=a", "hostz"),
        ("config.routr.max_batch=10", "routr"),
    ] {
        assert_lint_refuses(set, named);
    }
}

/// The Dockerfile's final stage, one logical line each (`\\` continuations joined).
fn image_stage() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].iter().map(|l| l.to_string()).collect()
}

/// A child process killed when the test is done with it, pass or fail.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Whether `herald`'s librdkafka, with `env` as its only environment, verifies a TLS "broker"
/// whose certificate `ca` signed. The broker is `openssl s_server`: past the handshake it
/// writes what the client sends (Kafka's first request) to its stdout; a client that cannot
/// verify it aborts the handshake with an alert, which it logs on stderr.
fn librdkafka_trusts(dir: &Path, name: &str, env: &[(&str, &Path)]) -> bool {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let received = dir.join(format!("{name}.out"));
    let alerts = dir.join(format!("{name}.err"));
    let _server = Killed(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(dir.join("server.pem"))
            .arg("-key")
            .arg(dir.join("server.key"))
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&received).unwrap())
            .stderr(std::fs::File::create(&alerts).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"localhost:{port}\"\n\
             [kafka.properties]\n\"security.protocol\" = \"SSL\"\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(HERALD);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["--config", config.to_str().unwrap()])
        .args(["tail", "notifications.status", "--timeout", "30s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (var, value) in env {
        command.env(var, value);
    }
    let _client = Killed(command.spawn().unwrap());
    loop {
        if std::fs::metadata(&received).unwrap().len() > 0 {
            return true;
        }
        if std::fs::read_to_string(&alerts).unwrap().contains("alert") {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: neither a request nor an alert reached the TLS server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runtime image's `ENV` variables.
fn image_env(stage: &[String]) -> BTreeMap<&str, &str> {
    stage
        .iter()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .collect()
}

/// The image caps glibc's malloc arenas: librdkafka's threads otherwise keep freed memory in
/// arenas of their own, and the router's RSS passed its 256 MiB target (267 MiB, against
/// 191 MiB with two arenas, in `herald bench router`, whose children run with the same value).
#[test]
fn the_image_caps_malloc_arenas() {
    let stage = image_stage();
    assert_eq!(image_env(&stage).get("MALLOC_ARENA_MAX"), Some(&"2"));
}

/// TLS to a publicly signed broker works without `ssl.ca.location`. librdkafka's OpenSSL is
/// compiled into the binary (rdkafka's `ssl-vendored`) and by default trusts only what is in
/// its build's OPENSSLDIR (/usr/local/ssl), which the runtime image does not have; the image
/// points it at Debian's roots with SSL_CERT_FILE and SSL_CERT_DIR. Both halves are checked:
/// the final stage installs ca-certificates and sets the variables to where that package puts
/// the roots, and this binary's librdkafka takes a broker's roots from exactly those variables
/// (a throwaway CA standing in for the system's), and none without them.
#[test]
fn the_image_points_librdkafka_at_the_system_ca_certificates() {
    let stage = image_stage();
    assert!(
        stage.iter().any(|l| l.starts_with("RUN ")
            && l.contains("install")
            && l.contains("ca-certificates")),
        "the runtime image installs ca-certificates"
    );
    let env = image_env(&stage);
    assert_eq!(
        env.get("SSL_CERT_FILE"),
        Some(&"/etc/ssl/certs/ca-certificates.crt"),
        "{env:?}"
    );
    assert_eq!(env.get("SSL_CERT_DIR"), Some(&"/etc/ssl/certs"), "{env:?}");

    let dir = test_dir("image-ca");
    // A throwaway root and a server certificate it signs (the paths have no spaces).
    std::fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    let d = dir.display();
    for command in [
        format!(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
             -subj /CN=herald-test-root -keyout {d}/ca.key -out {d}/ca.pem"
        ),
        format!(
            "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
             -keyout {d}/server.key -out {d}/server.csr"
        ),
        format!(
            "x509 -req -in {d}/server.csr -CA {d}/ca.pem -CAkey {d}/ca.key -CAcreateserial \
             -days 2 -extfile {d}/san.cnf -out {d}/server.pem"
        ),
    ] {
        openssl(&command.split_whitespace().collect::<Vec<_>>());
    }
    // The directory form: certificates under their subject hash, as ca-certificates leaves
    // /etc/ssl/certs.
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.pem"), certs.join("herald-test-root.pem")).unwrap();
    openssl(&["rehash", certs.to_str().unwrap()]);

    let ca = dir.join("ca.pem");
    assert!(
        !librdkafka_trusts(&dir, "built-in", &[]),
        "without the variables the throwaway CA must not be trusted (is verification on?)"
    );
    assert!(librdkafka_trusts(&dir, "file", &[("SSL_CERT_FILE", &ca)]));
    assert!(librdkafka_trusts(&dir, "dir", &[("SSL_CERT_DIR", &certs)]));
    std::fs::remove_dir_all(&dir).ok();
}
