//! The name a role instance goes by when none is configured.

/// `<hostname>-<pid>`: the default of `router.instance_id` and `deliver.instance_id`; stable in
/// a container, where the pid is 1.
pub fn default_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into());
    format!("{host}-{}", std::process::id())
}
