//! Route matching: (listener routes, Host, path) → the route to use and the path to forward.
//! Pure functions; the proxy calls [`select`] once per request and keeps the result in its context.

use crate::config::{PathPrefix, Route};

/// The outcome of matching one request.
#[derive(Debug)]
pub struct Selected<'a> {
    /// The first route that matched.
    pub route: &'a Route,
    /// Index of that route in the listener's list, for logs.
    pub index: usize,
    /// Path and query to send upstream, when the route strips its prefix.
    pub rewritten: Option<String>,
}

/// Finds the first route whose host and path prefix match. `host` may carry a port; `path_and_query`
/// is the request target as received.
pub fn select<'a>(
    routes: &'a [Route],
    host: Option<&str>,
    path_and_query: &str,
) -> Option<Selected<'a>> {
    let host = host.map(strip_port);
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    routes.iter().enumerate().find_map(|(index, route)| {
        if let Some(want) = &route.host {
            match host {
                Some(h) if h.eq_ignore_ascii_case(want) => {}
                _ => return None,
            }
        }
        let rest = match &route.path_prefix {
            Some(prefix) => prefix_match(prefix, path)?,
            None => path,
        };
        let rewritten = (route.strip_prefix && route.path_prefix.is_some()).then(|| {
            let rest = if rest.starts_with('/') {
                rest.to_owned()
            } else {
                format!("/{rest}")
            };
            format!("{rest}{query}")
        });
        Some(Selected {
            route,
            index,
            rewritten,
        })
    })
}

/// Matches `path` against `prefix` segment by segment and returns what follows the prefix.
/// `/users` matches `/users`, `/users/` and `/users/42`, not `/usersx`; a prefix written with a
/// trailing slash (`/ws/`) needs that slash in the path.
fn prefix_match<'p>(prefix: &PathPrefix, path: &'p str) -> Option<&'p str> {
    // Invariant: `remainder` is empty or starts with '/'.
    let mut remainder = path;
    for segment in &prefix.segments {
        let after_slash = remainder.strip_prefix('/')?;
        let end = after_slash.find('/').unwrap_or(after_slash.len());
        let head = &after_slash[..end];
        match segment {
            Some(s) if s == head => {}
            None if !head.is_empty() => {}
            _ => return None,
        }
        remainder = &after_slash[end..];
    }
    if prefix.trailing_slash {
        remainder = remainder.strip_prefix('/')?;
    }
    Some(remainder)
}

/// Drops a `:port` suffix from a Host value, keeping bracketed IPv6 literals whole.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        return &host[..end + 2];
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: Option<&str>, strip: bool, upstream: usize) -> Route {
        Route {
            host: host.map(str::to_owned),
            path_prefix: prefix.map(|p| PathPrefix::parse(p).unwrap()),
            strip_prefix: strip,
            upstream,
        }
    }

    fn pick(routes: &[Route], host: Option<&str>, path: &str) -> Option<(usize, Option<String>)> {
        select(routes, host, path).map(|s| (s.route.upstream, s.rewritten))
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = [
            route(None, Some("/users"), false, 0),
            route(None, None, false, 1),
        ];
        assert_eq!(pick(&routes, None, "/users/1"), Some((0, None)));
        assert_eq!(pick(&routes, None, "/other"), Some((1, None)));
    }

    #[test]
    fn prefix_matches_whole_segments_only() {
        let routes = [route(None, Some("/users"), false, 0)];
        assert!(pick(&routes, None, "/users").is_some());
        assert!(pick(&routes, None, "/users/").is_some());
        assert!(pick(&routes, None, "/users/42?x=1").is_some());
        assert!(pick(&routes, None, "/users?x=1").is_some());
        assert!(pick(&routes, None, "/usersx").is_none());
        assert!(pick(&routes, None, "/").is_none());
    }

    #[test]
    fn wildcard_segment_matches_any_one_segment() {
        let routes = [route(None, Some("/*/clients"), false, 0)];
        assert!(pick(&routes, None, "/d0m41n/clients").is_some());
        assert!(pick(&routes, None, "/d0m41n/clients/7/connect").is_some());
        assert!(pick(&routes, None, "/clients").is_none());
        assert!(pick(&routes, None, "//clients").is_none());
        assert!(pick(&routes, None, "/d/channels").is_none());
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash_and_the_query() {
        let routes = [route(None, Some("/ws/"), true, 0)];
        assert_eq!(
            pick(&routes, None, "/ws/c/1?a=b"),
            Some((0, Some("/c/1?a=b".into())))
        );
        assert_eq!(pick(&routes, None, "/ws/"), Some((0, Some("/".into()))));
        assert!(pick(&routes, None, "/ws").is_none());
        let routes = [route(None, Some("/api"), true, 0)];
        assert_eq!(
            pick(&routes, None, "/api/v1"),
            Some((0, Some("/v1".into())))
        );
        assert_eq!(pick(&routes, None, "/api"), Some((0, Some("/".into()))));
        assert_eq!(pick(&routes, None, "/api?q"), Some((0, Some("/?q".into()))));
    }

    #[test]
    fn host_matches_case_insensitively_without_port() {
        let routes = [
            route(Some("api.example.com"), None, false, 0),
            route(None, None, false, 1),
        ];
        assert_eq!(
            pick(&routes, Some("API.example.com:8443"), "/"),
            Some((0, None))
        );
        assert_eq!(
            pick(&routes, Some("other.example.com"), "/"),
            Some((1, None))
        );
        assert_eq!(pick(&routes, None, "/"), Some((1, None)));
    }

    #[test]
    fn no_match_is_none() {
        let routes = [route(Some("a"), Some("/x"), false, 0)];
        assert!(pick(&routes, Some("a"), "/y").is_none());
        assert!(pick(&routes, Some("b"), "/x").is_none());
    }

    #[test]
    fn strip_port_handles_ipv6_literals() {
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("localhost:80"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
    }
}
