//! Who gets one of the control socket's client slots: the admission policy of the server
//! (see the `server` module doc, "Client slots"), kept apart from the sockets so that it can
//! be tested on its own.

use std::collections::HashMap;

/// What kind of peer a connection comes from, as far as slots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Root or the daemon's own uid: no per-user limit, the reserved slots.
    Admin,
    /// A member of the control group: may act, limited per user.
    Member,
    /// Anyone else: `status` and `subscribe` only, limited per user and in total.
    ReadOnly,
}

/// The numbers [`Slots`] enforces (from `ServerOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotLimits {
    /// Clients at once, all together (at least 1).
    pub max_clients: usize,
    /// Of `max_clients`, slots only [`Class::Admin`] peers may take (at most
    /// `max_clients - 1`, so that somebody else can still get in).
    pub admin_reserve: usize,
    /// Connections one non-admin uid may hold (at least 1).
    pub per_user: usize,
    /// Connections read-only peers may hold together (0: none at all).
    pub read_only: usize,
}

impl SlotLimits {
    /// The limits with their bounds applied.
    pub(super) fn clamped(self) -> SlotLimits {
        let max_clients = self.max_clients.max(1);
        SlotLimits {
            max_clients,
            admin_reserve: self.admin_reserve.min(max_clients - 1),
            per_user: self.per_user.max(1),
            read_only: self.read_only,
        }
    }
}

/// Why a client was not admitted: the text of the `busy: …` answer it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    #[error(
        "busy: uid {uid} has {limit} connections already, the most one user may have; close \
         one and try again"
    )]
    PerUser { uid: u32, limit: usize },
    #[error(
        "busy: {limit} read-only clients are connected already, the most allowed for users who \
         may not control the daemon; try again later"
    )]
    ReadOnly { limit: usize },
    #[error(
        "busy: {connected} clients are connected already ({reserved} of the {max} slots are \
         kept for root and the daemon's user); try again later"
    )]
    Full {
        connected: usize,
        max: usize,
        reserved: usize,
    },
    #[error("busy: {limit} clients are connected already; try again later")]
    FullForAdmin { limit: usize },
}

/// What a read-only client evicted for a peer who may act is told before it is closed.
pub(super) const EVICTED: &str = "busy: making room for an administrator; reconnect later";

#[derive(Debug)]
struct Entry<K> {
    key: K,
    uid: u32,
    class: Class,
    /// Admission order.
    seq: u64,
}

/// The clients holding a slot. `K` names a client for its owner (the accept loop).
#[derive(Debug)]
pub(super) struct Slots<K> {
    limits: SlotLimits,
    clients: Vec<Entry<K>>,
    next_seq: u64,
}

impl<K: Copy + PartialEq> Slots<K> {
    pub(super) fn new(limits: SlotLimits) -> Slots<K> {
        Slots {
            limits: limits.clamped(),
            clients: Vec::new(),
            next_seq: 0,
        }
    }

