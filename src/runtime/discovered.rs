//! Servers taken from DNS (`discover`). Owns `Slots` (which address holds
//! which numbered slot of a backend), the pure slot assignment,
//! `Discoveries` (the writer's record of every backend's slots), and the
//! function that adds the slots' servers to a topology from the file.
//! Invariant: a slot keeps its address for as long as the name returns it,
//! so a slot's name (`users-2`), and with it the live state kept under that
//! name, follows one address; the file's topology is never changed here, the
//! writer composes the served one from it.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use crate::model::{AdminState, BackendName, Server, ServerAddress, Topology};

/// The addresses of a backend's slots: index 0 is slot 1; `None` is a free
/// slot. Never ends in a free slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots(Vec<Option<SocketAddr>>);

impl Slots {
    /// Slots in order, from 1, with their address.
    pub fn taken(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|a| (i + 1, a)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trimmed(mut slots: Vec<Option<SocketAddr>>) -> Slots {
        while slots.last() == Some(&None) {
            slots.pop();
        }
        Slots(slots)
    }
}

/// The outcome of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub slots: Slots,
    /// Records that found no slot below `max`, in address order.
    pub ignored: Vec<SocketAddr>,
}

/// The slots after a successful answer with `records`: an address already in
/// a slot keeps it, an address no longer in the answer frees its slot, and a
/// new address takes the lowest free slot (new addresses in address order);
/// slots beyond `max` are freed first. An empty answer keeps the slots as
/// they are: the last good set is kept while a name returns nothing, as on
/// a failed lookup (a service scaled to zero gives NXDOMAIN anyway).
pub fn assign(current: &Slots, records: &[SocketAddr], max: usize) -> Assigned {
    if records.is_empty() {
        return Assigned {
            slots: current.clone(),
            ignored: Vec::new(),
        };
    }
    let wanted: BTreeSet<SocketAddr> = records.iter().copied().collect();
    let mut slots: Vec<Option<SocketAddr>> = current
        .0
        .iter()
        .take(max)
        .map(|a| a.filter(|a| wanted.contains(a)))
        .collect();
    let mut ignored = Vec::new();
    for addr in wanted {
        if slots.contains(&Some(addr)) {
            continue;
        }
        match slots.iter().position(Option::is_none) {
            Some(free) => slots[free] = Some(addr),
            None if slots.len() < max => slots.push(Some(addr)),
            None => ignored.push(addr),
        }
    }
    Assigned {
        slots: Slots::trimmed(slots),
        ignored,
    }
}

/// The slots of one backend and the name they were found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub dns: ServerAddress,
    pub slots: Slots,
}

/// Every backend's discovered servers, by backend name.
pub type Discovered = HashMap<BackendName, Found>;

/// The writer's record of the servers found in DNS, and of the records
/// each backend had no slot for (warned about once per change).
#[derive(Debug, Default)]
pub struct Discoveries {
    found: Discovered,
    ignored: HashMap<BackendName, Vec<SocketAddr>>,
}

impl Discoveries {
    /// What is serving (once committed).
    pub fn found(&self) -> &Discovered {
        &self.found
    }

    /// The found sets after a successful lookup of `backend`'s `dns` that
    /// returned `records`; `None` when no slot changed. An error when the
    /// file `file` does not discover `dns` for `backend` (a late answer).
    pub fn answer(
        &mut self,
        file: &Topology,
        backend: BackendName,
        dns: ServerAddress,
        records: &[SocketAddr],
    ) -> Result<Option<Discovered>, String> {
        let max = file
            .backend(&backend)
            .and_then(|(_, b)| b.discover.as_ref())
            .filter(|d| d.dns == dns)
            .map(|d| usize::try_from(d.max).unwrap_or(usize::MAX))
            .ok_or_else(|| format!("backend {backend:?} does not discover {dns}"))?;
        let before = self
            .found
            .get(&backend)
            .map(|f| f.slots.clone())
            .unwrap_or_default();
        let assigned = assign(&before, records, max);
        self.warn_ignored(&backend, &dns, assigned.ignored);
        if assigned.slots == before {
            return Ok(None);
        }
        log_changes(&backend, &dns, &before, &assigned.slots);
        let mut next = self.found.clone();
        next.insert(
            backend,
            Found {
                dns,
                slots: assigned.slots,
            },
        );
        Ok(Some(next))
    }

