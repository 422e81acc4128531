//! Protection of the reviewer login against guessing and floods: failed logins are counted per name
//! and per client address, and the Argon2 work runs in a small bounded pool.
//!
//! The pool is [`limits::HASHING_AT_ONCE`] threads of its own, not tokio's blocking threads: each
//! thread's allocator keeps the 19 MiB of its last Argon2 run for the next one, so a few long-lived
//! threads keep the memory bounded where a hundred short-lived ones would each keep their own. At
//! most [`limits::HASHING_QUEUE`] more logins wait; one more is refused at once.
//!
//! The counts are kept in memory only: a restart of the server forgets them. Each map holds at most
//! [`limits::LOGIN_TRACKED`] keys; when full, expired entries go first, then the oldest, so a flood of
//! distinct names cannot grow it. An attempt is counted as a failure when it is admitted (before the
//! password is checked), so parallel attempts cannot pass the limit; a success takes it back.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits;

/// Failures of one key within its window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// The first failure of the window.
    first: Instant,
    count: u32,
    /// A refusal was already reported (audited) in this window.
    reported: bool,
}

/// Failure counts per key in fixed windows that start at a key's first failure.
#[derive(Debug)]
struct Counter<K> {
    limit: u32,
    window: Duration,
    cap: usize,
    keys: HashMap<K, Failures>,
}

impl<K: Eq + Hash + Clone> Counter<K> {
    fn new(limit: u32, window: Duration, cap: usize) -> Self {
        Self {
            limit,
            window,
            cap,
            keys: HashMap::new(),
        }
    }

    /// How long `key` stays refused, and whether this is the first refusal of its window; `None` when
    /// it is not refused.
    fn refused(&mut self, key: &K, now: Instant) -> Option<(Duration, bool)> {
        let f = self.keys.get_mut(key)?;
        let age = now.saturating_duration_since(f.first);
        if age >= self.window {
            self.keys.remove(key);
            return None;
        }
        if f.count < self.limit {
            return None;
        }
        let first = !f.reported;
        f.reported = true;
        Some((self.window - age, first))
    }

    fn fail(&mut self, key: K, now: Instant) {
        if !self.keys.contains_key(&key) && self.keys.len() >= self.cap {
            self.evict(now);
        }
        let fresh = Failures {
            first: now,
            count: 0,
            reported: false,
        };
        let f = self.keys.entry(key).or_insert(fresh);
        if now.saturating_duration_since(f.first) >= self.window {
            *f = fresh;
        }
        f.count = f.count.saturating_add(1);
    }

    /// Takes back one failure (the attempt succeeded).
    fn undo(&mut self, key: &K) {
        if let Some(f) = self.keys.get_mut(key) {
            f.count = f.count.saturating_sub(1);
        }
    }

    fn forget(&mut self, key: &K) {
        self.keys.remove(key);
    }

    /// Makes room for one key: drops expired entries, then the oldest.
    fn evict(&mut self, now: Instant) {
        let window = self.window;
        self.keys.retain(|_, f| now.saturating_duration_since(f.first) < window);
        if self.keys.len() >= self.cap {
            let oldest = self.keys.iter().min_by_key(|(_, f)| f.first).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.keys.remove(&k);
            }
        }
    }
}

/// What a refused login was refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Too many failures for this name.
    Name,
    /// Too many failures from this address.
    Address,
}

/// Why a login attempt was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many logins wait for the hashing pool: `503`.
    Busy,
    /// Too many failures: `429`, for `retry_after`. `first` is set on the first refusal of the window
    /// (the one to audit).
    Blocked {
        /// Name or address.
        by: Blocked,
        /// Until the window ends.
        retry_after: Duration,
        /// First refusal of this window.
        first: bool,
    },
}

/// An admitted login attempt. It holds a place in the hashing queue until dropped (after its job ran).
#[derive(Debug)]
pub struct Ticket {
    name: String,
    address: IpAddr,
    _queued: OwnedSemaphorePermit,
}

