//! A bounded least-recently-used cache, shared between requests.

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::core::lock;

pub(crate) struct Lru<K: Hash + Eq, V: Clone>(Mutex<LruCache<K, V>>);

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Lru(Mutex::new(LruCache::new(
            NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN),
        )))
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        lock(&self.0).get(k).cloned()
    }

    /// Inserts; the least recently used entry is dropped (and so wiped, for key types) when full.
    pub(crate) fn insert(&self, k: K, v: V) {
        lock(&self.0).put(k, v);
    }

    pub(crate) fn remove(&self, k: &K) {
        lock(&self.0).pop(k);
    }

    pub(crate) fn retain(&self, keep: impl Fn(&K) -> bool) {
        let mut c = lock(&self.0);
        let doomed: Vec<K> = c.iter().filter(|(k, _)| !keep(k)).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            c.pop(&k);
        }
    }

    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}
