use std::process::Command;

fn meshrl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshrl"))
}

/// Asserts the command succeeded (showing its stderr if not) and returns its stdout.
fn succeeded(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(rel: &str) -> String {
    format!("{}/../../configs/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn eval_prints_a_table_and_writes_csv_json_and_png() {
    let dir = std::env::temp_dir().join(format!("meshrl-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (csv, png) = (dir.join("r.csv"), dir.join("r.png"));
    let out = meshrl()
        .args([
            "eval",
            "--policy",
            "baseline:etx",
            "--policy",
            "baseline:shortest_path",
            "--episodes",
            "300",
            "--seed",
            "1",
        ])
        .args([
            "--scenario",
            &config("eval/lossy.toml"),
            "--scenario",
            &config("eval/static.toml"),
        ])
        .arg("--csv")
        .arg(&csv)
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("baseline:etx") && stdout.contains("lossy") && stdout.contains("static"),
        "{stdout}"
    );
    assert!(stdout.contains("significant"), "{stdout}");
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv_text.lines().count(), 5, "{csv_text}");
    assert!(csv_text.starts_with("scenario,policy,episodes,delivered,delivery_ratio"));
    let png_bytes = std::fs::read(&png).unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");

    let out = meshrl()
        .args([
            "eval",
            "--policy",
            "baseline:random",
            "--episodes",
            "100",
            "--json",
            "--scenario",
            &config("eval/static.toml"),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summaries"][0]["episodes"], 100); // environments are clamped to the packets asked for
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eval_errors_are_clear() {
    for (args, needle) in [
        (
            vec!["eval", "--policy", "baseline:magic", "--scenario", "x.toml"],
            "unknown baseline `magic`",
        ),
        (
            vec!["eval", "--policy", "etx", "--scenario", "x.toml"],
            "use baseline:NAME",
        ),
        (
            vec![
                "eval",
                "--policy",
                "baseline:etx",
                "--scenario",
                "missing.toml",
            ],
            "missing.toml",
        ),
        (
            vec![
                "eval",
                "--policy",
                "baseline:etx",
                "--episodes",
                "0",
                "--scenario",
                "x.toml",
            ],
            "--episodes",
        ),
    ] {
        let out = meshrl().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn train_saves_a_policy_that_eval_loads() {
    let dir = std::env::temp_dir().join(format!("meshrl-train-{}", std::process::id()));
    let out = meshrl()
        .args([
            "train",
            &config("train/small.toml"),
            "--steps",
            "8192",
            "--eval-episodes",
            "64",
            "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("baseline:shortest_path") && stdout.contains("ppo"),
        "{stdout}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("global_step,charts/episodic_return,charts/SPS"));
    assert_eq!(metrics.lines().count(), 3, "{metrics}"); // header + 2 updates of 4096 steps
    // TensorBoard events: one file, holding CleanRL's tags.
    let events: Vec<_> = std::fs::read_dir(dir.join("tb")).unwrap().flatten().collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let bytes = std::fs::read(events[0].path()).unwrap();
    for tag in ["charts/episodic_return", "losses/approx_kl", "routing/delivery_ratio"] {
        assert!(
            bytes.windows(tag.len()).any(|w| w == tag.as_bytes()),
            "no {tag} in the event file"
        );
    }
    let out = meshrl()
        .args(["eval", "--policy"])
        .arg(&dir)
        .args([
            "--policy",
            "baseline:shortest_path",
            "--episodes",
            "64",
            "--scenario",
            &config("env/small.toml"),
        ])
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("ppo:"), "{stdout}");
    // A policy for 8 slots on a 16-slot scenario is refused by name.
    let wide = std::env::temp_dir().join(format!("meshrl-wide-{}.toml", std::process::id()));
    std::fs::write(&wide, "[topology]\nmax_neighbors = 16\n").unwrap();
    let out = meshrl()
        .args(["eval", "--policy"])
        .arg(&dir)
        .arg("--scenario")
        .arg(&wide)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neighbour slots"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Export for nodes: the runtime loads it, and the model card carries the training config.
    let file = dir.join("policy.safetensors");
    let out = meshrl()
        .arg("export")
        .arg(&dir)
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("checksum fnv1a64:"), "{stdout}");
    let bytes = std::fs::read(&file).unwrap();
    let runtime = meshrl_runtime::Policy::from_bytes(&bytes).expect("runtime loads the export");
    assert_eq!(runtime.num_actions(), 8);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let card: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["model_card"].as_str().unwrap()).unwrap();
    assert_eq!(card["training_config"]["train"]["total_steps"], 8192);
    assert_eq!(card["training_config"]["env"]["env"]["envs_per_twin"], 4);
    assert!(header.get("critic.0.weight").is_none());
    let out = meshrl()
        .args(["export", "no/such/run", "-o"])
        .arg(dir.join("x.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no/such/run"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
    std::fs::remove_file(wide).ok();
}

#[test]
fn resume_from_a_checkpoint_ends_where_the_uninterrupted_run_ends() {
    let dir = std::env::temp_dir().join(format!("meshrl-resume-{}", std::process::id()));
    let train = |extra: &[&str]| {
        let out = meshrl()
            .args(["train", &config("train/small.toml"), "--steps", "16384"])
            .args(["--checkpoint-every", "2", "--eval-episodes", "32", "--device", "cpu"])
            .arg("--out")
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap();
        succeeded(&out);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // 4 updates; the checkpoint left behind is the one after update 2.
    train(&[]);
    let straight = std::fs::read(dir.join("policy.weights")).unwrap();
    let stderr = train(&["--resume"]);
    assert!(stderr.contains("resuming from") && stderr.contains("step 8192"), "{stderr}");
    assert_eq!(std::fs::read(dir.join("policy.weights")).unwrap(), straight);
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 5, "{metrics}"); // header + 4 updates, none twice
    // A different config is refused by name.
    let out = meshrl()
        .args(["train", &config("train/small.toml"), "--steps", "20000", "--checkpoint-every", "2"])
        .arg("--out")
        .arg(&dir)
        .arg("--resume")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("different config"), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_counts_and_existing_runs_are_clear_errors() {
    let scenario = config("eval/static.toml");
    for (args, needle) in [
        (vec!["--episodes", "1000000000"], "--episodes"),
        (vec!["--episodes", "18446744073709551615"], "--episodes"),
        (vec!["--episodes", "50", "--num-envs", "0"], "num_envs"),
        (vec!["--episodes", "50", "--num-envs", "51"], "num_envs"),
    ] {
        let out = meshrl()
            .args(["eval", "--policy", "baseline:etx", "--scenario", &scenario])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // Exactly the packets asked for.
    let out = meshrl()
        .args(["eval", "--policy", "baseline:etx", "--scenario", &scenario])
        .args(["--episodes", "50", "--num-envs", "4", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summaries"][0]["episodes"], 50);
    // A second run into the same folder is refused unless --force.
    let dir = std::env::temp_dir().join(format!("meshrl-force-{}", std::process::id()));
    let train = |extra: &[&str]| {
        meshrl()
            .args(["train", &config("train/small.toml"), "--steps", "4096", "--eval-episodes", "16"])
            .arg("--out")
            .arg(&dir)
            .args(extra)
            .output()
            .unwrap()
    };
    succeeded(&train(&[]));
    let out = train(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("already holds a run") && stderr.contains("--force"), "{stderr}");
    succeeded(&train(&["--force"]));
    let rows = std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().count();
    assert_eq!(rows, 2, "the old run's rows were not removed");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eval_runs_an_incident_with_and_without_the_loop() {
    let dir = std::env::temp_dir().join(format!("meshrl-cli-incident-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let incident = dir.join("malicious.toml");
    std::fs::write(
        &incident,
        format!(
            "scenario = \"{}\"\n[incident]\nkind = \"node_turns_malicious\"\nstart_tick = 150\n\
             drop_probability = 0.6\n[run]\nticks = 400\ntwins = 2\n",
            config("eval/static.toml")
        ),
    )
    .unwrap();
    let actions = dir.join("actions.jsonl");
    let ledger = dir.join("detector.mlg");
    let out = meshrl()
        .args(["eval", "--incident", incident.to_str().unwrap(), "--actions", actions.to_str().unwrap()])
        .args(["--ledger", ledger.to_str().unwrap()])
        .output()
        .unwrap();
    let table = succeeded(&out);
    assert!(table.contains("| malicious | federated |"), "{table}");
    assert!(table.contains("| malicious | threshold |"), "{table}");
    let log = std::fs::read_to_string(&actions).unwrap();
    assert!(log.contains("\"action\":\"quarantine\"") && log.contains("overheard"), "{log}");
    // The federated detector's 300 rounds and its calibration, each proven by PBFT.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("federated detector: 603 blocks in") && err.contains("the loop runs model"), "{err}");
    let verified = succeeded(&meshrl().args(["ledger", "verify", ledger.to_str().unwrap(), "--json"]).output().unwrap());
    let report: serde_json::Value = serde_json::from_str(&verified).unwrap();
    assert_eq!(report["consensus_proofs"], 301, "{verified}");
    assert_eq!(report["latest_proven"]["round"], 301, "{verified}");
    // A bad incident file names the field.
    std::fs::write(&incident, "scenario = \"x.toml\"\n[incident]\nkind = \"flash_crowd\"\nstart_tick = 1\n").unwrap();
    let out = meshrl().args(["eval", "--incident", incident.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("incident"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
