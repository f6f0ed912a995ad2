//! The connection pool of one target: up to `pool_max` authenticated SSH
//! connections, each carrying many channels, opened through the breaker,
//! pinged while idle and closed after the idle timeout.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use orion_core::RuntimeError;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};
use russh::{Channel, Disconnect};
use tracing::{debug, info, warn};

use super::breaker::{Breaker, BreakerState};
use super::config::{SshConfig, SshConfigError, SshTarget};
use super::hostkey::Client;

/// The most channels put on one connection: OpenSSH's default `MaxSessions`.
/// Past `pool_max` connections carrying this many each, a caller waits (up to
/// the connect timeout) for one to free.
pub const CHANNELS_PER_CONNECTION: usize = 10;

/// The pool's figures, for health reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections opened (authenticated) since the runtime was made.
    pub opened: u64,
    /// Connections open now.
    pub open: usize,
    /// Channels in use now, over all connections.
    pub channels: usize,
}

/// One authenticated connection.
pub(crate) struct Conn {
    /// Its number, for logs.
    id: u64,
    handle: Handle<Client>,
    /// Channels open on it now.
    busy: AtomicUsize,
    /// When its last channel closed (or it opened).
    idle_since: Mutex<Instant>,
}

impl Conn {
    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    /// Whether it should leave the pool: closed, or idle for `idle_timeout`.
    fn is_spent(&self, now: Instant, idle_timeout: Duration) -> bool {
        self.handle.is_closed()
            || (self.is_idle() && now.duration_since(*lock(&self.idle_since)) >= idle_timeout)
    }

    async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "idle", "en")
            .await;
    }
}

/// A connection in use for one channel; returned to the pool when dropped.
pub(crate) struct Lease {
    conn: Arc<Conn>,
}

impl Lease {
    fn new(conn: Arc<Conn>) -> Lease {
        conn.busy.fetch_add(1, Ordering::SeqCst);
        Lease { conn }
    }

    /// Whether the connection under it has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.conn.handle.is_closed()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.conn.busy.fetch_sub(1, Ordering::SeqCst) == 1 {
            *lock(&self.conn.idle_since) = Instant::now();
        }
    }
}

/// Connections to one target.
pub(crate) struct Pool {
    target: SshTarget,
    key: Arc<PrivateKey>,
    known_hosts: PathBuf,
    ssh: Arc<client::Config>,
    max: usize,
    idle_timeout: Duration,
    keepalive: Duration,
    connect_timeout: Duration,
    conns: Mutex<Slots>,
    breaker: Mutex<Breaker>,
    opened: AtomicU64,
    /// The idle reaper, started with the first connection.
    reaper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct Slots {
    open: Vec<Arc<Conn>>,
    /// Connections being opened (they count against the maximum).
    opening: usize,
}

/// What [`Pool::pick`] chose.
enum Pick {
    Use(Lease),
    Open,
    Wait,
}

/// Locks, ignoring poisoning: every critical section leaves the data whole.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// A pool for the config's target; loads the key (no I/O to the server).
    pub(crate) fn new(config: &SshConfig) -> Result<Pool, SshConfigError> {
        let key = config.load_key()?;
        let ssh = client::Config {
            keepalive_interval: Some(config.keepalive),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        };
        Ok(Pool {
            target: config.target.clone(),
            key: Arc::new(key),
            known_hosts: config.known_hosts_path()?,
            ssh: Arc::new(ssh),
            max: config.pool_max.max(1),
            idle_timeout: config.idle_timeout,
            keepalive: config.keepalive,
            connect_timeout: config.connect_timeout,
            conns: Mutex::new(Slots::default()),
            breaker: Mutex::new(Breaker::new(
                config.breaker_failures,
                config.breaker_open_for,
            )),
            opened: AtomicU64::new(0),
            reaper: Mutex::new(None),
        })
    }

    /// The breaker's state now.
    pub(crate) fn breaker(&self) -> BreakerState {
        lock(&self.breaker).state(Instant::now())
    }

    /// The pool's figures now.
    pub(crate) fn stats(&self) -> PoolStats {
        let slots = lock(&self.conns);
        PoolStats {
            opened: self.opened.load(Ordering::SeqCst),
            open: slots.open.len(),
            channels: slots
                .open
                .iter()
                .map(|c| c.busy.load(Ordering::SeqCst))
                .sum(),
        }
    }