    /// Clients holding a slot.
    pub(super) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Admits `key` (a peer `uid` of `class`) or says why not. `Ok(Some(victim))`: `key` took
    /// the slot of the read-only client `victim`, which the caller must now close (telling it
    /// [`EVICTED`]); it no longer counts.
    ///
    /// - Admins (root, the daemon's uid) may take any slot; when none is free they take a
    ///   read-only client's.
    /// - Everybody else: at most `per_user` connections per uid, and only the slots outside
    ///   the admin reserve. Read-only peers moreover at most `read_only` together.
    /// - Members of the control group, too, take a read-only client's slot when no other is
    ///   free to them.
    pub(super) fn admit(&mut self, key: K, uid: u32, class: Class) -> Result<Option<K>, Refusal> {
        let limits = self.limits;
        let total = self.clients.len();
        let victim = match class {
            Class::Admin if total < limits.max_clients => None,
            Class::Admin => Some(self.victim().ok_or(Refusal::FullForAdmin {
                limit: limits.max_clients,
            })?),
            Class::Member | Class::ReadOnly => {
                let mine = self.clients.iter().filter(|c| c.uid == uid).count();
                if mine >= limits.per_user {
                    return Err(Refusal::PerUser {
                        uid,
                        limit: limits.per_user,
                    });
                }
                let read_only = self.count(Class::ReadOnly);
                if class == Class::ReadOnly && read_only >= limits.read_only {
                    return Err(Refusal::ReadOnly {
                        limit: limits.read_only,
                    });
                }
                let others = total - self.count(Class::Admin);
                let pool = limits.max_clients - limits.admin_reserve;
                if others < pool && total < limits.max_clients {
                    None
                } else {
                    let full = Refusal::Full {
                        connected: total,
                        max: limits.max_clients,
                        reserved: limits.admin_reserve,
                    };
                    if class == Class::ReadOnly {
                        return Err(full);
                    }
                    Some(self.victim().ok_or(full)?)
                }
            }
        };
        if let Some(victim) = victim {
            self.remove(victim);
        }
        self.clients.push(Entry {
            key,
            uid,
            class,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        Ok(victim)
    }

    /// Frees `key`'s slot (a no-op if it holds none).
    pub(super) fn remove(&mut self, key: K) {
        self.clients.retain(|c| c.key != key);
    }

    fn count(&self, class: Class) -> usize {
        self.clients.iter().filter(|c| c.class == class).count()
    }

    /// The read-only client to evict: of the uid holding the most read-only slots, the one
    /// admitted first (so one user's crowd goes before another user's single watcher).
    fn victim(&self) -> Option<K> {
        let mut per_uid: HashMap<u32, usize> = HashMap::new();
        for c in self.clients.iter().filter(|c| c.class == Class::ReadOnly) {
            *per_uid.entry(c.uid).or_default() += 1;
        }
        self.clients
            .iter()
            .filter(|c| c.class == Class::ReadOnly)
            .min_by_key(|c| {
                let held = per_uid.get(&c.uid).copied().unwrap_or(0);
                (std::cmp::Reverse(held), c.seq)
            })
            .map(|c| c.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SlotLimits = SlotLimits {
        max_clients: 10,
        admin_reserve: 2,
        per_user: 3,
        read_only: 4,
    };

    #[test]
    fn per_user_and_read_only_limits_are_named() {
        let mut slots = Slots::new(LIMITS);
        for k in 0..3 {
            assert_eq!(slots.admit(k, 1000, Class::ReadOnly), Ok(None));
        }
        let e = slots.admit(3, 1000, Class::ReadOnly).unwrap_err();
        assert_eq!(
            e,
            Refusal::PerUser {
                uid: 1000,
                limit: 3
            }
        );
        assert!(
            e.to_string()
                .starts_with("busy: uid 1000 has 3 connections already")
        );
        assert_eq!(slots.admit(4, 1001, Class::ReadOnly), Ok(None));
        let e = slots.admit(5, 1002, Class::ReadOnly).unwrap_err();
        assert_eq!(e, Refusal::ReadOnly { limit: 4 });
        assert!(e.to_string().starts_with("busy: 4 read-only clients"));
        // Group members are held to the per-user limit, not to the read-only one.
        for k in 10..13 {
            assert_eq!(slots.admit(k, 2000, Class::Member), Ok(None));
        }
        assert_eq!(
            slots.admit(13, 2000, Class::Member),
            Err(Refusal::PerUser {
                uid: 2000,
                limit: 3
            })
        );
        // Freed slots count again.
        slots.remove(0);
        assert_eq!(slots.admit(6, 1002, Class::ReadOnly), Ok(None));
    }

    #[test]
    fn the_reserve_is_for_admins_only() {
        let mut slots = Slots::new(LIMITS);
        for k in 0..8 {
            assert_eq!(slots.admit(k, 2000 + k as u32, Class::Member), Ok(None));
        }
        let e = slots.admit(8, 3000, Class::Member).unwrap_err();
        assert_eq!(
            e,
            Refusal::Full {
                connected: 8,
                max: 10,
                reserved: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "busy: 8 clients are connected already (2 of the 10 slots are kept for root and the \
             daemon's user); try again later"
        );
        assert_eq!(slots.admit(9, 0, Class::Admin), Ok(None));
        assert_eq!(slots.admit(10, 0, Class::Admin), Ok(None));
        assert_eq!(slots.len(), 10);
        // Full of members and admins: nobody to evict.
        let e = slots.admit(11, 0, Class::Admin).unwrap_err();
        assert_eq!(e, Refusal::FullForAdmin { limit: 10 });
        assert!(e.to_string().starts_with("busy: 10 clients"));
    }

    #[test]
    fn admins_and_members_evict_the_biggest_read_only_crowd_first() {
        let limits = SlotLimits {
            max_clients: 6,
            admin_reserve: 1,
            per_user: 3,
            read_only: 4,
        };
        let mut slots = Slots::new(limits);
        // uid 1 connects first, then uid 2 three times.
        assert_eq!(slots.admit(0, 1, Class::ReadOnly), Ok(None));
        for k in 1..4 {
            assert_eq!(slots.admit(k, 2, Class::ReadOnly), Ok(None));
        }
        assert_eq!(slots.admit(4, 3000, Class::Member), Ok(None));
        // The non-admin pool (5) is full: a member takes uid 2's oldest slot.
        assert_eq!(slots.admit(5, 3001, Class::Member), Ok(Some(1)));
        assert_eq!(slots.admit(6, 0, Class::Admin), Ok(None));
        // Everything full: root takes a slot of uid 2 (two read-only slots against uid 1's
        // one), its oldest.
        assert_eq!(slots.admit(7, 0, Class::Admin), Ok(Some(2)));
        // Now uid 1 and uid 2 hold one each: the older one goes.
        assert_eq!(slots.admit(8, 4242, Class::Admin), Ok(Some(0)));
        assert_eq!(slots.admit(9, 0, Class::Admin), Ok(Some(3)));
        assert_eq!(
            slots.admit(10, 0, Class::Admin),
            Err(Refusal::FullForAdmin { limit: 6 })
        );
        // A read-only peer never evicts anybody.
        slots.remove(9);
        slots.remove(8);
        slots.remove(7);
        assert_eq!(slots.admit(11, 5, Class::ReadOnly), Ok(None));
        assert_eq!(slots.len(), 4);
    }

    #[test]
    fn limits_are_clamped() {
        let l = SlotLimits {
            max_clients: 0,
            admin_reserve: 5,
            per_user: 0,
            read_only: 0,
        }
        .clamped();
        assert_eq!((l.max_clients, l.admin_reserve, l.per_user), (1, 0, 1));
        let mut slots = Slots::new(l);
        assert_eq!(
            slots.admit(0, 7, Class::ReadOnly),
            Err(Refusal::ReadOnly { limit: 0 })
        );
        assert_eq!(slots.admit(1, 8, Class::Member), Ok(None));
        assert_eq!(
            slots.admit(2, 9, Class::Member),
            Err(Refusal::Full {
                connected: 1,
                max: 1,
                reserved: 0
            })
        );
    }
}
