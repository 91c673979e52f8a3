//! Who leads the controller pair, decided by etcd: the leader is whoever holds the site's leader
//! key, bound to an etcd lease of a few seconds that it renews every third of its life. A
//! controller that cannot renew in time stops leading *before* etcd can let the lease run out
//! and grant the key to its partner: it counts its lease from the moment it sent the request
//! that granted or renewed it (etcd counts from when it received it, which is later), less a
//! margin. [`Leadership::is_leader`] answers from that clock, so a caller that checks it before
//! each durable step never acts once its partner may lead, even if this loop is held up.

use super::etcd::{Claim, Etcd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a controller of the pair is, as far as it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It holds the leader key: it serves writes and runs the site.
    Leader,
    /// It does not; `leader` is the one that does, when known.
    Follower { leader: Option<Peer> },
}

/// A controller of the pair as it says it is present (whether it leads or not).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub name: String,
    pub url: String,
    /// The version of the controller it runs.
    pub version: String,
}

impl Member {
    /// This controller, under `name` at `url`, with the version it runs.
    pub fn this(name: &str, url: &str) -> Member {
        Member {
            name: name.into(),
            url: url.into(),
            version: serverware_shared::BUILD.into(),
        }
    }
}

/// Keeps `key = member` in etcd under a lease of its own, renewed every third of `ttl`, until
/// `stop` (then the key goes at once).
async fn present(
    etcd: Etcd,
    key: String,
    member: Member,
    ttl: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let value = serde_json::to_string(&member).unwrap_or_default();
    let every = ttl / 3;
    while !*stop.borrow() {
        let lease = match etcd.grant(ttl).await {
            Ok(l) => l,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(every) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        if etcd.put(&key, &value, lease).await.is_ok() {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.changed() => break,
                }
                match etcd.keep_alive(lease).await {
                    Ok(left) if left > 0 => {}
                    _ => break,
                }
            }
        }
        let _ = etcd.revoke(lease).await;
    }
}

/// A controller of the pair as the leader key names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    pub name: String,
    /// Where it serves the dashboard and the API.
    pub url: String,
}

