//! Whether a cluster serves the two APIs the fleet writes. A cluster without provider-helm's
//! `releases.helm.m.crossplane.io/v1beta1`, or whose Crossplane runs without Usages, is
//! reachable and misconfigured, not down: discovery tells which, so the status can say so by
//! name instead of reporting the 404 of a watch as an unreachable cluster.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::gvk::GroupVersion;

use super::client::ClusterClient;

use fleet_core::render::ObjectKind;

use super::apply::resource;

/// What the cluster serves, as discovery answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub releases: bool,
    pub usages: bool,
}

impl Served {
    pub const ALL: Served = Served {
        releases: true,
        usages: true,
    };

    /// What is missing, as `resource.group/version`, for the status and the log.
    pub fn missing(&self) -> Vec<String> {
        [
            (self.releases, ObjectKind::Release),
            (self.usages, ObjectKind::Usage),
        ]
        .into_iter()
        .filter(|(served, _)| !served)
        .map(|(_, kind)| {
            let r = resource(kind);
            format!("{}.{}/{}", r.plural, r.group, r.version)
        })
        .collect()
    }

    /// The status line for what is missing; `None` when both are served.
    pub fn problem(&self, cluster: &str) -> Option<String> {
        match (self.releases, self.usages) {
            (true, true) => None,
            (false, _) => Some(format!(
                "cluster {cluster}: the API server does not serve {}: nothing is applied until it does (is provider-helm installed?)",
                self.missing().join(" or ")
            )),
            (true, false) => Some(format!(
                "cluster {cluster}: the API server does not serve {}: the Releases are applied without their Usage, so nothing keeps StackGres from being deleted before Atlas",
                self.missing().join(", ")
            )),
        }
    }
}

/// Asks discovery for each kind's group and version. A version that is not served answers
/// 404; any other failure leaves the kind counted as served, so that the watch reports
/// what is wrong with the connection as it always has.
pub async fn served(client: &ClusterClient, timeout: Duration) -> Served {
    let one = |kind: ObjectKind| async move {
        let r = resource(kind);
        let gv = GroupVersion::gv(&r.group, &r.version);
        // What kube's `Client::list_api_group_resources` asks.
        let list = async {
            let request = http::Request::get(format!("/apis/{}", gv.api_version()))
                .body(Vec::new())
                .map_err(kube::Error::HttpError)?;
            client.request::<APIResourceList>(request).await
        };
        match tokio::time::timeout(timeout, list).await {
            Ok(Ok(list)) => list.resources.iter().any(|x| x.name == r.plural),
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => false,
            _ => true,
        }
    };
    let (releases, usages) = futures::join!(one(ObjectKind::Release), one(ObjectKind::Usage));
    Served { releases, usages }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_is_named_with_what_is_applied_meanwhile() {
        assert_eq!(Served::ALL.problem("c1"), None);
        let no_usages = Served {
            releases: true,
            usages: false,
        };
        let said = no_usages.problem("c1").unwrap();
        assert!(
            said.contains("usages.protection.crossplane.io/v1beta1"),
            "{said}"
        );
        assert!(said.contains("without their Usage"), "{said}");
        let nothing = Served {
            releases: false,
            usages: false,
        };
        let said = nothing.problem("c1").unwrap();
        assert!(
            said.contains("releases.helm.m.crossplane.io/v1beta1 or usages"),
            "{said}"
        );
        assert!(said.contains("nothing is applied"), "{said}");
    }
}
