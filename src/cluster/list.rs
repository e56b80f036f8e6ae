//! A one-off read of what a cluster holds for the fleet (for `plan --live`): every Release
//! and Usage carrying the fleet's inventory label, in all namespaces.

use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;

use fleet_core::api::LABEL_FLEET;
use fleet_core::reconcile::live::LiveState;
use fleet_core::render::ObjectKind;

use super::apply::{resource, to_live};

/// The fleet's objects on the cluster `client` talks to.
pub async fn owned_objects(client: &Client, fleet: &str) -> Result<LiveState, kube::Error> {
    let params = ListParams::default().labels(&format!("{LABEL_FLEET}={fleet}"));
    let mut state = LiveState::new();
    for kind in [ObjectKind::Release, ObjectKind::Usage] {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
        for object in api.list(&params).await?.items {
            if let Some(live) = to_live(kind, object) {
                state.insert(live.object_ref.clone(), live);
            }
        }
    }
    Ok(state)
}
