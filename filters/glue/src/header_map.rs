//! One header map as a stage sees it during an Envoy callback: a snapshot read once, and the
//! edits made since, applied to Envoy in as few host calls as the ABI allows.
//!
//! Every host call that crosses the VM boundary costs about a microsecond (`harness.bench_host`)
//! whatever it carries, so edits are held until the callback ends. A few edits go out one call
//! each; more go out as one `set_header_map_pairs` with the whole edited map (Envoy replaces the
//! map and clears the route cache, as it does for a single set).

use std::rc::Rc;

use aimesh_host::Headers;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// One edit.
#[derive(Debug, Clone)]
enum Edit {
    /// `set_map_value`: every value replaced by one, or (None) removed.
    Set(String, Option<Vec<u8>>),
    /// `add_map_value`: one more value.
    Add(String, Vec<u8>),
}

impl Edit {
    fn apply(&self, h: &mut Headers) {
        match self {
            Edit::Set(k, v) => h.set(k, v.as_deref()),
            Edit::Add(k, v) => h.add(k, v),
        }
    }
}

/// Edits from which sending the whole map is cheaper than one call per edit: with the map
/// already read, one replace call beats three single calls; unread, it needs a read first.
const BATCH_READ: usize = 3;
const BATCH_UNREAD: usize = 4;

/// A header map during one callback.
#[derive(Debug)]
pub struct HeaderMap {
    map: MapType,
    snapshot: Option<Rc<Headers>>,
    pending: Vec<Edit>,
}

impl HeaderMap {
    /// The request's or response's map.
    pub fn new(map: MapType) -> Self {
        HeaderMap {
            map,
            snapshot: None,
            pending: Vec::new(),
        }
    }

    /// The map as the stages see it: Envoy's, with the pending edits applied.
    pub fn read(&mut self) -> Rc<Headers> {
        if let Some(s) = &self.snapshot {
            return Rc::clone(s);
        }
        let mut h = Headers::from_pairs(hostcalls::get_map_bytes(self.map).unwrap_or_default());
        for e in &self.pending {
            e.apply(&mut h);
        }
        let h = Rc::new(h);
        self.snapshot = Some(Rc::clone(&h));
        h
    }

    fn edit(&mut self, e: Edit) {
        if let Some(s) = self.snapshot.as_mut() {
            e.apply(Rc::make_mut(s));
        }
        self.pending.push(e);
    }

    /// Sets (`Some`) or removes (`None`) `name`.
    pub fn set(&mut self, name: &str, value: Option<&[u8]>) {
        self.edit(Edit::Set(
            name.to_ascii_lowercase(),
            value.map(<[u8]>::to_vec),
        ));
    }

    /// Adds a value of `name`.
    pub fn add(&mut self, name: &str, value: &[u8]) {
        self.edit(Edit::Add(name.to_ascii_lowercase(), value.to_vec()));
    }

    /// Sends the pending edits to Envoy, and forgets the snapshot: the next callback reads the
    /// map afresh (Envoy and other filters may change it in between).
    pub fn flush(&mut self) {
        let n = self.pending.len();
        let batch = if self.snapshot.is_some() {
            BATCH_READ
        } else {
            BATCH_UNREAD
        };
        if n >= batch {
            let whole = self.read();
            let pairs: Vec<(&str, &[u8])> = whole.pairs().collect();
            if hostcalls::set_map_bytes(self.map, pairs).is_ok() {
                self.pending.clear();
            }
        }
        for e in self.pending.drain(..) {
            let _ = match &e {
                Edit::Set(k, v) => hostcalls::set_map_value_bytes(self.map, k, v.as_deref()),
                Edit::Add(k, v) => hostcalls::add_map_value_bytes(self.map, k, v),
            };
        }
        self.snapshot = None;
    }
}
