//! The custom-route table: `GET /hello/{who}` → function, like an API gateway.
//!
//! Routes are global (they live at the root of the server, outside `/fn/`).
//! Two functions may share a path pattern only with disjoint methods; two
//! patterns that the matcher cannot tell apart (`/a/{x}` and `/a/{y}`) are a
//! conflict, reported at deploy time.

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
    /// The path exists but not for this method.
    MethodNotAllowed,
    NotFound,
}

#[derive(Default)]
pub struct RouteTable {
    router: matchit::Router<usize>,
    /// Entries per distinct path pattern, indexed by the router's value.
    paths: Vec<Vec<Entry>>,
    index: HashMap<String, usize>,
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

    /// Adds a route; an error names the conflicting route and function.
    pub fn insert(&mut self, target: Target, route: Route) -> Result<(), String> {
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
            None => Lookup::MethodNotAllowed,
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
        assert_eq!(table.lookup("DELETE", "/hello/a"), Lookup::MethodNotAllowed);
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
}
