//! A one-off read of what a cluster holds for the fleet (for `plan --live`): every Release
//! and Usage carrying the fleet's inventory label, in all namespaces, that the cluster's
//! entry owns (or that predates the cluster label).

use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;

use fleet_core::api::LABEL_FLEET;
use fleet_core::reconcile::live::{LiveObject, LiveState};
use fleet_core::reconcile::{Inventory, Ownership};
use fleet_core::render::ObjectKind;

use super::apply::{resource, to_live};

/// The objects of the fleet's entry `cluster` on the cluster `client` talks to.
pub async fn owned_objects(
    client: &Client,
    fleet: &str,
    cluster: &str,
) -> Result<LiveState, kube::Error> {
    let inventory = Inventory {
        fleet,
        former: &[],
        cluster,
    };
    let params = ListParams::default().labels(&format!("{LABEL_FLEET}={fleet}"));
    let mut state = LiveState::new();
    for kind in [ObjectKind::Release, ObjectKind::Usage] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        for object in api.list(&params).await?.items {
            let ours = |l: &LiveObject| !matches!(inventory.of(l), Ownership::Foreign(_));
            if let Some(live) = to_live(kind, object).filter(ours) {
                state.insert(live);
            }
        }
    }
    Ok(state)
}
