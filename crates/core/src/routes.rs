//! The custom-route table: `GET /hello/{who}` → function, like an API gateway.
//!
//! Routes belong to a namespace: each namespace has its own table, so two
//! namespaces may declare the same paths. A request reaches a namespace's
//! routes ([`resolve`]):
//!
//! 1. by a host name the operator assigned to the namespace
//!    (`--route-host shop.example.com=shop`): at the root of that host;
//! 2. under `/r/{ns}/…` on any host: `/r/shop/hello/x` is `shop`'s
//!    `/hello/x`;
//! 3. otherwise the `default` namespace's routes, at the root.
//!
//! For a request path the matcher picks the most specific pattern (static
//! before parameter before catch-all), and only that pattern's methods
//! answer. So two functions may share a path only as the same pattern with
//! disjoint methods (`GET /x/{id}` and `POST /x/{id}`); two different
//! patterns of two functions that match some of the same paths conflict,
//! whatever their methods: with `GET /users/{id}` of one function and
//! `/users/me` (any method, or only `POST`) of another, the second would
//! silently take `GET /users/me` from the first. Conflicts are reported at
//! deploy time. One function's own patterns may overlap; the most specific
//! one answers.

use nimbus_api::Route;
use std::collections::HashMap;

/// Which function a route belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone)]
struct Entry {
    methods: Vec<String>,
    target: Target,
    route: Route,
}

/// A match: the function and the path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub target: Target,
    pub route: Route,
    pub params: Vec<(String, String)>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(RouteMatch),
    /// The path exists but not for this method; these are the methods it
    /// takes (for the `Allow` header).
    MethodNotAllowed(Vec<String>),
    NotFound,
}

#[derive(Default)]
pub struct RouteTable {
    router: matchit::Router<usize>,
    /// Entries per distinct path pattern, indexed by the router's value.
    paths: Vec<Vec<Entry>>,
    index: HashMap<String, usize>,
    /// Patterns by their first segment when it is static, so that an
    /// overlap check compares with the few patterns that can overlap.
    by_first_segment: HashMap<String, Vec<usize>>,
    /// Patterns whose first segment is a parameter or a catch-all.
    wild_first: Vec<usize>,
}

/// One segment of a route pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment<'a> {
    Static(&'a str),
    /// `{name}`: one non-empty segment.
    Param,
    /// `{*name}`: the rest of the path, one segment or more.
    CatchAll,
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    path.trim_start_matches('/')
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(inner) if inner.starts_with('*') => Segment::CatchAll,
                Some(_) => Segment::Param,
                None => Segment::Static(seg),
            },
        )
        .collect()
}

