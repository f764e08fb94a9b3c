//! The soak's bookkeeping: loupe's exposition read into series, the load
//! generator's tally turned into the series it should produce, and the
//! comparison of the two between checkpoints.
use std::collections::BTreeMap;

/// A series: its family and its labels, sorted.
pub type Key = (String, Vec<(String, String)>);

/// One scrape of `/metrics`: every sample by series.
#[derive(Clone, Default, Debug)]
pub struct Scrape(pub BTreeMap<Key, f64>);

impl Scrape {
    /// Reads the text exposition (lines `name{a="b",...} value`).
    pub fn parse(text: &str) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.insert((name.to_owned(), labels), value);
        }
        Self(samples)
    }

    /// The sum of `family`'s series whose labels include `with`, by the
    /// labels named in `by`.
    pub fn sum_by(&self, family: &str, with: &[(&str, &str)], by: &[&str]) -> BTreeMap<Key, f64> {
        let mut sums = BTreeMap::new();
        for ((name, labels), value) in &self.0 {
            if name != family {
                continue;
            }
            let get = |key: &str| {
                labels
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str())
            };
            if with.iter().any(|(k, v)| get(k) != Some(v)) {
                continue;
            }
            let kept: Vec<(String, String)> = by
                .iter()
                .map(|k| ((*k).to_owned(), get(k).unwrap_or("").to_owned()))
                .collect();
            *sums.entry((family.to_owned(), kept)).or_insert(0.0) += value;
        }
        sums
    }

    /// One sample's value (0 when absent).
    pub fn get(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        self.0
            .get(&(family.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }
}

/// `a="b",c="d"` (values as loupe writes them: `\"`, `\\` and `\n`
/// escaped).
fn labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.push((name.trim_start_matches(',').to_owned(), value));
        rest = &after[end..];
    }
    out.sort();
    out
}

/// The load generator's tally: answers by `METHOD PATH STATUS`.
pub type Tally = BTreeMap<String, u64>;

/// The route template of a path the load generator sends.
fn template(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "auth", _, "login"] => "/auth/{provider}/login".into(),
        ["", "agents", _, "invoke"] => "/agents/{agent_name}/invoke".into(),
        ["", "tools", _, "execute"] => "/tools/{tool_name}/execute".into(),
        _ => path.into(),
    }
}

fn key(family: &str, labels: &[(&str, &str)]) -> Key {
    (
        family.to_owned(),
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

/// The families the soak compares, and the labels it compares them by.
pub const COMPARED: &[(&str, &[&str])] = &[
    ("agent_requests_total", &["method", "endpoint", "status"]),
    ("auth_login_total", &["provider", "success"]),
    ("auth_token_refresh_total", &["provider", "success"]),
    ("agent_invocations_total", &["agent_name", "status"]),
    ("tool_invocations_total", &["tool_name", "status"]),
];

/// What loupe should count for `tally`, in the series of [`COMPARED`].
pub fn expected(tally: &Tally) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for (answer, count) in tally {
        let mut parts = answer.split(' ');
        let (Some(method), Some(path), Some(status)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let count = *count as f64;
        let endpoint = template(path);
        let ok = status.starts_with('2');
        let mut add = |key: Key| *out.entry(key).or_insert(0.0) += count;
        add(key(
            "agent_requests_total",
            &[
                ("method", method),
                ("endpoint", &endpoint),
                ("status", status),
            ],
        ));
        let segments: Vec<&str> = path.split('/').collect();
        let success = if ok { "true" } else { "false" };
        let outcome = if ok { "success" } else { "error" };
        match segments.as_slice() {
            ["", "auth", provider, "login"] => add(key(
                "auth_login_total",
                &[("provider", provider), ("success", success)],
            )),
            ["", "auth", "refresh"] => add(key(
                "auth_token_refresh_total",
                &[("provider", "local"), ("success", success)],
            )),
            ["", "agents", agent, "invoke"] => add(key(
                "agent_invocations_total",
                &[("agent_name", agent), ("status", outcome)],
            )),
            ["", "tools", tool, "execute"] => add(key(
                "tool_invocations_total",
                &[("tool_name", tool), ("status", outcome)],
            )),
            _ => {}
        }
    }
    out
}

/// What loupe counted for `service`, in the series of [`COMPARED`].
pub fn counted(scrape: &Scrape, service: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for (family, by) in COMPARED {
        out.extend(scrape.sum_by(family, &[("service", service)], by));
    }
    out
}

/// What each counter gained from `earlier` to `later`, series by series
/// (absent: 0). A counter that went down was reset, as Prometheus reads
/// it: loupe drops a series idle for 10 minutes, and one that comes back
/// starts again from 0, so what it holds now is all it gained.
pub fn delta(later: &BTreeMap<Key, f64>, earlier: &BTreeMap<Key, f64>) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for (key, &now) in later {
        let before = earlier.get(key).copied().unwrap_or(0.0);
        out.insert(key.clone(), if now >= before { now - before } else { now });
    }
    out.retain(|_, v| *v != 0.0);
    out
}

/// The series where `got` and `want` differ: `(series, got, want)`.
pub fn differences(got: &BTreeMap<Key, f64>, want: &BTreeMap<Key, f64>) -> Vec<(String, f64, f64)> {
    let mut keys: Vec<&Key> = got.keys().chain(want.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (g, w) = (
                got.get(key).copied().unwrap_or(0.0),
                want.get(key).copied().unwrap_or(0.0),
            );
            (g != w).then(|| (show(key), g, w))
        })
        .collect()
}

