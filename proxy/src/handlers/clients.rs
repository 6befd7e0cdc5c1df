//! `GET /clients`: the live clients as Prometheus file_sd / http_sd target groups.

use crate::discovery::{target_groups, TargetGroup};
use crate::http::{After, Connection};
use crate::state::State;

/// Writes the target groups: a client that announces exporters (`--sd.target`) gives one group
/// per port, `fqdn:port` with its labels; any other gives its FQDN with its labels (`{}` for a
/// Go client, where Go wrote `null`: both valid for Prometheus).
pub fn handle(state: &State, conn: Connection) -> After {
    let live = state.registry.live(|key| state.rendezvous.has_poll(key));
    let groups: Vec<TargetGroup> = live
        .iter()
        .flat_map(|c| target_groups(&c.fqdn, &c.announced))
        .collect();
    match serde_json::to_vec(&groups) {
        Ok(mut json) => {
            json.push(b'\n');
            super::body(conn, 200, "application/json", &json)
        }
        Err(e) => super::text(conn, 500, &format!("could not encode the client list: {e}")),
    }
}