type Job = Box<dyn FnOnce() + Send>;

/// Failure counts and the hashing pool of the login.
#[derive(Debug)]
pub struct LoginGuard {
    counts: Mutex<(Counter<String>, Counter<IpAddr>)>,
    queue: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl LoginGuard {
    /// A guard with `at_once` hashing threads and `queue` places to wait for one.
    pub fn new(at_once: usize, queue: usize) -> anyhow::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..at_once {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = job else { break };
                    // A panicking job only loses its answer (the login gets a 500), not the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                })
                .map_err(|e| anyhow::anyhow!("starting a password hashing thread: {e}"))?;
        }
        Ok(Self {
            counts: Mutex::new((
                Counter::new(
                    limits::LOGIN_FAILURES_PER_NAME,
                    limits::LOGIN_WINDOW,
                    limits::LOGIN_TRACKED,
                ),
                Counter::new(
                    limits::LOGIN_FAILURES_PER_ADDRESS,
                    limits::LOGIN_WINDOW,
                    limits::LOGIN_TRACKED,
                ),
            )),
            queue: Arc::new(Semaphore::new(at_once + queue)),
            jobs,
        })
    }

    /// The guard with the limits of [`crate::limits`].
    pub fn with_default_limits() -> anyhow::Result<Self> {
        Self::new(limits::HASHING_AT_ONCE, limits::HASHING_QUEUE)
    }

    /// Admits a login attempt for `name` from `address`, counting it as a failure until
    /// [`Self::succeeded`].
    pub fn admit(&self, name: &str, address: IpAddr) -> Result<Ticket, Refusal> {
        self.admit_at(name, address, Instant::now())
    }

    fn admit_at(&self, name: &str, address: IpAddr, now: Instant) -> Result<Ticket, Refusal> {
        let queued = self.queue.clone().try_acquire_owned().map_err(|_| Refusal::Busy)?;
        let name = name_key(name);
        let address = address_key(address);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let (names, addresses) = &mut *counts;
        for (by, refused) in [
            (Blocked::Name, names.refused(&name, now)),
            (Blocked::Address, addresses.refused(&address, now)),
        ] {
            if let Some((retry_after, first)) = refused {
                return Err(Refusal::Blocked { by, retry_after, first });
            }
        }
        names.fail(name.clone(), now);
        addresses.fail(address, now);
        Ok(Ticket {
            name,
            address,
            _queued: queued,
        })
    }

    /// Runs `f` (the password check and what follows) on a hashing thread. The ticket keeps its place
    /// in the queue until `f` has run, even if the request is given up meanwhile.
    pub async fn run<T: Send + 'static>(
        &self,
        ticket: Ticket,
        f: impl FnOnce(&Ticket) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let result = f(&ticket);
            drop(ticket);
            let _ = tx.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the password hashing threads stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("checking the password failed (see the server log)"))?
    }

    /// The attempt succeeded: the name's failures are forgotten and the address's count taken back.
    pub fn succeeded(&self, ticket: &Ticket) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.0.forget(&ticket.name);
        counts.1.undo(&ticket.address);
    }
}

