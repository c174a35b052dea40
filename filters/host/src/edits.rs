//! One header map during one host callback: the snapshot the stages read, and the edits they
//! made, sent to the host in as few calls as the edits allow.
//!
//! Both hosts pay per host call and per copy (docs/architecture.md prices them), so the map is
//! read once per callback, and edits are held until the callback ends: an edit that a later one
//! replaces, or that leaves the map as it was (removing an internal header the client never
//! sent, setting one that is set then removed by a later stage), costs nothing. Edits reach the
//! snapshot on the next read, not one by one: a stage that edits while it holds the map would
//! otherwise copy the whole map once per edit.

use std::rc::Rc;

use crate::Headers;

/// One edit of a header map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Every value of the header replaced by one, or (`None`) removed.
    Set(String, Option<Vec<u8>>),
    /// One more value of the header.
    Add(String, Vec<u8>),
}

impl Edit {
    fn name(&self) -> &str {
        match self {
            Edit::Set(k, _) | Edit::Add(k, _) => k,
        }
    }

    fn apply(&self, h: &mut Headers) {
        match self {
            Edit::Set(k, v) => h.set(k, v.as_deref()),
            Edit::Add(k, v) => h.add(k, v),
        }
    }
}

/// A header map during one callback.
#[derive(Debug, Default)]
pub struct MapEdits {
    snapshot: Option<Rc<Headers>>,
    /// The map as the host had it when this callback read it, before the callback's edits.
    base: Option<Rc<Headers>>,
    /// Edits of this callback, in order.
    pending: Vec<Edit>,
    /// How many of `pending` the snapshot reflects.
    applied: usize,
}

impl MapEdits {
    /// The map as the stages see it: the host's (`fetch`, called once per callback), with this
    /// callback's edits applied.
    pub fn read(&mut self, fetch: impl FnOnce() -> Headers) -> Rc<Headers> {
        let base = &mut self.base;
        let snapshot = self.snapshot.get_or_insert_with(|| {
            let read = Rc::new(fetch());
            *base = Some(Rc::clone(&read));
            read
        });
        if self.applied < self.pending.len() {
            let h = Rc::make_mut(snapshot);
            for e in &self.pending[self.applied..] {
                e.apply(h);
            }
            self.applied = self.pending.len();
        }
        Rc::clone(snapshot)
    }

    /// Sets (`Some`) or removes (`None`) `name`.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        self.pending.push(Edit::Set(
            name.to_ascii_lowercase(),
            value.map(<[u8]>::to_vec),
        ));
    }

    /// Adds a value of `name`.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.pending
            .push(Edit::Add(name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Ends the callback: the edits the host must apply, in order, and the snapshot is
    /// forgotten (the host and other filters may change the map before the next callback).
    pub fn take(&mut self) -> Vec<Edit> {
        let pending = std::mem::take(&mut self.pending);
        let keep = needed(&pending, self.base.as_deref());
        self.snapshot = None;
        self.base = None;
        self.applied = 0;
        pending
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, e)| e)
            .collect()
    }
}

/// The indices of the edits that must reach the host, in order: for each name, the last set
/// and the adds after it (an earlier edit is replaced), and nothing at all when the name ends up
/// with the values it had in `base` (the map before the edits, when known): removing a header
/// that is not there, or setting one that a later stage removes again.
fn needed(pending: &[Edit], base: Option<&Headers>) -> Vec<usize> {
    // The names whose values end as they began, each judged once on borrowed values.
    let mut unchanged: Vec<&str> = Vec::new();
    if let Some(b) = base {
        for (i, e) in pending.iter().enumerate() {
            let k = e.name();
            if pending[..i].iter().any(|p| p.name() == k) {
                continue;
            }
            let mut after: Vec<&[u8]> = b.values(k).collect();
            for e in pending[i..].iter().filter(|e| e.name() == k) {
                match e {
                    Edit::Set(_, Some(v)) => {
                        after.clear();
                        after.push(v);
                    }
                    Edit::Set(_, None) => after.clear(),
                    Edit::Add(_, v) => after.push(v),
                }
            }
            if after.into_iter().eq(b.values(k)) {
                unchanged.push(k);
            }
        }
    }
    (0..pending.len())
        .filter(|&i| {
            let k = pending[i].name();
            let replaced = pending[i + 1..]
                .iter()
                .any(|later| matches!(later, Edit::Set(n, _) if n == k));
            !replaced && !unchanged.contains(&k)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(k: &str, v: Option<&str>) -> Edit {
        Edit::Set(k.into(), v.map(|v| v.as_bytes().to_vec()))
    }

    fn add(k: &str, v: &str) -> Edit {
        Edit::Add(k.into(), v.as_bytes().to_vec())
    }

    fn base() -> Headers {
        Headers::from_pairs(vec![
            (":path".into(), b"/v1/chat/completions".to_vec()),
            ("authorization".into(), b"Bearer k".to_vec()),
            ("x-two".into(), b"1".to_vec()),
            ("x-two".into(), b"2".to_vec()),
        ])
    }

    #[test]
    fn only_edits_that_change_the_map_are_sent() {
        let pending = vec![
            set("x-aimesh-key-id", None),
            set("authorization", None),
            set(":path", Some("/v1/chat/completions")),
            set("x-aimesh-cluster", Some("a")),
            set("x-aimesh-cluster", Some("b")),
            add("set-cookie", "c"),
        ];
        assert_eq!(needed(&pending, Some(&base())), vec![1, 4, 5]);
        // Without the map nothing is known to be a no-op; a replaced set is still dropped.
        assert_eq!(needed(&pending, None), vec![0, 1, 2, 4, 5]);
    }

    #[test]
    fn a_header_set_then_removed_costs_nothing_and_the_reverse_too() {
        let pending = vec![
            set("x-aimesh-virtual-model", Some("vm")),
            set("x-aimesh-virtual-model", None),
            set("authorization", None),
            set("authorization", Some("Bearer k")),
        ];
        assert!(needed(&pending, Some(&base())).is_empty());
    }

    #[test]
    fn multi_valued_headers_are_compared_value_by_value() {
        // One value where there were two: a change.
        assert_eq!(needed(&[set("x-two", Some("1"))], Some(&base())), vec![0]);
        // Set to the first, add the second: as it was.
        let same = [set("x-two", Some("1")), add("x-two", "2")];
        assert!(needed(&same, Some(&base())).is_empty());
        let more = [add("x-two", "3")];
        assert_eq!(needed(&more, Some(&base())), vec![0]);
    }

    #[test]
    fn the_snapshot_shows_edits_and_take_sends_only_what_changes_the_map() {
        let mut m = MapEdits::default();
        let first = m.read(base);
        m.set("Authorization", None);
        m.set("x-aimesh-cluster", Some(b"local"));
        m.set("x-absent", None);
        // The stage's own handle is not changed under it; the next read shows the edits.
        assert!(first.has("authorization"));
        let now = m.read(|| unreachable!("read once per callback"));
        assert!(!now.has("authorization"));
        assert_eq!(now.get("x-aimesh-cluster"), Some("local"));
        assert_eq!(
            m.take(),
            vec![
                set("authorization", None),
                set("x-aimesh-cluster", Some("local"))
            ]
        );
        // The next callback reads the host's map again.
        let mut fetched = false;
        m.read(|| {
            fetched = true;
            Headers::default()
        });
        assert!(fetched);
    }
}