/// Whether the rest of a pattern can match a non-empty rest of a path.
fn matches_something(rest: &[Segment<'_>]) -> bool {
    !matches!(rest, [] | [Segment::Static("")])
}

/// Whether some request path matches both patterns.
fn patterns_overlap(a: &[Segment<'_>], b: &[Segment<'_>]) -> bool {
    match (a.split_first(), b.split_first()) {
        (None, None) => true,
        // A catch-all takes one character or more: not the empty rest of
        // `/files/`, nor nothing at all.
        (Some((Segment::CatchAll, _)), _) => matches_something(b),
        (_, Some((Segment::CatchAll, _))) => matches_something(a),
        (None, Some(_)) | (Some(_), None) => false,
        (Some((x, a_rest)), Some((y, b_rest))) => {
            let same_segment = match (x, y) {
                (Segment::Static(s), Segment::Static(t)) => s == t,
                (Segment::Static(s), _) | (_, Segment::Static(s)) => !s.is_empty(),
                _ => true,
            };
            same_segment && patterns_overlap(a_rest, b_rest)
        }
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable")
            .field("paths", &self.index.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

/// Every namespace's route table.
#[derive(Default)]
pub struct Routes {
    tables: HashMap<String, RouteTable>,
}

impl Routes {
    /// Builds each namespace's table from its functions' routes; fails on
    /// the first conflict within a namespace.
    pub fn build<'a>(
        routes: impl IntoIterator<Item = (Target, &'a [Route])>,
    ) -> Result<Routes, String> {
        let mut tables: HashMap<String, RouteTable> = HashMap::new();
        for (target, list) in routes {
            let table = tables.entry(target.namespace.clone()).or_default();
            for route in list {
                table.insert(target.clone(), route.clone())?;
            }
        }
        Ok(Routes { tables })
    }

    /// Finds the function for `method path` among `namespace`'s routes.
    pub fn lookup(&self, namespace: &str, method: &str, path: &str) -> Lookup {
        self.tables
            .get(namespace)
            .map_or(Lookup::NotFound, |t| t.lookup(method, path))
    }
}

/// Where a request's custom route is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteScope<'a> {
    pub namespace: String,
    /// The path within the namespace.
    pub path: std::borrow::Cow<'a, str>,
    /// The part of the request path before it (`/r/shop`), if any.
    pub prefix: Option<String>,
}

/// The prefix under which every namespace's routes are reachable.
pub const NAMESPACE_ROUTE_PREFIX: &str = "/r/";

/// The namespace and path a request for `path` with `Host: host` looks
/// up, given the operator's host names per namespace (lower-case, without
/// a port).
pub fn resolve<'a>(
    hosts: &HashMap<String, String>,
    host: Option<&str>,
    path: &'a str,
) -> RouteScope<'a> {
    if !hosts.is_empty()
        && let Some(host) = host
    {
        let name = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if let Some(ns) = hosts.get(&name.to_ascii_lowercase()) {
            return RouteScope {
                namespace: ns.clone(),
                path: path.into(),
                prefix: None,
            };
        }
    }
    if let Some(rest) = path.strip_prefix(NAMESPACE_ROUTE_PREFIX) {
        let (ns, within) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if nimbus_api::Namespace::new(ns).is_ok() {
            return RouteScope {
                namespace: ns.to_owned(),
                path: within.into(),
                prefix: Some(format!("/r/{ns}")),
            };
        }
    }
    RouteScope {
        namespace: "default".to_owned(),
        path: path.into(),
        prefix: None,
    }
}

impl RouteTable {
    /// Builds a table from every function's routes; fails on the first conflict.
    pub fn build<'a>(
        routes: impl IntoIterator<Item = (Target, &'a [Route])>,
    ) -> Result<RouteTable, String> {
        let mut table = RouteTable::default();
        for (target, list) in routes {
            for route in list {
                table.insert(target.clone(), route.clone())?;
            }
        }
        Ok(table)
    }

    /// The first route of another function whose pattern differs from
    /// `route`'s but matches some of the same paths (whatever the methods:
    /// the most specific pattern takes the path for all of them).
    fn overlapping(&self, target: &Target, route: &Route) -> Option<&Entry> {
        let mine = segments(&route.path);
        let candidates: Box<dyn Iterator<Item = usize>> = match mine.first() {
            Some(Segment::Static(s)) => Box::new(
                self.by_first_segment
                    .get(*s)
                    .into_iter()
                    .flatten()
                    .chain(&self.wild_first)
                    .copied(),
            ),
            _ => Box::new(0..self.paths.len()),
        };
        candidates
            .filter_map(|i| self.paths.get(i))
            .find_map(|entries| {
                let other = entries.iter().find(|e| e.target != *target)?;
                (other.route.path != route.path
                    && patterns_overlap(&mine, &segments(&other.route.path)))
                .then_some(other)
            })
    }

    /// Adds a route; an error names the conflicting route and function.
    pub fn insert(&mut self, target: Target, route: Route) -> Result<(), String> {
        if let Some(other) = self.overlapping(&target, &route) {
            return Err(format!(
                "route {route} overlaps route {} of function {}/{}: some request paths match both; \
                 choose a path that no other function's route matches, or the very same pattern with other methods",
                other.route, other.target.namespace, other.target.name
            ));
        }
        if let Some(&i) = self.index.get(&route.path) {
            if let Some(other) = self.paths[i]
                .iter()
                .find(|e| e.target != target && overlap(&e.methods, &route.methods))
            {
                return Err(format!(
                    "route {route} conflicts with route {} of function {}/{}",
                    other.route, other.target.namespace, other.target.name
                ));
            }
            self.paths[i].push(Entry {
                methods: route.methods.clone(),
                target,
                route,
            });
            return Ok(());
        }
        let i = self.paths.len();
        self.router.insert(route.path.clone(), i).map_err(|e| {
            let owner = match &e {
                matchit::InsertError::Conflict { with } => self
                    .index
                    .get(with)
                    .and_then(|&j| self.paths[j].first())
                    .map(|e| format!(" of function {}/{}", e.target.namespace, e.target.name))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!("route {route}: {e}{owner}")
        })?;
        self.index.insert(route.path.clone(), i);
        match segments(&route.path).first() {
            Some(Segment::Static(s)) => self
                .by_first_segment
                .entry((*s).to_owned())
                .or_default()
                .push(i),
            _ => self.wild_first.push(i),
        }
        self.paths.push(vec![Entry {
            methods: route.methods.clone(),
            target,
            route,
        }]);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Finds the function for `method path`.
    pub fn lookup(&self, method: &str, path: &str) -> Lookup {
        let Ok(m) = self.router.at(path) else {
            return Lookup::NotFound;
        };
        let Some(entries) = self.paths.get(*m.value) else {
            return Lookup::NotFound;
        };
        let hit = entries
            .iter()
            .find(|e| e.route.matches_method(method))
            .or_else(|| {
                // HEAD is served by a GET route, as HTTP servers do.
                (method == "HEAD")
                    .then(|| entries.iter().find(|e| e.route.matches_method("GET")))
                    .flatten()
            });
        match hit {
            Some(e) => Lookup::Found(RouteMatch {
                target: e.target.clone(),
                route: e.route.clone(),
                params: m
                    .params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            }),
            None => {
                let mut allowed: Vec<String> = entries
                    .iter()
                    .flat_map(|e| e.methods.iter().cloned())
                    .collect();
                if allowed.iter().any(|m| m == "GET") {
                    allowed.push("HEAD".to_owned());
                }
                allowed.sort();
                allowed.dedup();
                Lookup::MethodNotAllowed(allowed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::manifest::parse_route;

    fn t(name: &str) -> Target {
        Target {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn r(s: &str) -> Route {
        parse_route(s).expect("route")
    }

    #[test]
    fn matches_params_and_methods() {
        let mut table = RouteTable::default();
        table
            .insert(t("greet"), r("GET /hello/{who}"))
            .expect("insert");
        table
            .insert(t("upload"), r("POST /hello/{who}"))
            .expect("same path, other method");
        table
            .insert(t("files"), r("/files/{*rest}"))
            .expect("catch-all");
        match table.lookup("GET", "/hello/alice") {
            Lookup::Found(m) => {
                assert_eq!(m.target, t("greet"));
                assert_eq!(m.params, vec![("who".to_owned(), "alice".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(table.lookup("HEAD", "/hello/a"), Lookup::Found(m) if m.target == t("greet"))
        );
        assert!(
            matches!(table.lookup("POST", "/hello/a"), Lookup::Found(m) if m.target == t("upload"))
        );
        assert_eq!(
            table.lookup("DELETE", "/hello/a"),
            Lookup::MethodNotAllowed(vec!["GET".into(), "HEAD".into(), "POST".into()])
        );
        assert_eq!(table.lookup("GET", "/nothing"), Lookup::NotFound);
        match table.lookup("PUT", "/files/a/b/c") {
            Lookup::Found(m) => assert_eq!(m.params[0].1, "a/b/c"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn conflicts_are_reported() {
        let mut table = RouteTable::default();
        table.insert(t("a"), r("GET /x/{id}")).expect("insert");
        let e = table.insert(t("b"), r("GET /x/{id}")).unwrap_err();
        assert!(e.contains("function default/a"), "{e}");
        let e = table.insert(t("b"), r("/x/{id}")).unwrap_err();
        assert!(e.contains("conflicts"), "{e}");
        let e = table.insert(t("b"), r("GET /x/{other}")).unwrap_err();
        assert!(e.contains("default/a"), "{e}");
        // The same function may list a path twice with other methods.
        table
            .insert(t("a"), r("POST /x/{id}"))
            .expect("same function");
    }

    #[test]
    fn overlapping_patterns_of_other_functions_conflict() {
        let mut table = RouteTable::default();
        table
            .insert(t("users"), r("GET /users/{id}"))
            .expect("insert");
        table
            .insert(t("files"), r("/files/{*rest}"))
            .expect("insert");
        table.insert(t("root"), r("GET /{page}")).expect("insert");
        for (route, owner) in [
            ("GET /users/me", "default/users"),
            ("/users/{id}/../x", "none"),
            ("GET /files/readme", "default/files"),
            ("POST /files/a/b/{c}", "default/files"),
            ("GET /{section}/{id}", "default/"),
            ("GET /{*all}", "default/"),
            ("GET /about", "default/root"),
        ] {
            match table.insert(t("newcomer"), r(route)) {
                Err(e) => {
                    assert!(e.contains("overlaps") && e.contains(owner), "{route}: {e}");
                }
                Ok(()) => assert_eq!(owner, "none", "{route} was accepted"),
            }
        }
        // The same pattern with disjoint methods, or paths no other route
        // matches, are fine.
        let mut table = RouteTable::default();
        table
            .insert(t("users"), r("GET /users/{id}"))
            .expect("insert");
        table
            .insert(t("files"), r("/files/{*rest}"))
            .expect("insert");
        let e = table.insert(t("b"), r("POST /users/me")).unwrap_err();
        assert!(
            e.contains("default/users"),
            "another method still takes the path: {e}"
        );
        table
            .insert(t("b"), r("POST /users/{id}"))
            .expect("the same pattern with another method");
        table
            .insert(t("b"), r("GET /files/"))
            .expect("a catch-all takes at least one character");
        table.insert(t("root"), r("GET /")).expect("root");
        table.insert(t("all"), r("/{*path}")).unwrap_err();
        table.insert(t("b"), r("GET /users")).expect("shorter path");
        table
            .insert(t("b"), r("GET /users/{id}/posts"))
            .expect("longer path");
        table
            .insert(t("b"), r("GET /files"))
            .expect("catch-all needs a segment");
        // A function's own routes may overlap.
        let mut table = RouteTable::default();
        table
            .insert(t("users"), r("GET /users/{id}"))
            .expect("insert");
        table
            .insert(t("users"), r("GET /users/me"))
            .expect("same function");
    }

    #[test]
    fn overlap_of_patterns() {
        let o = |a: &str, b: &str| patterns_overlap(&segments(a), &segments(b));
        assert!(o("/a/{x}", "/a/b"));
        assert!(o("/a/{*r}", "/a/b/c"));
        assert!(o("/{x}/b", "/a/{y}"));
        assert!(!o("/a/{x}", "/a"));
        assert!(!o("/a/{x}", "/a/"));
        assert!(!o("/a/b", "/a/c"));
        assert!(!o("/a/{*r}", "/a"));
        assert!(!o("/a/{*r}", "/a/"));
        assert!(!o("/{*r}", "/"));
        assert!(o("/{*r}", "/a"));
        assert!(o("/a/", "/a/"));
    }
}
