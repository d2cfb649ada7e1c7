//! A small bounded cache with a time-to-live: the router's profiles, category defaults and
//! templates, the workers' webhook endpoint secrets. Bounded by entry count; when full the
//! oldest insertion goes first. Hits and misses are counted per cache name, under the metric
//! its role names, so the hit ratio can be graphed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    name: &'static str,
    capacity: usize,
    ttl: Duration,
    entries: HashMap<K, (Instant, V)>,
    order: VecDeque<K>,
    // Registered once: `counter!` with labels builds and hashes its key on every call.
    hits: metrics::Counter,
    misses: metrics::Counter,
}

impl<K, V> std::fmt::Debug for TtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlCache")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// `metric` counts the lookups, labelled `cache` = `name` and `result` = `hit` | `miss`.
    /// Make it after the role installed its metrics recorder, which its counters go to.
    pub fn new(metric: &'static str, name: &'static str, capacity: usize, ttl: Duration) -> Self {
        Self {
            name,
            capacity: capacity.max(1),
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
            hits: metrics::counter!(metric, "cache" => name, "result" => "hit"),
            misses: metrics::counter!(metric, "cache" => name, "result" => "miss"),
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        let fresh = self
            .entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone());
        match fresh {
            Some(_) => self.hits.increment(1),
            None => self.misses.increment(1),
        }
        fresh
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self
            .entries
            .insert(key.clone(), (Instant::now(), value))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_at_capacity_and_expires_after_the_ttl() {
        let mut cache = TtlCache::new("test_lookups", "test", 2, Duration::from_secs(60));
        cache.insert("a", 1);
        cache.insert("b", 2);
        cache.insert("c", 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.get(&"c"), Some(3));

        let mut short = TtlCache::new("test_lookups", "test", 2, Duration::ZERO);
        short.insert("a", 1);
        assert_eq!(short.get(&"a"), None);
    }
}
