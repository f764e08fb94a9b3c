//! Capture budgets the agent raises for single connections (a model call's
//! answer is wanted whole): handed to the probes through `CAPTURE_RAISES`,
//! which the connection's next syscall consumes, so that the agent never
//! writes back an `FdInfo` the probes may be updating at that moment.
use std::{collections::HashMap as StdHashMap, time::Duration, time::Instant};

use aya::maps::{HashMap, MapData};
use loupe_common::maps::{CAPTURE_RAISES_CAPACITY, ConnKey};
use tracing::warn;

/// A raise its connection did not take within this long (the connection
/// went quiet, or closed) is withdrawn.
const UNCLAIMED: Duration = Duration::from_secs(60);

pub struct Raises {
    map: HashMap<MapData, ConnKey, u32>,
    /// The raises handed over, and when.
    given: StdHashMap<ConnKey, Instant>,
    refused_logged: bool,
}

impl Raises {
    pub fn new(map: HashMap<MapData, ConnKey, u32>) -> Self {
        Self {
            map,
            given: StdHashMap::new(),
            refused_logged: false,
        }
    }

    /// Gives connection `conn` of process `tgid` a budget of `bytes`;
    /// returns whether the probes now have raises to look for.
    pub fn raise(&mut self, tgid: u32, conn: u64, bytes: u32, now: Instant) -> bool {
        let key = ConnKey {
            tgid,
            _pad: 0,
            conn,
        };
        let full =
            self.given.len() >= CAPTURE_RAISES_CAPACITY as usize && !self.given.contains_key(&key);
        match (full, self.map.insert(key, bytes, 0)) {
            (false, Ok(())) => {
                self.given.insert(key, now);
            }
            (_, result) => {
                if !self.refused_logged {
                    self.refused_logged = true;
                    warn!(
                        pending = self.given.len(),
                        error = ?result.err(),
                        "a connection's capture budget could not be raised: a model call's answer \
                         may be read in part"
                    );
                }
            }
        }
        self.pending()
    }

    pub fn pending(&self) -> bool {
        !self.given.is_empty()
    }

    /// Forgets the raises the probes took and withdraws the stale ones;
    /// returns whether any are still pending.
    pub fn sweep(&mut self, now: Instant) -> bool {
        let map = &mut self.map;
        self.given.retain(|key, given| {
            if map.get(key, 0).is_err() {
                return false; // taken
            }
            if now.duration_since(*given) > UNCLAIMED {
                let _ = map.remove(key);
                return false;
            }
            true
        });
        !self.given.is_empty()
    }
}
