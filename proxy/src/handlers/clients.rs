//! `GET /clients`: the live clients as Prometheus file_sd / http_sd target groups.

use serde::Serialize;
use std::collections::BTreeMap;

use crate::http::{After, Connection};
use crate::state::State;

#[derive(Serialize)]
struct TargetGroup<'a> {
    targets: [&'a str; 1],
    labels: BTreeMap<&'a str, &'a str>,
}

/// Writes the target groups; `labels` is `{}` where Go wrote `null` (both valid for Prometheus).
pub fn handle(state: &State, conn: Connection) -> After {
    let live = state.registry.live(|key| state.rendezvous.has_poll(key));
    let groups: Vec<TargetGroup> = live
        .iter()
        .map(|c| TargetGroup {
            targets: [c.fqdn.as_str()],
            labels: BTreeMap::new(),
        })
        .collect();
    match serde_json::to_vec(&groups) {
        Ok(mut json) => {
            json.push(b'\n');
            super::body(conn, 200, "application/json", &json)
        }
        Err(e) => super::text(conn, 500, &format!("could not encode the client list: {e}")),
    }
}
