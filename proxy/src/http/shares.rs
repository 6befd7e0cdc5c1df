//! Shares of the connection limit, so that one peer cannot take what everyone needs: how many
//! connections one source address may keep idle or parked, and the part of
//! `--web.max-connections` that parked connections (polls) may never take, which stays for
//! scrapes, pushes and health checks.

use pushprox_daemon::sync::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The share limits.
#[derive(Debug, Clone, Copy)]
pub struct ShareLimits {
    /// Connections that parked ones never take (`--web.reserved-connections`).
    pub reserved: usize,
    /// Connections one address may keep waiting for a request (`--web.max-idle-per-address`).
    pub idle_per_address: usize,
    /// Connections one address may keep parked (`--poll.max-parked-per-address`).
    pub parked_per_address: usize,
}

pushprox_daemon::label_values! {
    /// Why a connection was refused its share: the `reason` label of
    /// `pushprox_connections_refused_total`.
    pub enum ShareRefusal {
        /// Its address already keeps `idle_per_address` connections waiting.
        IdlePerAddress => "idle_per_address",
        /// Its address already has `parked_per_address` polls parked.
        ParkedPerAddress => "parked_per_address",
        /// Parked connections already fill everything but the reserved share.
        ParkedShare => "parked_share",
    }
}

impl ShareRefusal {
    /// What the peer is told (with `503`), and the operator in the log.
    pub fn explain(self, limits: &ShareLimits, max_connections: usize) -> String {
        match self {
            ShareRefusal::IdlePerAddress => format!(
                "this address keeps {} idle connections already (--web.max-idle-per-address)",
                limits.idle_per_address
            ),
            ShareRefusal::ParkedPerAddress => format!(
                "this address has {} polls parked already (--poll.max-parked-per-address); poll again shortly",
                limits.parked_per_address
            ),
            ShareRefusal::ParkedShare => format!(
                "parked polls fill {} of the {max_connections} connections, all but the --web.reserved-connections share; poll again shortly",
                max_connections.saturating_sub(limits.reserved)
            ),
        }
    }
}

/// What each source address holds now.
type PerAddress = Arc<Mutex<HashMap<IpAddr, Counts>>>;

#[derive(Default)]
struct Counts {
    idle: usize,
    parked: usize,
}

/// Whether a source address is exempt from the per-address caps (a trusted balancer carries
/// everyone's connections).
pub type Exempt = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// The counts behind the shares.
pub struct Shares {
    pub(super) limits: ShareLimits,
    max_connections: usize,
    exempt: Exempt,
    per_address: PerAddress,
    parked: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Kind {
    Idle,
    Parked,
}

/// One connection's place in a share; given back when dropped.
pub struct Held {
    kind: Kind,
    /// None for an exempt address.
    address: Option<(IpAddr, PerAddress)>,
    parked: Option<Arc<AtomicUsize>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(parked) = &self.parked {
            parked.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some((ip, map)) = &self.address {
            let mut map = lock(map);
            if let Some(c) = map.get_mut(ip) {
                match self.kind {
                    Kind::Idle => c.idle = c.idle.saturating_sub(1),
                    Kind::Parked => c.parked = c.parked.saturating_sub(1),
                }
                if c.idle == 0 && c.parked == 0 {
                    map.remove(ip);
                }
            }
        }
    }
}

impl Shares {
    pub fn new(limits: ShareLimits, max_connections: usize, exempt: Exempt) -> Shares {
        Shares {
            limits,
            max_connections,
            exempt,
            per_address: Arc::default(),
            parked: Arc::default(),
        }
    }

    /// A place for a connection from `ip` waiting for its next request.
    pub fn idle(&self, ip: IpAddr) -> Result<Held, ShareRefusal> {
        self.take(ip, Kind::Idle, None)
    }

    /// A place for a connection from `ip` parked until something answers it.
    pub fn park(&self, ip: IpAddr) -> Result<Held, ShareRefusal> {
        let share = self.max_connections.saturating_sub(self.limits.reserved);
        self.parked
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < share).then_some(n + 1)
            })
            .map_err(|_| ShareRefusal::ParkedShare)?;
        self.take(ip, Kind::Parked, Some(Arc::clone(&self.parked)))
            .inspect_err(|_| {
                self.parked.fetch_sub(1, Ordering::SeqCst);
            })
    }

    fn take(
        &self,
        ip: IpAddr,
        kind: Kind,
        parked: Option<Arc<AtomicUsize>>,
    ) -> Result<Held, ShareRefusal> {
        if (self.exempt)(ip) {
            return Ok(Held {
                kind,
                address: None,
                parked,
            });
        }
        let mut map = lock(&self.per_address);
        let counts = map.entry(ip).or_default();
        let (count, cap, refusal) = match kind {
            Kind::Idle => (
                &mut counts.idle,
                self.limits.idle_per_address,
                ShareRefusal::IdlePerAddress,
            ),
            Kind::Parked => (
                &mut counts.parked,
                self.limits.parked_per_address,
                ShareRefusal::ParkedPerAddress,
            ),
        };
        if *count >= cap {
            if counts.idle == 0 && counts.parked == 0 {
                map.remove(&ip);
            }
            // No Held is made: `park` gives its place in the parked share back itself.
            return Err(refusal);
        }
        *count += 1;
        drop(map);
        Ok(Held {
            kind,
            address: Some((ip, Arc::clone(&self.per_address))),
            parked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares() -> Shares {
        let limits = ShareLimits {
            reserved: 2,
            idle_per_address: 2,
            parked_per_address: 3,
        };
        let balancer: IpAddr = [10, 0, 0, 1].into();
        Shares::new(limits, 6, Box::new(move |ip| ip == balancer))
    }

    #[test]
    fn one_address_gets_its_cap_and_gives_it_back() {
        let s = shares();
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 1].into();
        let idle: Vec<Held> = (0..2).map(|_| s.idle(a).unwrap()).collect();
        assert_eq!(s.idle(a).err(), Some(ShareRefusal::IdlePerAddress));
        assert!(s.idle(b).is_ok());
        drop(idle);
        assert!(s.idle(a).is_ok());
        let parked: Vec<Held> = (0..3).map(|_| s.park(a).unwrap()).collect();
        assert_eq!(s.park(a).err(), Some(ShareRefusal::ParkedPerAddress));
        assert_eq!(s.parked.load(Ordering::SeqCst), 3);
        drop(parked);
        assert_eq!(s.parked.load(Ordering::SeqCst), 0);
        assert!(s.per_address.lock().unwrap().is_empty());
    }

    #[test]
    fn parked_connections_leave_the_reserved_share() {
        let s = shares();
        let balancer: IpAddr = [10, 0, 0, 1].into();
        // Exempt from the per-address cap, not from the reserved share.
        let parked: Vec<Held> = (0..4).map(|_| s.park(balancer).unwrap()).collect();
        assert_eq!(s.park(balancer).err(), Some(ShareRefusal::ParkedShare));
        assert_eq!(
            s.park([127, 0, 0, 1].into()).err(),
            Some(ShareRefusal::ParkedShare)
        );
        assert_eq!(s.parked.load(Ordering::SeqCst), 4);
        drop(parked);
        assert_eq!(s.parked.load(Ordering::SeqCst), 0);
    }
}