impl Peer {
    /// The leader key's value: this peer as JSON.
    fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.name.clone())
    }

    /// Reads a leader key's value (a bare name from a controller that wrote only that).
    pub fn from_value(v: &str) -> Peer {
        serde_json::from_str(v).unwrap_or_else(|_| Peer {
            name: v.to_string(),
            url: String::new(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// This controller's name, as its partner and the dashboard show it.
    pub name: String,
    /// Where it serves, as its partner and the dashboard point to it while it leads.
    pub url: String,
    /// The key whose holder leads (one per site).
    pub key: String,
    /// The lease's life (whole seconds, at least 2); renewed every third of it.
    pub ttl: Duration,
    /// Where each controller says it is present (`PREFIX/NAME`: name, URL, version), under a
    /// lease of its own, whether it leads or not.
    pub members: String,
    /// Claims nothing for this long after starting (a controller that just handed the site
    /// over lets its partner take it); it leads again after that if nobody did.
    pub yield_for: Duration,
}

impl Options {
    /// How long before the earliest moment etcd may end the lease this controller stops
    /// leading: a tenth of the lease, at least 250 ms (clocks that run at slightly different
    /// rates, the time to stop what it was doing).
    pub fn margin(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(250))
    }

    fn every(&self) -> Duration {
        self.ttl / 3
    }

    /// How often a follower looks whether the key is free: a twelfth of the lease, at least
    /// 100 ms (a takeover waits for the lease to run out, then at most this long).
    fn poll(&self) -> Duration {
        (self.ttl / 12).max(Duration::from_millis(100))
    }
}

/// Until when this controller may act as the leader (None: it does not lead).
type Until = Arc<Mutex<Option<Instant>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One controller's part in the election, running until [`Leadership::stop`].
pub struct Leadership {
    me: Peer,
    etcd: Etcd,
    opts: Options,
    /// Asked to hand the site over to its partner (a planned switch-over).
    hand_over: watch::Sender<bool>,
    presence: tokio::task::JoinHandle<()>,
    /// The other controller last seen leading.
    previous: Arc<Mutex<Option<Peer>>>,
    role: watch::Receiver<Role>,
    until: Until,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Starts campaigning for the key and following whoever holds it.
    pub fn start(etcd: Etcd, opts: Options) -> Leadership {
        let opts = Options {
            ttl: opts.ttl.max(Duration::from_secs(2)),
            ..opts
        };
        let (role_tx, role) = watch::channel(Role::Follower { leader: None });
        let (stop, stop_rx) = watch::channel(false);
        let until: Until = Default::default();
        let me = Peer {
            name: opts.name.clone(),
            url: opts.url.clone(),
        };
        let previous: Arc<Mutex<Option<Peer>>> = Default::default();
        let presence = tokio::spawn(present(
            etcd.clone(),
            format!("{}/{}", opts.members.trim_end_matches('/'), opts.name),
            Member::this(&opts.name, &opts.url),
            opts.ttl,
            stop_rx.clone(),
        ));
        // While it leads, etcd's own Raft leader is kept off its machine.
        tokio::spawn(super::raft::keep_off(
            etcd.clone(),
            Member::this(&opts.name, &opts.url),
            opts.members.clone(),
            role.clone(),
            stop_rx.clone(),
        ));
        let c = Campaign {
            previous: previous.clone(),
            etcd: etcd.clone(),
            opts: opts.clone(),
            role: role_tx,
            until: until.clone(),
            stop: stop_rx,
        };
        let task = tokio::spawn(c.run());
        Leadership {
            me,
            etcd,
            opts,
            hand_over: watch::channel(false).0,
            presence,
            previous,
            role,
            until,
            stop,
            task,
        }
    }

    /// Whether this controller may act as the leader now: it holds the key and its lease
    /// cannot have run out yet. Checked before every durable step a leader writes.
    pub fn is_leader(&self) -> bool {
        lock(&self.until).is_some_and(|u| Instant::now() < u)
    }

    /// Until when it may act as the leader, while it leads.
    pub fn leading_until(&self) -> Option<Instant> {
        *lock(&self.until)
    }

    /// Asks this controller to hand the site over to its partner (a planned switch-over); the
    /// program does it (see [`Leadership::hand_over_requested`]).
    pub fn request_hand_over(&self) {
        self.hand_over.send_replace(true);
    }

    /// Returns once a hand-over was asked for.
    pub async fn hand_over_requested(&self) {
        let mut rx = self.hand_over.subscribe();
        let _ = rx.wait_for(|asked| *asked).await;
    }

    /// The controllers present now (each keeps its own key while it runs), by name.
    pub async fn members(&self) -> Result<Vec<Member>, super::EtcdError> {
        let prefix = format!("{}/", self.opts.members.trim_end_matches('/'));
        Ok(self
            .etcd
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|(_, h)| serde_json::from_str(&h.value).ok())
            .collect())
    }

    /// Puts `key = value` in etcd only while the leader key names this controller (a
    /// transaction that compares it): whether it did.
    pub async fn put_while_leading(
        &self,
        key: &str,
        value: &str,
    ) -> Result<bool, super::EtcdError> {
        self.etcd
            .put_if(key, value, &self.opts.key, &self.me.to_value())
            .await
    }

    /// The etcd cluster this controller asks.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// How long its lease is.
    pub fn ttl(&self) -> Duration {
        self.opts.ttl
    }

    /// What it is, as last decided.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The other controller this one last saw leading (before it led itself).
    pub fn previous(&self) -> Option<Peer> {
        lock(&self.previous).clone()
    }

    /// This controller.
    pub fn me(&self) -> &Peer {
        &self.me
    }

    /// Where it stands, as `GET /health` and the dashboard say it.
    pub fn status(&self) -> serverware_shared::api::PairStatus {
        use serverware_shared::api::{PairPeer, PairStatus};
        let peer = |p: &Peer| PairPeer {
            name: p.name.clone(),
            url: p.url.clone(),
        };
        let (role, leader) = match self.role() {
            Role::Leader if self.is_leader() => ("leader", Some(peer(&self.me))),
            Role::Leader => ("standby", None),
            Role::Follower { leader } => ("standby", leader.as_ref().map(peer)),
        };
        PairStatus {
            role: role.into(),
            name: self.me.name.clone(),
            leader,
        }
    }

    /// Told each time the role changes.
    pub fn changes(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Returns once this controller leads.
    pub async fn leading(&self) {
        let mut rx = self.role.clone();
        while !self.is_leader() {
            // A role already decided and not yet renewed lands here again at once.
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    /// Returns once this controller, having led, may no longer act as the leader: at the
    /// latest when its lease may run out (from its own clock, not from a message that may come
    /// late), sooner when the campaign gives the lead up.
    pub async fn lost(&self) {
        let mut rx = self.role.clone();
        loop {
            let Some(until) = self.leading_until() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = rx.changed() => {}
            }
        }
    }

    /// Stops campaigning; a leader hands the key back at once (its lease revoked), so its
    /// partner need not wait for it to run out. Returns once done (at most a few seconds, when
    /// etcd does not answer).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(self.task.is_finished() && self.presence.is_finished()) && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

struct Campaign {
    previous: Arc<Mutex<Option<Peer>>>,
    etcd: Etcd,
    opts: Options,
    role: watch::Sender<Role>,
    until: Until,
    stop: watch::Receiver<bool>,
}

enum Led {
    /// It could not renew in time, or the lease was gone.
    Lost,
    Stopped,
}

impl Campaign {
    fn set(&self, role: Role) {
        if let Role::Follower { leader: Some(p) } = &role {
            if p.name != self.opts.name {
                *lock(&self.previous) = Some(p.clone());
            }
        }
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            if changed {
                tracing::info!(name = %self.opts.name, role = ?role, "controller pair");
                *r = role;
            }
            changed
        });
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits `d`; false when asked to stop meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopped(),
            _ = self.stop.changed() => false,
        }
    }

    async fn run(mut self) {
        // A controller that just handed the site over only follows for a while.
        let yield_until = Instant::now() + self.opts.yield_for;
        while !self.stopped() && Instant::now() < yield_until {
            match self.etcd.get(&self.opts.key).await {
                Ok(h) => self.set(Role::Follower {
                    leader: h.map(|h| Peer::from_value(&h.value)),
                }),
                Err(_) => self.set(Role::Follower { leader: None }),
            }
            let left = yield_until.saturating_duration_since(Instant::now());
            if !self.pause(self.opts.every().min(left)).await {
                break;
            }
        }
        while !self.stopped() {
            let sent = Instant::now();
            let lease = match self.etcd.grant(self.opts.ttl).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(name = %self.opts.name, "no lease from etcd: {e}");
                    self.set(Role::Follower { leader: None });
                    self.pause(self.opts.every()).await;
                    continue;
                }
            };
            let me = Peer {
                name: self.opts.name.clone(),
                url: self.opts.url.clone(),
            };
            let claim = self.etcd.claim(&self.opts.key, &me.to_value(), lease).await;
            match claim {
                Ok(Claim::Won) => {
                    // etcd started the lease when it received the grant: not before `sent`.
                    *lock(&self.until) = Some(sent + self.opts.ttl - self.opts.margin());
                    self.set(Role::Leader);
                    let led = self.lead(lease).await;
                    *lock(&self.until) = None;
                    self.set(Role::Follower { leader: None });
                    let _ = self.etcd.revoke(lease).await;
                    if let Led::Stopped = led {
                        return;
                    }
                }
                Ok(Claim::Held(h)) => {
                    let _ = self.etcd.revoke(lease).await;
                    self.set(Role::Follower {
                        leader: Some(Peer::from_value(&h.value)),
                    });
                    self.follow().await;
                }
                Err(e) => {
                    // Whether the key was put is not known: the lease goes either way.
                    tracing::warn!(name = %self.opts.name, "campaign: {e}");
                    let _ = self.etcd.revoke(lease).await;
                    self.pause(self.opts.every()).await;
                }
            }
        }
        *lock(&self.until) = None;
    }

    /// Renews the lease every third of its life until it cannot in time. After a renewal that
    /// failed (etcd electing a new leader of its own, say, when a member is lost) it tries again
    /// every 200 ms until its deadline, not a third of the lease later.
    async fn lead(&mut self, lease: i64) -> Led {
        let mut failed = false;
        loop {
            let Some(deadline) = *lock(&self.until) else {
                return Led::Lost;
            };
            let wait = if failed {
                Duration::from_millis(200)
            } else {
                self.opts.every()
            };
            let next = (Instant::now() + wait).min(deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.stop.changed() => return Led::Stopped,
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(name = %self.opts.name, "the lease could not be renewed in time: no longer leading");
                return Led::Lost;
            }
            // A slow answer is still a renewal (the lease counts from before it was asked), so
            // a busy machine waits for it up to the deadline rather than a fixed second.
            let left = deadline - now;
            let renewed =
                tokio::time::timeout(left, self.etcd.keep_alive_within(lease, Some(left))).await;
            failed = true;
            match renewed {
                Ok(Ok(left)) if left > 0 => {
                    let life = Duration::from_secs(left as u64).min(self.opts.ttl);
                    *lock(&self.until) = Some(now + life - self.opts.margin());
                    failed = false;
                }
                Ok(Ok(_)) => {
                    tracing::warn!(name = %self.opts.name, "the lease ran out: no longer leading");
                    return Led::Lost;
                }
                Ok(Err(e)) => tracing::warn!(name = %self.opts.name, "renewing the lease: {e}"),
                Err(_) => {}
            }
        }
    }

    /// Watches the key until nobody holds it (then campaigns again) or it is asked to stop.
    async fn follow(&mut self) {
        while self.pause(self.opts.poll()).await {
            match self.etcd.get(&self.opts.key).await {
                Ok(None) => return,
                Ok(Some(h)) => self.set(Role::Follower {
                    leader: Some(Peer::from_value(&h.value)),
                }),
                // Cut off from etcd it cannot say who leads.
                Err(_) => self.set(Role::Follower { leader: None }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_tenth_and_at_least_a_quarter_second() {
        let o = |s| Options {
            name: "a".into(),
            url: "http://a".into(),
            key: "k".into(),
            members: "m".into(),
            yield_for: Duration::ZERO,
            ttl: Duration::from_secs(s),
        };
        assert_eq!(o(3).margin(), Duration::from_millis(300));
        assert_eq!(o(2).margin(), Duration::from_millis(250));
        assert_eq!(o(10).margin(), Duration::from_secs(1));
        assert_eq!(o(3).every(), Duration::from_secs(1));
        assert_eq!(o(3).poll(), Duration::from_millis(250));
    }

    #[test]
    fn the_leader_key_names_the_leader_and_where_it_serves() {
        let p = Peer {
            name: "ctl-a".into(),
            url: "http://10.0.0.1:8080".into(),
        };
        assert_eq!(Peer::from_value(&p.to_value()), p);
        assert_eq!(Peer::from_value("ctl-b").name, "ctl-b");
    }
}
