//! Layering and validation of node configuration, through the public API.

use std::io::Write;
use std::path::PathBuf;

use herd_config::{Environment, HandlerConfig, Origin, Overrides, resolve};
use herd_protocol::messages::membership::Role;

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herd.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    (dir, path)
}

fn minimal() -> Overrides {
    Overrides {
        name: Some("n1".into()),
        cookie: Some("secret-cookie-for-tests".into()),
        ..Overrides::default()
    }
}

#[test]
fn defaults_apply_when_nothing_else_is_given() {
    let config = resolve(&minimal(), &Environment::default()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:7100");
    assert_eq!(config.http.to_string(), "127.0.0.1:8100");
    assert_eq!(config.advertise_host, "127.0.0.1");
    assert_eq!(
        config.roles,
        vec![Role::Orchestrator, Role::Worker, Role::Monitor]
    );
    assert_eq!(config.workers, 4);
    assert!(config.seeds.is_empty());
    let agents: Vec<_> = config
        .agents
        .keys()
        .map(|a| a.as_str().to_string())
        .collect();
    assert_eq!(agents, vec!["echo", "sleep"]);
    assert_eq!(config.origins["node.workers"], Origin::Default);
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let (_dir, path) = write_config(
        "[node]\nname = \"from-file\"\nworkers = 7\nhttp = \"127.0.0.1:9001\"\nlisten = \"127.0.0.1:9002\"\ncookie = \"c-cookie-for-this-test\"\n",
    );
    let env = Environment::from_pairs([
        ("HERD_CONFIG", path.to_str().unwrap()),
        ("HERD_WORKERS", "9"),
        ("HERD_HTTP", "127.0.0.1:9101"),
    ]);
    let overrides = Overrides {
        workers: Some("11".into()),
        ..Overrides::default()
    };
    let config = resolve(&overrides, &env).unwrap();
    // flag over env over file
    assert_eq!(config.workers, 11);
    assert_eq!(config.origins["node.workers"], Origin::Flag("--workers"));
    // env over file
    assert_eq!(config.http.to_string(), "127.0.0.1:9101");
    assert_eq!(config.origins["node.http"], Origin::Env("HERD_HTTP"));
    // file over default
    assert_eq!(config.listen.to_string(), "127.0.0.1:9002");
    assert_eq!(config.name.as_str(), "from-file");
    assert_eq!(
        config.origins["node.listen"],
        Origin::File {
            path: path.clone(),
            line: 5
        }
    );
    assert_eq!(config.config_file.as_deref(), Some(path.as_path()));
}

#[test]
fn seeds_come_from_repeated_flags_comma_separated_env_or_a_file_list() {
    let from_flags = resolve(
        &Overrides {
            seeds: Some(vec!["127.0.0.1:7102".into(), "127.0.0.1:7103".into()]),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(from_flags.seeds, vec!["127.0.0.1:7102", "127.0.0.1:7103"]);

    let from_env = resolve(
        &minimal(),
        &Environment::from_pairs([("HERD_SEEDS", "a.herd:7100, b.herd:7100")]),
    )
    .unwrap();
    assert_eq!(from_env.seeds, vec!["a.herd:7100", "b.herd:7100"]);

    let (_dir, path) = write_config("[node]\nseeds = [\"n2:7100\"]\n");
    let from_file = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(from_file.seeds, vec!["n2:7100"]);
}

#[test]
fn file_values_expand_environment_references() {
    let (_dir, path) = write_config(
        "[node]\nname = \"${NODE:-n9}\"\ncookie = \"${SECRET}\"\nworkers = ${SLOTS:-3}\n",
    );
    let env = Environment::from_pairs([("SECRET", "s3cr3t\"x-long-enough-cookie")]);
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..Overrides::default()
        },
        &env,
    )
    .unwrap();
    assert_eq!(config.name.as_str(), "n9");
    assert_eq!(config.cookie.expose(), "s3cr3t\"x-long-enough-cookie");
    assert_eq!(config.workers, 3);
}

#[test]
fn missing_cookie_is_refused_and_the_message_says_how_to_set_it() {
    let errors = resolve(
        &Overrides {
            name: Some("n1".into()),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(errors.mentions("node.cookie"));
    let message = errors.to_string();
    assert!(message.contains("--cookie"), "{message}");
    assert!(message.contains("HERD_COOKIE"), "{message}");
    assert!(message.contains("no default"), "{message}");
}

#[test]
fn a_cookie_shorter_than_sixteen_characters_is_refused_with_how_to_make_one() {
    let env = Environment::from_pairs([("HERD_COOKIE", "fifteen-chars!!")]);
    let errors = resolve(
        &Overrides {
            name: Some("n1".into()),
            ..Overrides::default()
        },
        &env,
    )
    .unwrap_err();
    assert!(errors.mentions("node.cookie"));
    let message = errors.to_string();
    assert!(message.contains("15 characters"), "{message}");
    assert!(message.contains("openssl rand -hex 32"), "{message}");
    assert!(
        !message.contains("fifteen-chars"),
        "the cookie leaked: {message}"
    );

    let sixteen = Environment::from_pairs([("HERD_COOKIE", "sixteen-chars!!!")]);
    let overrides = Overrides {
        name: Some("n1".into()),
        ..Overrides::default()
    };
    assert!(resolve(&overrides, &sixteen).is_ok());
}

#[test]
fn invalid_values_name_their_source_and_the_fix() {
    let env = Environment::from_pairs([("HERD_WORKERS", "lots"), ("HERD_ROLES", "worker,boss")]);
    let errors = resolve(
        &Overrides {
            name: Some("Node_1".into()),
            listen: Some("localhost".into()),
            seeds: Some(vec!["10.0.0.2".into()]),
            cookie: Some("c-cookie-for-this-test".into()),
            ..Overrides::default()
        },
        &env,
    )
    .unwrap_err();
    let message = errors.to_string();
    for expected in [
        "flag --name: node.name: \"Node_1\" may contain only lowercase letters",
        "flag --listen: node.listen: \"localhost\" is not an IP:PORT address; write e.g. 0.0.0.0:7100",
        "flag --seed: node.seeds: seed \"10.0.0.2\" has no port",
        "environment variable HERD_WORKERS: node.workers: \"lots\" is not a whole number",
        "environment variable HERD_ROLES: node.roles: unknown role \"boss\"",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert_eq!(errors.0.len(), 5, "{message}");
}

#[test]
fn file_errors_point_at_file_and_line() {
    let (_dir, path) = write_config(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n\n[limits]\nmax_payload_bytes = 20000000\n\n[agents.summarize]\nhandler = \"exec\"\nweight = 1.5\n\n[agents.fetch]\nhandler = \"http\"\ncommand = [\"x\"]\n",
    );
    let errors = resolve(
        &Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap_err();
    let message = errors.to_string();
    let at = |line: usize| format!("{}:{line}", path.display());
    for expected in [
        format!(
            "{}: limits.max_payload_bytes: is 20000000, outside 1..=7340032",
            at(6)
        ),
        format!(
            "{}: agents.summarize.weight: is 1.5, outside 0.0..=1.0",
            at(10)
        ),
        format!(
            "{}: agents.summarize.command: is required for handler = \"exec\"",
            at(8)
        ),
        format!(
            "{}: agents.fetch.command: applies only to handler = \"exec\"",
            at(14)
        ),
        format!(
            "{}: agents.fetch.url: is required for handler = \"http\"",
            at(12)
        ),
    ] {
        assert!(
            message.contains(&expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn unreadable_config_file_names_the_flag_or_variable() {
    let errors = resolve(
        &minimal(),
        &Environment::from_pairs([("HERD_CONFIG", "/nonexistent/herd.toml")]),
    )
    .unwrap_err();
    let message = errors.to_string();
    assert!(
        message.contains("environment variable HERD_CONFIG"),
        "{message}"
    );
    assert!(message.contains("/nonexistent/herd.toml"), "{message}");
}

#[test]
fn listening_on_all_interfaces_requires_an_advertised_host() {
    let errors = resolve(
        &Overrides {
            listen: Some("0.0.0.0:7100".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(errors.mentions("node.advertise"), "{errors}");
    let config = resolve(
        &Overrides {
            listen: Some("0.0.0.0:7100".into()),
            advertise: Some("n1.herd".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(config.advertise_addr(), "n1.herd:7100");
}

#[test]
fn worker_role_needs_workers_but_other_nodes_ignore_the_count() {
    let errors = resolve(
        &Overrides {
            workers: Some("0".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains("has the worker role"),
        "{errors}"
    );
    let config = resolve(
        &Overrides {
            roles: Some("orchestrator,monitor".into()),
            workers: Some("0".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(config.workers, 0);
}

#[test]
fn declared_agents_replace_the_built_in_ones() {
    let (_dir, path) = write_config(
        "[agents.summarize]\nweight = 0.7\nhandler = \"exec\"\ncommand = [\"python3\", \"s.py\"]\nfatal_exit_codes = [2]\ntimeout_s = 60\n\n[agents.fetch]\nweight = 0.3\nhandler = \"http\"\nurl = \"http://127.0.0.1:9000/run\"\nheaders = { Authorization = \"Bearer t0ken\" }\n",
    );
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    let names: Vec<_> = config.agents.keys().map(|a| a.as_str()).collect();
    assert_eq!(names, vec!["fetch", "summarize"]);
    let summarize = &config.agents[&"summarize".into()];
    assert_eq!(summarize.timeout_s, Some(60));
    match &summarize.handler {
        HandlerConfig::Exec(exec) => {
            assert_eq!(exec.command, vec!["python3", "s.py"]);
            assert_eq!(exec.fatal_exit_codes, vec![2]);
        }
        other => panic!("unexpected handler {other:?}"),
    }
    // Header values are secrets: they never print.
    let debug = format!("{:?}", config.agents[&"fetch".into()]);
    assert!(!debug.contains("t0ken"), "{debug}");
}

#[test]
fn exec_pass_env_names_node_variables_and_never_herd_s_own() {
    let (_dir, path) = write_config(
        "[agents.tool]\nhandler = \"exec\"\ncommand = [\"tool\"]\npass_env = [\"REGION\", \"AWS_PROFILE\", \"REGION\"]\n",
    );
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    match &config.agents[&"tool".into()].handler {
        HandlerConfig::Exec(exec) => assert_eq!(exec.pass_env, vec!["AWS_PROFILE", "REGION"]),
        other => panic!("unexpected handler {other:?}"),
    }

    let (_dir, path) = write_config(
        "[agents.tool]\nhandler = \"exec\"\ncommand = [\"tool\"]\nenv = { MODE = \"fast\" }\npass_env = [\"HERD_COOKIE\", \"herd_api_token\", \"9LIVES\", \"A=B\", \"\", \"MODE\"]\n",
    );
    let message = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err()
    .to_string();
    for expected in [
        "agents.tool.pass_env: names \"HERD_COOKIE\"; HERD_* variables configure the node and hold its secrets",
        "agents.tool.pass_env: names \"herd_api_token\"; HERD_* variables",
        "agents.tool.pass_env: names \"9LIVES\", which is not an environment variable name",
        "agents.tool.pass_env: names \"A=B\", which is not an environment variable name",
        "agents.tool.pass_env: names \"\", which is not an environment variable name",
        "agents.tool.pass_env: names \"MODE\", which env also sets",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }

    let (_dir, path) = write_config(
        "[agents.fetch]\nhandler = \"http\"\nurl = \"http://127.0.0.1:9000/run\"\npass_env = [\"REGION\"]\n",
    );
    let message = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.contains("agents.fetch.pass_env: applies only to handler = \"exec\""),
        "{message}"
    );
}

#[test]
fn the_cookie_never_appears_in_debug_output() {
    let config = resolve(
        &Overrides {
            cookie: Some("very-secret-cookie".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert!(!format!("{config:?}").contains("very-secret-cookie"));
}

#[test]
fn retry_circuit_and_failure_detector_settings_layer_from_tasks_to_agents() {
    let (_dir, path) = write_config(
        "[tasks]\nretry_initial_s = 0.5\ncircuit_failures = 3\n\n[cluster]\nheartbeat_interval_ms = 100\nmax_silence_ms = 1500\n\n[agents.steady]\nhandler = \"echo\"\nretry = \"linear\"\nretry_delay_s = 5\n\n[agents.plain]\nhandler = \"echo\"\ncircuit_recovery_s = 2\n",
    );
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(
        config.tasks.retry,
        herd_protocol::RetrySpec::Exponential {
            initial_s: 0.5,
            factor: 2.0,
            max_s: 300.0
        }
    );
    assert_eq!(config.tasks.circuit.failures, 3);
    assert_eq!(
        config.cluster.failure_detector.heartbeat_interval,
        std::time::Duration::from_millis(100)
    );
    assert_eq!(
        config.cluster.failure_detector.max_silence,
        std::time::Duration::from_millis(1500)
    );
    let steady = &config.agents[&"steady".into()];
    assert_eq!(
        steady.retry,
        Some(herd_protocol::RetrySpec::Linear { delay_s: 5.0 })
    );
    assert_eq!(steady.circuit, None);
    let plain = &config.agents[&"plain".into()];
    assert_eq!(plain.retry, None);
    let circuit = plain.circuit.clone().unwrap();
    assert_eq!(
        (circuit.failures, circuit.recovery, circuit.half_open_trials),
        (3, std::time::Duration::from_secs(2), 3)
    );
    assert_eq!(config.drain_grace, std::time::Duration::from_secs(30));
}

#[test]
fn mismatched_retry_fields_are_rejected_with_the_fix() {
    let (_dir, path) = write_config(
        "[agents.x]\nhandler = \"echo\"\nretry = \"linear\"\nretry_factor = 3\n\n[agents.y]\nhandler = \"echo\"\nretry = \"random\"\n",
    );
    let errors = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err();
    let message = errors.to_string();
    assert!(
        message.contains(
            "retry_initial_s, retry_factor and retry_max_s apply only to retry = \"exponential\""
        ),
        "{message}"
    );
    assert!(
        message.contains(
            "agents.y.retry: \"random\" is not a backoff; use \"exponential\" or \"linear\""
        ),
        "{message}"
    );
    let errors = resolve(
        &Overrides {
            drain_grace: Some("forever".into()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains(
            "flag --drain-grace: node.drain_grace_s: \"forever\" is not a whole number of seconds"
        ),
        "{errors}"
    );
}

#[test]
fn scaling_presets_apply_and_explicit_keys_override_them() {
    use herd_config::DeploymentMode;
    let (_dir, path) = write_config(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n\n[scaling]\nmode = \"trusted-tester\"\nmax_workers = 20\nmax_cpu_per_worker = 2.0\n",
    );
    let with_file = Overrides {
        config: Some(path.clone()),
        ..Overrides::default()
    };
    let config = resolve(&with_file, &Environment::default()).unwrap();
    let s = &config.scaling;
    assert_eq!(s.mode, DeploymentMode::TrustedTester);
    assert_eq!((s.min_workers, s.max_workers), (5, 20));
    assert_eq!((s.scale_up_threshold, s.scale_down_threshold), (0.85, 0.3));
    assert_eq!(s.max_cpu_per_worker, Some(2.0));
    assert!(s.rebalance && s.autoscale);

    // The flag beats the variable, which beats the file.
    let env = Environment::from_pairs([("HERD_MODE", "development")]);
    assert_eq!(
        resolve(&with_file, &env).unwrap().scaling.mode,
        DeploymentMode::Development
    );
    let flag = Overrides {
        mode: Some("production".into()),
        ..with_file.clone()
    };
    let config = resolve(&flag, &env).unwrap();
    assert_eq!(config.scaling.mode, DeploymentMode::Production);
    assert_eq!(
        config.scaling.max_workers, 20,
        "the file's key still overrides the preset"
    );

    // No mode anywhere: static, nothing moves.
    let config = resolve(&minimal(), &Environment::default()).unwrap();
    assert_eq!(config.scaling.mode, DeploymentMode::Static);
    assert!(!config.scaling.rebalance && !config.scaling.autoscale);
}

#[test]
fn scaling_values_outside_seed_004s_ranges_are_refused_with_file_and_line() {
    let (_dir, path) = write_config(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n\n[scaling]\nmode = \"turbo\"\nmin_workers = 500\nmax_workers = 2000\nscale_up_threshold = 0.2\nscale_down_threshold = 0.6\nworker_timeout_seconds = 10\nmax_weight_step = 0.9\nmax_cpu_per_worker = nan\n",
    );
    let errors = resolve(
        &Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap_err();
    let message = errors.to_string();
    let at = |line: usize| format!("{}:{line}", path.display());
    for expected in [
        format!(
            "{}: scaling.mode: \"turbo\" is not a deployment mode",
            at(6)
        ),
        format!("{}: scaling.min_workers: is 500, outside 1..=100", at(7)),
        format!("{}: scaling.max_workers: is 2000, outside 1..=1000", at(8)),
        format!(
            "{}: scaling.scale_up_threshold: is 0.2, not above scale_down_threshold (0.6)",
            at(9)
        ),
        format!(
            "{}: scaling.worker_timeout_seconds: is 10, outside 60..=3600",
            at(11)
        ),
        format!(
            "{}: scaling.max_weight_step: is 0.9, outside 0.01..=0.5",
            at(12)
        ),
        format!(
            "{}: scaling.max_cpu_per_worker: is NaN, outside 0.5..=16",
            at(13)
        ),
    ] {
        assert!(
            message.contains(&expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

/// Resolves a file of a node's name and cookie and `[scaling]` with
/// `scaling`; returns its path too (for messages that name it).
fn resolve_scaling(
    scaling: &str,
) -> (
    PathBuf,
    Result<herd_config::NodeConfig, herd_config::ConfigErrors>,
) {
    let (dir, path) = write_config(&format!(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n\n[scaling]\n{scaling}"
    ));
    let resolved = resolve(
        &Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        },
        &Environment::default(),
    );
    drop(dir);
    (path, resolved)
}

#[test]
fn slot_credit_adapts_between_its_floor_and_ceiling_and_a_ceiling_below_the_floor_is_refused() {
    let credits = |config: herd_config::NodeConfig| {
        (config.scaling.slot_credit, config.scaling.max_slot_credit)
    };
    let defaults = resolve(&minimal(), &Environment::default()).unwrap();
    assert_eq!(credits(defaults), (4, 64));
    // slot_credit alone (a file from before the credit adapted) is a
    // fixed credit, as it was.
    assert_eq!(
        credits(resolve_scaling("slot_credit = 8\n").1.unwrap()),
        (8, 8)
    );
    assert_eq!(
        credits(
            resolve_scaling("slot_credit = 2\nmax_slot_credit = 16\n")
                .1
                .unwrap()
        ),
        (2, 16)
    );

    let (path, resolved) = resolve_scaling("slot_credit = 8\nmax_slot_credit = 2\n");
    let message = resolved.unwrap_err().to_string();
    let expected = format!(
        "{}:7: scaling.max_slot_credit: is 2, below slot_credit (8); raise max_slot_credit, or set both equal for a fixed credit",
        path.display()
    );
    assert!(
        message.contains(&expected),
        "missing {expected:?} in:\n{message}"
    );
    let message = resolve_scaling("max_slot_credit = 500\n")
        .1
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("scaling.max_slot_credit: is 500, outside 1..=128"),
        "{message}"
    );
}

#[test]
fn http_server_bounds_come_from_the_http_section_and_are_range_checked() {
    let (_dir, path) = write_config(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n[http]\nmax_connections = 100\nheader_timeout_s = 2\n",
    );
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(config.http_server.max_connections, 100);
    assert_eq!(config.http_server.header_timeout.as_secs(), 2);
    assert_eq!(config.http_server.request_timeout.as_secs(), 60);

    let (_dir, path) = write_config(
        "[node]\nname = \"n1\"\ncookie = \"c-cookie-for-this-test\"\n[http]\nbody_timeout_s = 0\n",
    );
    let errors = resolve(
        &Overrides {
            config: Some(path),
            ..Overrides::default()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(errors.mentions("http.body_timeout_s"), "{errors}");
}

#[test]
fn each_node_watches_five_peers_unless_configured_and_never_fewer_than_two() {
    let config = resolve(&minimal(), &Environment::default()).unwrap();
    assert_eq!(config.cluster.watchers, 5);

    let (_dir, path) = write_config("[cluster]\nwatchers = 3\n");
    let config = resolve(
        &Overrides {
            config: Some(path),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap();
    assert_eq!(config.cluster.watchers, 3);

    let (_dir, path) = write_config("[cluster]\nwatchers = 1\n");
    let errors = resolve(
        &Overrides {
            config: Some(path.clone()),
            ..minimal()
        },
        &Environment::default(),
    )
    .unwrap_err();
    assert!(
        errors.to_string().contains(&format!(
            "{}:2: cluster.watchers: is 1, outside 2..=16",
            path.display()
        )),
        "{errors}"
    );
}