/// The key of a typed name: at most 64 bytes (no reviewer's name is longer).
fn name_key(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The key of a client address: an IPv4 address, or the /64 prefix of an IPv6 address (one network).
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(a) => {
            let s = a.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn blocked(r: Result<Ticket, Refusal>) -> (Blocked, Duration, bool) {
        match r {
            Err(Refusal::Blocked { by, retry_after, first }) => (by, retry_after, first),
            other => panic!("not blocked: {other:?}"),
        }
    }

    #[test]
    fn five_failures_block_a_name_for_the_rest_of_fifteen_minutes() {
        let g = LoginGuard::new(2, 16).unwrap();
        let t0 = Instant::now();
        for i in 0..5 {
            let at = t0 + Duration::from_secs(60 * i);
            drop(g.admit_at("lead", HOME, at).expect("admitted"));
        }
        let (by, retry, first) = blocked(g.admit_at("lead", HOME, t0 + Duration::from_secs(300)));
        assert_eq!((by, retry, first), (Blocked::Name, Duration::from_secs(600), true));
        // Reported once per window.
        let (_, _, first) = blocked(g.admit_at("lead", HOME, t0 + Duration::from_secs(301)));
        assert!(!first);
        // Another name from the same address goes on; the window's end frees the name.
        assert!(g.admit_at("other", HOME, t0 + Duration::from_secs(302)).is_ok());
        assert!(g.admit_at("lead", HOME, t0 + Duration::from_secs(900)).is_ok());
    }

    #[test]
    fn a_success_clears_the_name_and_takes_back_the_address_count() {
        let g = LoginGuard::new(2, 16).unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            drop(g.admit_at("lead", HOME, t0).expect("admitted"));
        }
        let ticket = g.admit_at("lead", HOME, t0).expect("admitted");
        g.succeeded(&ticket);
        drop(ticket);
        for _ in 0..4 {
            drop(g.admit_at("lead", HOME, t0).expect("admitted after the success"));
        }
        let counts = g.counts.lock().unwrap();
        assert_eq!(
            counts.1.keys[&HOME].count, 8,
            "the success is not counted for the address"
        );
    }

    #[test]
    fn an_address_is_blocked_after_many_names() {
        let g = LoginGuard::new(2, 16).unwrap();
        let t0 = Instant::now();
        for i in 0..limits::LOGIN_FAILURES_PER_ADDRESS {
            drop(g.admit_at(&format!("name {i}"), HOME, t0).expect("admitted"));
        }
        let (by, ..) = blocked(g.admit_at("lead", HOME, t0));
        assert_eq!(by, Blocked::Address);
        // An IPv6 /64 is one address.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(address_key(mapped), HOME);
    }

    #[test]
    fn the_queue_is_bounded() {
        let g = LoginGuard::new(2, 3).unwrap();
        let t0 = Instant::now();
        let held: Vec<Ticket> = (0..5)
            .map(|i| g.admit_at(&format!("n{i}"), HOME, t0).expect("admitted"))
            .collect();
        assert_eq!(g.admit_at("n5", HOME, t0).unwrap_err(), Refusal::Busy);
        drop(held);
        assert!(g.admit_at("n5", HOME, t0).is_ok());
    }

    #[tokio::test]
    async fn jobs_run_on_the_hashing_threads_and_keep_their_place_until_done() {
        let g = Arc::new(LoginGuard::new(1, 1).unwrap());
        let t0 = Instant::now();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let first = g.admit_at("a", HOME, t0).unwrap();
        let g2 = g.clone();
        let running = tokio::spawn(async move {
            g2.run(first, move |_| {
                wait.recv().ok();
                Ok(std::thread::current().name().map(str::to_owned))
            })
            .await
        });
        let second = g.admit_at("b", HOME, t0).unwrap();
        // Both places are taken (one running, one waiting): the next is refused.
        assert_eq!(g.admit_at("c", HOME, t0).unwrap_err(), Refusal::Busy);
        go.send(()).unwrap();
        let name = running.await.unwrap().unwrap();
        assert_eq!(name.as_deref(), Some("argon2-0"));
        assert_eq!(g.run(second, |_| Ok(7)).await.unwrap(), 7);
        assert!(g.admit_at("c", HOME, t0).is_ok());
    }

    #[test]
    fn a_flood_of_names_keeps_the_map_bounded() {
        let mut c: Counter<String> = Counter::new(5, Duration::from_secs(900), 100);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            c.fail(format!("name {i}"), t0 + Duration::from_millis(i));
        }
        assert_eq!(c.keys.len(), 100);
        // The newest are kept.
        assert!(c.keys.contains_key("name 9999"));
        assert!(!c.keys.contains_key("name 0"));
        // Long typed names share the key of their first 64 bytes (no name is longer).
        assert_eq!(name_key(&"é".repeat(100)).len(), 64);
    }
}
