//! Route rules read every matching response from the very first one: a
//! Flask agent service under gunicorn's sync workers answers invocations
//! as soon as they arrive, one new connection each, right after loupe
//! attaches. And a rule that reads a request body it does not get (a token
//! refresh without one) takes its fallback, not an error. Root required.
use loupe_tests::{Agent, fixture, free_port, one_shot, require_root, series, served, targets};

const SERVICE: &str = "flask-agents";
const INVOCATIONS: u64 = 17;
const REFRESHES: u64 = 5;

#[test]
fn the_first_matching_responses_are_read_and_bodiless_requests_use_fallbacks() {
    require_root();
    let port = free_port();
    let _server = served(
        &format!(
            "python3 -m gunicorn flask_agents:app --chdir {} --workers 2 --bind 127.0.0.1:{port}",
            fixture("").display()
        ),
        port,
    );
    let agent = Agent::start(&["--port", &port.to_string(), "--service", SERVICE]);
    // The gunicorn master and its two workers.
    agent.wait_for(&targets(SERVICE), 3.0);
    let mut input = 0;
    for n in 1..=INVOCATIONS {
        let body = format!("{{\"n\": {n}}}");
        assert_eq!(
            one_shot(port, "POST", "/api/v1/agents/planner/invoke", Some(&body)),
            200
        );
        input += n;
    }
    for _ in 0..REFRESHES {
        assert_eq!(
            one_shot(port, "POST", "/api/v1/auth/refresh", Some("")),
            200
        );
    }
    let tokens = |kind: &str| {
        series(
            "agent_tokens_used_total",
            &[
                ("service", SERVICE),
                ("agent_name", "planner"),
                ("token_type", kind),
            ],
        )
    };
    agent.wait_for(&tokens("input"), input as f64);
    agent.wait_for(&tokens("output"), (11 * INVOCATIONS) as f64);
    let scrape = agent.wait_for(
        &series(
            "auth_token_refresh_total",
            &[
                ("service", SERVICE),
                ("provider", "local"),
                ("success", "true"),
            ],
        ),
        REFRESHES as f64,
    );
    let runs = series(
        "agent_invocations_total",
        &[
            ("service", SERVICE),
            ("agent_name", "planner"),
            ("status", "success"),
        ],
    );
    assert_eq!(
        scrape.get(&runs),
        Some(INVOCATIONS as f64),
        "{}",
        scrape.text
    );
    let errors: f64 = scrape
        .matching("loupe_rule_errors_total{")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "{}", scrape.text);
    agent.assert_nothing_lost();
}