    /// Opens a session channel on a pooled connection, opening a connection if
    /// all are busy and the pool is not full; retries once on a fresh
    /// connection when the chosen one turns out dead.
    pub(crate) async fn channel(
        self: &Arc<Self>,
    ) -> Result<(Channel<client::Msg>, Lease), RuntimeError> {
        let mut last = None;
        for _ in 0..2 {
            let lease = self.acquire().await?;
            match lease.conn.handle.channel_open_session().await {
                Ok(ch) => return Ok((ch, lease)),
                Err(e) => {
                    debug!(server = %self.target, conn = lease.conn.id, error = %e, "channel open failed");
                    if !lease.is_closed() {
                        return Err(RuntimeError::Unavailable(format!(
                            "ssh {}: cannot open a channel: {e}",
                            self.target
                        )));
                    }
                    last = Some(e);
                }
            }
        }
        Err(RuntimeError::Unavailable(format!(
            "ssh {}: the connection closed while opening a channel: {}",
            self.target,
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// A lease on a connection: an idle one, else a new one while below the
    /// maximum, else the least busy.
    async fn acquire(self: &Arc<Self>) -> Result<Lease, RuntimeError> {
        self.start_reaper();
        let deadline = Instant::now() + self.connect_timeout;
        loop {
            let (pick, expired) = self.pick(Instant::now());
            for c in expired {
                c.close().await;
            }
            match pick {
                Pick::Use(lease) => return Ok(lease),
                Pick::Wait if Instant::now() >= deadline => {
                    return Err(RuntimeError::Unavailable(format!(
                        "ssh {}: all {} connections carry {CHANNELS_PER_CONNECTION} channels; \
                         none freed within {:?}",
                        self.target, self.max, self.connect_timeout
                    )))
                }
                Pick::Wait => tokio::time::sleep(Duration::from_millis(10)).await,
                Pick::Open => {
                    // Gives the slot back also when this future is dropped.
                    let mut slot = Opening {
                        pool: self,
                        armed: true,
                    };
                    let opened = self.open().await;
                    let mut slots = lock(&self.conns);
                    slots.opening -= 1;
                    slot.armed = false;
                    let conn = Arc::new(opened?);
                    let lease = Lease::new(conn.clone());
                    slots.open.push(conn);
                    return Ok(lease);
                }
            }
        }
    }

    /// Chooses under the lock, and takes out the closed and idle-expired
    /// connections (returned to be disconnected outside it).
    fn pick(&self, now: Instant) -> (Pick, Vec<Arc<Conn>>) {
        let mut slots = lock(&self.conns);
        let (gone, keep): (Vec<_>, Vec<_>) = slots
            .open
            .drain(..)
            .partition(|c| c.is_spent(now, self.idle_timeout));
        slots.open = keep;
        let least = slots
            .open
            .iter()
            .min_by_key(|c| c.busy.load(Ordering::SeqCst));
        let pick = match least {
            Some(c) if c.is_idle() => Pick::Use(Lease::new(c.clone())),
            _ if slots.open.len() + slots.opening < self.max => {
                slots.opening += 1;
                Pick::Open
            }
            // Spread over the connections being opened rather than pile
            // onto a busy one (sshd ends one command per connection at a time).
            _ if slots.opening > 0 => Pick::Wait,
            Some(c) if c.busy.load(Ordering::SeqCst) < CHANNELS_PER_CONNECTION => {
                Pick::Use(Lease::new(c.clone()))
            }
            _ => Pick::Wait,
        };
        (pick, gone)
    }

    /// Opens and authenticates one connection, through the breaker.
    async fn open(&self) -> Result<Conn, RuntimeError> {
        let admitted = lock(&self.breaker).admit(Instant::now());
        if let Err((failures, last)) = admitted {
            return Err(RuntimeError::Unavailable(format!(
                "ssh breaker open for {} after {failures} failures: {last}",
                self.target
            )));
        }
        // An attempt dropped half-way (its caller gave up) frees a half-open
        // breaker's trial for the next caller instead of wedging it.
        let mut attempt = Attempt {
            pool: self,
            armed: true,
        };
        let connected = tokio::time::timeout(self.connect_timeout, self.connect()).await;
        let result = match connected {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.connect_timeout)),
        };
        attempt.armed = false;
        let mut breaker = lock(&self.breaker);
        match result {
            Ok(handle) => {
                breaker.succeeded();
                let id = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
                info!(server = %self.target, conn = id, "ssh connection opened");
                Ok(Conn {
                    id,
                    handle,
                    busy: AtomicUsize::new(0),
                    idle_since: Mutex::new(Instant::now()),
                })
            }
            Err(why) => {
                breaker.failed(Instant::now(), &why);
                warn!(server = %self.target, error = %why, "ssh connection failed");
                Err(RuntimeError::Unavailable(format!(
                    "ssh {}: {why}",
                    self.target
                )))
            }
        }
    }

    /// TCP, handshake with the host-key check, public-key authentication.
    async fn connect(&self) -> Result<Handle<Client>, String> {
        let refusal = Arc::new(Mutex::new(None));
        let handler = Client::new(
            self.target.clone(),
            self.known_hosts.clone(),
            refusal.clone(),
        );
        let addr = (self.target.host.as_str(), self.target.port);
        let mut handle = match client::connect(self.ssh.clone(), addr, handler).await {
            Ok(h) => h,
            Err(e) => {
                return Err(lock(&refusal)
                    .take()
                    .unwrap_or_else(|| format!("cannot connect: {e}")))
            }
        };
        let hash = if self.key.algorithm().is_rsa() {
            handle
                .best_supported_rsa_hash()
                .await
                .map_err(|e| format!("negotiating the RSA signature: {e}"))?
                .flatten()
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(self.key.clone(), hash);
        let auth = handle
            .authenticate_publickey(self.target.user.clone(), key)
            .await
            .map_err(|e| format!("authentication failed: {e}"))?;
        if !auth.success() {
            return Err(format!(
                "the server refused key {} for user {}",
                self.key.public_key().fingerprint(HashAlg::Sha256),
                self.target.user
            ));
        }
        Ok(handle)
    }

    /// Closes every connection (channels on them end) and stops the reaper.
    pub(crate) async fn close_all(&self) {
        let conns: Vec<_> = lock(&self.conns).open.drain(..).collect();
        for c in conns {
            c.close().await;
        }
        if let Some(r) = lock(&self.reaper).take() {
            r.abort();
        }
    }

    /// Starts the task that pings idle connections and closes expired ones.
    fn start_reaper(self: &Arc<Self>) {
        let mut reaper = lock(&self.reaper);
        if reaper.is_some() {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = self.keepalive;
        *reaper = Some(tokio::spawn(reap(pool, every)));
    }
}

/// A slot counted in `Slots::opening`, given back if the opening is abandoned.
struct Opening<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.pool.conns).opening -= 1;
        }
    }
}