    /// The found sets that still apply to a new `file`.
    pub fn still_wanted(&self, file: &Topology) -> Discovered {
        still_wanted(&self.found, file)
    }

    /// `found` is serving now.
    pub fn commit(&mut self, found: Discovered) {
        self.ignored.retain(|b, _| found.contains_key(b));
        self.found = found;
    }

    fn warn_ignored(
        &mut self,
        backend: &BackendName,
        dns: &ServerAddress,
        ignored: Vec<SocketAddr>,
    ) {
        let before = self.ignored.get(backend).map_or(&[][..], Vec::as_slice);
        if before == ignored.as_slice() {
            return;
        }
        if !ignored.is_empty() {
            let list: Vec<String> = ignored.iter().map(ToString::to_string).collect();
            tracing::warn!(backend = %backend, dns = %dns, ignored = %list.join(" "), "more records than discover.max slots; these addresses get no server");
        }
        self.ignored.insert(backend.clone(), ignored);
    }
}

/// Logs the servers a lookup added and removed, by slot name.
fn log_changes(backend: &BackendName, dns: &ServerAddress, before: &Slots, after: &Slots) {
    let prefix = dns.host.split('.').next().unwrap_or_default();
    let list = |from: &Slots, without: &Slots| -> String {
        from.taken()
            .filter(|s| !without.taken().any(|o| o == *s))
            .map(|(slot, addr)| format!("{prefix}-{slot}={addr}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    tracing::info!(backend = %backend, dns = %dns, added = %list(after, before), removed = %list(before, after), "discovered servers changed");
}

/// `discovered` without the backends whose `discover` the topology `file`
/// no longer has as they were found (removed, or another name), and with
/// the slots above a lowered `max` freed.
pub fn still_wanted(discovered: &Discovered, file: &Topology) -> Discovered {
    file.backends
        .iter()
        .filter_map(|b| {
            let d = b.discover.as_ref()?;
            let found = discovered.get(&b.name).filter(|f| f.dns == d.dns)?;
            let max = usize::try_from(d.max).unwrap_or(usize::MAX);
            let slots = Slots::trimmed(found.slots.0.iter().take(max).copied().collect());
            Some((
                b.name.clone(),
                Found {
                    dns: found.dns.clone(),
                    slots,
                },
            ))
        })
        .collect()
}

/// `file` with each backend's discovered servers after its static ones:
/// slot N is server `<prefix>-N` at its address, weight 1, READY.
pub fn apply(mut file: Topology, discovered: &Discovered) -> Topology {
    for backend in &mut file.backends {
        let Some(d) = &backend.discover else { continue };
        let Some(found) = discovered.get(&backend.name).filter(|f| f.dns == d.dns) else {
            continue;
        };
        for (slot, addr) in found.slots.taken() {
            backend.servers.push(Server {
                name: d.slot_name(slot),
                address: ServerAddress {
                    host: addr.ip().to_string().into(),
                    port: addr.port(),
                },
                weight: 1,
                state: AdminState::Ready,
                backup: false,
            });
        }
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 8080))
    }

    fn slots(list: &[Option<u8>]) -> Slots {
        Slots(list.iter().map(|a| a.map(addr)).collect())
    }

    /// (slots before, records, max, slots after, ignored)
    type Case<'a> = (
        &'a [Option<u8>],
        &'a [u8],
        usize,
        &'a [Option<u8>],
        &'a [u8],
    );

    fn check((before, records, max, after, ignored): Case<'_>) {
        let records: Vec<SocketAddr> = records.iter().copied().map(addr).collect();
        let got = assign(&slots(before), &records, max);
        let expected = Assigned {
            slots: slots(after),
            ignored: ignored.iter().copied().map(addr).collect(),
        };
        assert_eq!(got, expected, "{before:?} + {records:?}, max {max}");
    }

    #[test]
    fn slots_are_stable_and_new_addresses_take_the_lowest_free_one() {
        let cases: &[Case<'_>] = &[
            // First answer: address order.
            (&[], &[3, 1, 2], 32, &[Some(1), Some(2), Some(3)], &[]),
            // The same answer in another order changes nothing.
            (&[Some(1), Some(2)], &[2, 1], 32, &[Some(1), Some(2)], &[]),
            // A new address takes the next slot.
            (
                &[Some(1), Some(2)],
                &[1, 2, 9],
                32,
                &[Some(1), Some(2), Some(9)],
                &[],
            ),
            // A vanished address frees its slot; the others keep theirs.
            (
                &[Some(1), Some(2), Some(3)],
                &[1, 3],
                32,
                &[Some(1), None, Some(3)],
                &[],
            ),
            // The freed slot is the lowest free one for the next newcomer.
            (
                &[Some(1), None, Some(3)],
                &[1, 3, 7, 8],
                32,
                &[Some(1), Some(7), Some(3), Some(8)],
                &[],
            ),
            // Free slots at the end are dropped.
            (&[Some(1), Some(2)], &[1], 32, &[Some(1)], &[]),
            // Everything replaced at once.
            (&[Some(1), Some(2)], &[5, 6], 32, &[Some(5), Some(6)], &[]),
        ];
        for case in cases {
            check(*case);
        }
    }

    #[test]
    fn records_beyond_max_are_ignored() {
        let cases: &[Case<'_>] = &[
            (&[], &[1, 2, 3], 2, &[Some(1), Some(2)], &[3]),
            // A held slot is not given up for a newcomer.
            (&[Some(3)], &[1, 2, 3], 2, &[Some(3), Some(1)], &[2]),
            // A lowered max frees the slots above it; their addresses compete again.
            (
                &[Some(1), Some(2), Some(3)],
                &[1, 2, 3],
                2,
                &[Some(1), Some(2)],
                &[3],
            ),
            (
                &[Some(1), None, Some(3)],
                &[1, 3],
                2,
                &[Some(1), Some(3)],
                &[],
            ),
        ];
        for case in cases {
            check(*case);
        }
    }

    #[test]
    fn an_empty_answer_keeps_the_last_good_set() {
        check((
            &[Some(1), None, Some(3)],
            &[],
            32,
            &[Some(1), None, Some(3)],
            &[],
        ));
        check((&[], &[], 32, &[], &[]));
    }

    fn topology(discover: &str, server: &str) -> Topology {
        let text = format!(
            "[[frontend]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ndefault_backend = \"users\"\n\
             [[backend]]\nname = \"users\"\n{discover}\n{server}"
        );
        crate::config::parse(&text, std::path::Path::new("t.toml")).expect("valid test config")
    }

    const DISCOVER: &str = r#"discover = { dns = "users.local:8080", max = 4 }"#;
    const STATIC: &str = "[[backend.server]]\nname = \"old\"\naddress = \"10.9.9.9:80\"";

    fn found(list: &[Option<u8>]) -> Discovered {
        let dns = ServerAddress {
            host: "users.local".into(),
            port: 8080,
        };
        let found = Found {
            dns,
            slots: slots(list),
        };
        HashMap::from([(BackendName::new("users"), found)])
    }

    fn servers(t: &Topology) -> Vec<String> {
        t.backends[0]
            .servers
            .iter()
            .map(|s| format!("{}={}", s.name, s.address))
            .collect()
    }

    #[test]
    fn slots_become_servers_after_the_static_ones() {
        let t = apply(
            topology(DISCOVER, STATIC),
            &found(&[Some(1), None, Some(3)]),
        );
        assert_eq!(
            servers(&t),
            [
                "old=10.9.9.9:80",
                "users-1=10.0.0.1:8080",
                "users-3=10.0.0.3:8080"
            ]
        );
    }

    #[test]
    fn a_reload_keeps_the_slots_of_the_same_name_only() {
        let before = found(&[Some(1), Some(2), Some(3)]);
        let check = |discover: &str, expected: &[&str]| {
            let file = topology(discover, STATIC);
            let kept = still_wanted(&before, &file);
            assert_eq!(servers(&apply(file, &kept)), expected, "{discover}");
        };
        check(
            DISCOVER,
            &[
                "old=10.9.9.9:80",
                "users-1=10.0.0.1:8080",
                "users-2=10.0.0.2:8080",
                "users-3=10.0.0.3:8080",
            ],
        );
        check(
            r#"discover = { dns = "users.local:8080", max = 2 }"#,
            &[
                "old=10.9.9.9:80",
                "users-1=10.0.0.1:8080",
                "users-2=10.0.0.2:8080",
            ],
        );
        check(
            r#"discover = { dns = "other.local:8080" }"#,
            &["old=10.9.9.9:80"],
        );
        check("", &["old=10.9.9.9:80"]);
    }
}
