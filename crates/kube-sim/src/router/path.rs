//! What a path under `/clusters/<name>` addresses, parsed from the path alone (and whether
//! the request is a GET) before anything else of the request is read.

use crate::cluster::Shared;
use crate::verbs::Target;

/// A path's meaning. Everything but a resource path is answered from the path alone, and
/// only to a GET (OpenAPI documents excepted: any method gets them).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Endpoint<'p> {
    /// `/version`.
    Version,
    /// `/healthz`, `/readyz` and `/livez`: the check's name.
    Health(&'p str),
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every group.
    Groups,
    /// `/openapi/v2`: one Swagger 2.0 document of every served type.
    OpenApiV2,
    /// `/openapi/v3`: the index of the OpenAPI v3 documents.
    OpenApiIndex,
    /// `/openapi/v3/api/<v>` or `/openapi/v3/apis/<g>/<v>`.
    OpenApiDocument { group: &'p str, version: &'p str },
    /// `/apis/<g>`: one group's versions.
    Group(&'p str),
    /// `/api/<v>` or `/apis/<g>/<v>`: the resources of a group-version.
    Resources { group: &'p str, version: &'p str },
    /// A collection, an object or an object's subresource.
    Resource(ResourcePath<'p>),
    /// Anything else: 404.
    NotFound,
}

/// A resource path as written, not yet checked against the served resource types.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ResourcePath<'p> {
    pub group: &'p str,
    pub version: &'p str,
    pub plural: &'p str,
    pub namespace: Option<&'p str>,
    pub name: Option<&'p str>,
    pub subresource: Option<&'p str>,
}

/// A resource path naming a served resource type, in a scope and with a subresource it has.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resolved<'p> {
    pub res: usize,
    pub namespace: Option<&'p str>,
    pub name: Option<&'p str>,
    pub subresource: Option<&'p str>,
}

impl<'p> Endpoint<'p> {
    /// `path` without the cluster prefix and without a trailing `/`.
    pub(super) fn parse(path: &'p str, get: bool) -> Self {
        match path {
            "/version" if get => return Self::Version,
            "/healthz" | "/readyz" | "/livez" if get => return Self::Health(&path[1..]),
            "/api" if get => return Self::CoreVersions,
            "/apis" if get => return Self::Groups,
            "/openapi/v3" if get => return Self::OpenApiIndex,
            "/openapi/v2" if get => return Self::OpenApiV2,
            _ => {}
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            let parsed = match gv.strip_prefix("api/") {
                Some(version) => Some(("", version)),
                None => gv.strip_prefix("apis/").and_then(|x| x.split_once('/')),
            };
            return match parsed {
                Some((group, version)) => Self::OpenApiDocument { group, version },
                None => Self::NotFound,
            };
        }
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segs.as_slice() {
            ["api", v, rest @ ..] => ("", *v, rest),
            ["apis", g, v, rest @ ..] => (*g, *v, rest),
            ["apis", g] if get => return Self::Group(g),
            _ => return Self::NotFound,
        };
        if rest.is_empty() {
            return if get {
                Self::Resources { group, version }
            } else {
                Self::NotFound
            };
        }
        let (namespace, plural, name, subresource) = match rest {
            ["namespaces", ns, "status" | "finalize"] if group.is_empty() => {
                (None, "namespaces", Some(*ns), rest.get(2).copied())
            }
            ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
            ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
            ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
            [plural] => (None, *plural, None, None),
            [plural, name] => (None, *plural, Some(*name), None),
            [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
            _ => return Self::NotFound,
        };
        Self::Resource(ResourcePath {
            group,
            version,
            plural,
            namespace,
            name,
            subresource,
        })
    }
}

impl<'p> ResourcePath<'p> {
    /// The resource type the path names, `None` (404) when it is not served, is
    /// cluster-scoped under a namespace, or lacks the subresource.
    pub(super) fn resolve(&self, sh: &Shared) -> Option<Resolved<'p>> {
        let res = sh.find(self.group, self.version, self.plural)?;
        let r = &sh.registry[res];
        // A namespace segment on a cluster-scoped type means the path does not exist.
        if self.namespace.is_some() && !r.namespaced {
            return None;
        }
        if self
            .subresource
            .is_some_and(|s| s != "status" || !r.status_subresource)
        {
            return None;
        }
        Some(Resolved {
            res,
            namespace: if r.namespaced { self.namespace } else { None },
            name: self.name,
            subresource: self.subresource,
        })
    }
}

impl<'p> Resolved<'p> {
    /// The object the path names; `None` for a collection.
    pub(super) fn object(&self) -> Option<Target<'p>> {
        self.name.map(|name| Target {
            res: self.res,
            namespace: self.namespace,
            name,
            subresource: self.subresource,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource<'p>(
        group: &'p str,
        plural: &'p str,
        namespace: Option<&'p str>,
        name: Option<&'p str>,
        subresource: Option<&'p str>,
    ) -> Endpoint<'p> {
        Endpoint::Resource(ResourcePath {
            group,
            version: "v1",
            plural,
            namespace,
            name,
            subresource,
        })
    }

    #[test]
    fn discovery_and_health_answer_only_a_get() {
        for (path, want) in [
            ("/version", Endpoint::Version),
            ("/livez", Endpoint::Health("livez")),
            ("/readyz", Endpoint::Health("readyz")),
            ("/openapi/v2", Endpoint::OpenApiV2),
            ("/api", Endpoint::CoreVersions),
            ("/apis", Endpoint::Groups),
            ("/openapi/v3", Endpoint::OpenApiIndex),
            ("/apis/apps", Endpoint::Group("apps")),
            (
                "/apis/apps/v1",
                Endpoint::Resources {
                    group: "apps",
                    version: "v1",
                },
            ),
        ] {
            assert_eq!(Endpoint::parse(path, true), want, "{path}");
            assert_eq!(Endpoint::parse(path, false), Endpoint::NotFound, "{path}");
        }
    }

    #[test]
    fn openapi_documents_are_named_by_group_and_version() {
        assert_eq!(
            Endpoint::parse("/openapi/v3/api/v1", false),
            Endpoint::OpenApiDocument {
                group: "",
                version: "v1"
            }
        );
        assert_eq!(
            Endpoint::parse("/openapi/v3/apis/apps/v1", true),
            Endpoint::OpenApiDocument {
                group: "apps",
                version: "v1"
            }
        );
        assert_eq!(
            Endpoint::parse("/openapi/v3/apps", true),
            Endpoint::NotFound
        );
    }

    #[test]
    fn resource_paths_name_scope_object_and_subresource() {
        let parse = |p| Endpoint::parse(p, false);
        assert_eq!(
            parse("/api/v1/namespaces"),
            resource("", "namespaces", None, None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/status"),
            resource("", "namespaces", None, Some("a"), Some("status"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/a/configmaps/b"),
            resource("", "configmaps", Some("a"), Some("b"), None)
        );
        assert_eq!(
            parse("/apis/x.io/v1/namespaces/a/things/b/status"),
            resource("x.io", "things", Some("a"), Some("b"), Some("status"))
        );
        assert_eq!(
            parse("/apis/x.io/v1/things/b/status"),
            resource("x.io", "things", None, Some("b"), Some("status"))
        );
        assert_eq!(
            parse("/apis/x.io/v1/namespaces/a/things/b/status/more"),
            Endpoint::NotFound
        );
        assert_eq!(parse("/version/x"), Endpoint::NotFound);
    }
}