/// A connection attempt let through the breaker; if abandoned, the breaker
/// forgets it (no failure counted, a half-open trial freed).
struct Attempt<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.pool.breaker).abandoned();
        }
    }
}

/// Every `every`: drops closed and idle-expired connections and pings the idle
/// ones, dropping those that do not answer. Ends with the pool.
async fn reap(pool: Weak<Pool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let (idle, expired) = {
            let now = Instant::now();
            let mut slots = lock(&pool.conns);
            let (gone, keep): (Vec<_>, Vec<_>) = slots
                .open
                .drain(..)
                .partition(|c| c.is_spent(now, pool.idle_timeout));
            slots.open = keep;
            let idle: Vec<_> = slots.open.iter().filter(|c| c.is_idle()).cloned().collect();
            (idle, gone)
        };
        for c in expired {
            debug!(server = %pool.target, conn = c.id, "closing an idle ssh connection");
            c.close().await;
        }
        for c in idle {
            let answered = tokio::time::timeout(every, c.handle.send_ping()).await;
            if !matches!(answered, Ok(Ok(()))) {
                warn!(server = %pool.target, conn = c.id, "an idle ssh connection stopped answering");
                lock(&pool.conns).open.retain(|o| !Arc::ptr_eq(o, &c));
                c.close().await;
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(r) = lock(&self.reaper).take() {
            r.abort();
        }
    }
}
