//! From a request path to a bounded `endpoint` label: the route templates a
//! service declares (configuration, its OpenAPI document), else a heuristic
//! that turns identifiers into `{id}`.
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`.
    Param(String),
}

/// One route template such as `/api/v1/agents/{agent_name}/invoke`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: Arc<str>,
    segments: Vec<Segment>,
}

impl Template {
    /// `None` for a template that does not start with `/`.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix('/')?;
        let segments = rest
            .split('/')
            .map(|s| {
                if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Segment::Param(name.to_owned())
                } else {
                    Segment::Literal(s.to_owned())
                }
            })
            .collect();
        Some(Self {
            text: Arc::from(text),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The template up to its first parameter (`/api/v1/agents/` of
    /// `/api/v1/agents/{agent_name}/invoke`): every matching path starts
    /// with it.
    pub fn literal_prefix(&self) -> &str {
        self.text.split('{').next().unwrap_or_default()
    }

    /// Names of the template's parameters.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether the template matches `path` (no allocation: route rules ask
    /// this of every request).
    pub fn matches_path(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        self.segments.iter().all(|t| match (t, parts.next()) {
            (Segment::Param(_), Some(s)) => !s.is_empty(),
            (Segment::Literal(l), Some(s)) => l == s,
            (_, None) => false,
        }) && parts.next().is_none()
    }

    /// The parameters' values in `path`, if the template matches it.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if !self.matches(&segments) {
            return None;
        }
        Some(
            self.segments
                .iter()
                .zip(segments)
                .filter_map(|(t, s)| match t {
                    Segment::Param(name) => Some((name.as_str(), s)),
                    Segment::Literal(_) => None,
                })
                .collect(),
        )
    }

    fn literals(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(t, s)| match t {
                Segment::Param(_) => !s.is_empty(),
                Segment::Literal(l) => l == s,
            })
    }
}

/// The route templates of one service, most specific first.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    templates: Vec<Template>,
}

impl Routes {
    pub fn new(templates: impl IntoIterator<Item = Template>) -> Self {
        let mut routes = Self::default();
        routes.extend(templates);
        routes
    }

    /// Adds templates (duplicates ignored); literal segments win over
    /// parameters (`/users/me` before `/users/{id}`).
    pub fn extend(&mut self, templates: impl IntoIterator<Item = Template>) {
        for template in templates {
            if !self.templates.contains(&template) {
                self.templates.push(template);
            }
        }
        self.templates
            .sort_by_key(|t| std::cmp::Reverse(t.literals()));
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// The endpoint label of a path (already without its query string;
    /// empty when it could not be read: `unknown`).
    pub fn endpoint(&self, path: &str) -> String {
        match path {
            "*" => return path.to_owned(), // the asterisk form of `OPTIONS *`
            "" => return "unknown".to_owned(),
            _ => {}
        }
        if let Some(template) = self.route(path) {
            return template.to_owned();
        }
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        heuristic(&trimmed.split('/').collect::<Vec<_>>())
    }

    /// The template a path matches, if one is known (configured, or from
    /// an OpenAPI document): a route, not a guess.
    pub fn route(&self, path: &str) -> Option<&str> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let segments: Vec<&str> = trimmed.split('/').collect();
        self.templates
            .iter()
            .find(|t| t.matches(&segments))
            .map(Template::as_str)
    }
}

/// A path segment that is an identifier rather than part of a route.
fn is_identifier(segment: &str) -> bool {
    let len = segment.len();
    if len == 0 {
        return false;
    }
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let hex = segment.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    digits == len
        || is_uuid(segment)
        || (hex && len >= 16 && digits > 0)
        || (len >= 20
            && digits > 0
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='))
        || len > 48
}

fn is_uuid(segment: &str) -> bool {
    let groups: Vec<&str> = segment.split('-').collect();
    groups.len() == 5
        && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn heuristic(segments: &[&str]) -> String {
    let mut out = String::new();
    for segment in segments {
        out.push('/');
        if is_identifier(segment) {
            out.push_str("{id}");
        } else {
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[&str]) -> Routes {
        Routes::new(list.iter().map(|t| Template::parse(t).unwrap()))
    }

    #[test]
    fn templates_match_segment_by_segment() {
        let r = routes(&[
            "/api/v1/agents/{agent_name}/invoke",
            "/users/{id}",
            "/users/me",
        ]);
        assert_eq!(
            r.endpoint("/api/v1/agents/planner/invoke"),
            "/api/v1/agents/{agent_name}/invoke"
        );
        assert_eq!(r.endpoint("/users/me"), "/users/me");
        assert_eq!(r.endpoint("*"), "*", "OPTIONS *");
        assert_eq!(r.endpoint("/users/alice"), "/users/{id}");
        assert_eq!(
            r.endpoint("/users/"),
            "/users/",
            "an empty segment is no parameter"
        );
        assert_eq!(
            r.endpoint("/api/v1/agents/planner"),
            "/api/v1/agents/planner"
        );
        assert_eq!(Template::parse("no-slash"), None);
        let t = Template::parse("/agents/{name}/invoke").unwrap();
        for (path, matches) in [
            ("/agents/a/invoke", true),
            ("/agents//invoke", false),
            ("/agents/a/invoke/x", false),
            ("/agents/a", false),
            ("agents/a/invoke", false),
        ] {
            assert_eq!(t.matches_path(path), matches, "{path}");
            assert_eq!(t.captures(path).is_some(), matches, "{path}");
        }
        assert_eq!(t.captures("/agents/a/invoke").unwrap(), [("name", "a")]);
    }

    #[test]
    fn identifiers_become_id() {
        let r = Routes::default();
        assert_eq!(
            r.endpoint("/orders/12345/items/7"),
            "/orders/{id}/items/{id}"
        );
        assert_eq!(
            r.endpoint("/sessions/3f2c9a1e-8b7d-4c6e-9f0a-1b2c3d4e5f60"),
            "/sessions/{id}"
        );
        assert_eq!(r.endpoint("/blobs/deadbeefcafe0123456789"), "/blobs/{id}");
        assert_eq!(r.endpoint("/t/dGhpcyBpcyBhIHRva2VuMTIz"), "/t/{id}");
        assert_eq!(
            r.endpoint("/agents/planner/invoke"),
            "/agents/planner/invoke"
        );
        assert_eq!(r.endpoint("/v2/health"), "/v2/health");
        assert_eq!(r.endpoint("/"), "/");
    }
}