pub fn show((family, labels): &Key) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{family}{{{}}}", labels.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_becomes_the_series_loupe_should_count() {
        let tally = Tally::from([
            ("POST /auth/password/login 200".to_owned(), 4),
            ("POST /auth/password/login 401".to_owned(), 1),
            ("POST /agents/coder/invoke 200".to_owned(), 3),
            ("POST /tools/broken/execute 500".to_owned(), 2),
        ]);
        let want = expected(&tally);
        let text = "# HELP x\n\
            agent_requests_total{auth_type=\"none\",endpoint=\"/auth/{provider}/login\",method=\"POST\",service=\"s\",status=\"200\"} 4\n\
            agent_requests_total{auth_type=\"none\",endpoint=\"/auth/{provider}/login\",method=\"POST\",service=\"s\",status=\"401\"} 1\n\
            agent_requests_total{auth_type=\"jwt\",endpoint=\"/agents/{agent_name}/invoke\",method=\"POST\",service=\"s\",status=\"200\"} 1\n\
            agent_requests_total{auth_type=\"api_key\",endpoint=\"/agents/{agent_name}/invoke\",method=\"POST\",service=\"s\",status=\"200\"} 2\n\
            agent_requests_total{auth_type=\"jwt\",endpoint=\"/tools/{tool_name}/execute\",method=\"POST\",service=\"s\",status=\"500\"} 2\n\
            agent_requests_total{auth_type=\"jwt\",endpoint=\"/tools/{tool_name}/execute\",method=\"POST\",service=\"other\",status=\"500\"} 9\n\
            auth_login_total{provider=\"password\",service=\"s\",success=\"true\"} 4\n\
            auth_login_total{provider=\"password\",service=\"s\",success=\"false\"} 1\n\
            agent_invocations_total{agent_name=\"coder\",service=\"s\",status=\"success\"} 3\n\
            tool_invocations_total{service=\"s\",status=\"error\",tool_name=\"broken\"} 2\n";
        let scrape = Scrape::parse(text);
        assert_eq!(differences(&counted(&scrape, "s"), &want), vec![]);
        let short = Scrape::parse(&text.replace("success=\"true\"} 4", "success=\"true\"} 3"));
        assert_eq!(
            differences(&counted(&short, "s"), &want),
            vec![(
                "auth_login_total{provider=\"password\",success=\"true\"}".to_owned(),
                3.0,
                4.0
            )]
        );
        assert_eq!(
            scrape.get(
                "auth_login_total",
                &[
                    ("service", "s"),
                    ("provider", "password"),
                    ("success", "false")
                ]
            ),
            1.0
        );
    }

    #[test]
    fn a_counter_that_expired_or_restarted_gained_what_it_holds() {
        let k = |name: &str| key(name, &[]);
        let earlier = BTreeMap::from([(k("kept"), 5.0), (k("expired"), 3074.0), (k("back"), 9.0)]);
        let later = BTreeMap::from([(k("kept"), 7.0), (k("back"), 2.0), (k("new"), 1.0)]);
        let gained = delta(&later, &earlier);
        assert_eq!(
            gained,
            BTreeMap::from([(k("kept"), 2.0), (k("back"), 2.0), (k("new"), 1.0)])
        );
    }

    #[test]
    fn escaped_label_values_are_read_whole() {
        let scrape = Scrape::parse("m{a=\"x\\\"y,z\",b=\"2\"} 7\n");
        assert_eq!(scrape.get("m", &[("a", "x\"y,z"), ("b", "2")]), 7.0);
    }
}
