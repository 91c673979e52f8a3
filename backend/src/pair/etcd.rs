//! A small etcd v3 client over etcd's JSON gateway (the `/v3/...` HTTP endpoints every etcd 3.4
//! server answers on its client port): leases (grant, keep-alive, revoke), one key read, and the
//! one transaction leadership needs (put the key with a lease only if nobody holds it). Keys and
//! values travel base64-encoded and 64-bit numbers as strings, as the gateway wants them. The
//! client knows several members and moves on to the next one when one does not answer.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member answered in time.
    #[error("no etcd member answered: {0}")]
    Unreachable(String),
    /// A member answered with something this client does not understand, or an error.
    #[error("etcd answered unexpectedly: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, EtcdError>;

/// Who holds a key, as a transaction that lost found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub value: String,
    pub lease: i64,
}

/// The outcome of [`Etcd::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours, bound to the lease.
    Won,
    /// Someone holds it.
    Held(Holder),
}

/// A client of the cluster; clones share which member answered last.
#[derive(Clone)]
pub struct Etcd {
    http: reqwest::Client,
    endpoints: Vec<String>,
    /// The member tried first (the last one that answered).
    current: std::sync::Arc<AtomicUsize>,
}

impl Etcd {
    /// The members it asks.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A client of the members at `endpoints` (`http://10.77.0.1:2379`); each request waits at
    /// most `timeout` for one member.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> Result<Etcd> {
        if endpoints.is_empty() {
            return Err(EtcdError::Unreachable(
                "no etcd endpoint is configured".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| EtcdError::Protocol(format!("cannot make an HTTP client: {e}")))?;
        Ok(Etcd {
            http,
            endpoints: endpoints
                .into_iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            current: Default::default(),
        })
    }

    /// Posts to each member in turn, starting with the one that answered last.
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.post_within(path, body, None).await
    }

    /// [`Etcd::post`] within about `wait` in all (not the client's timeout per member) when set.
    async fn post_within(&self, path: &str, body: Value, wait: Option<Duration>) -> Result<Value> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let url = format!("{}{path}", self.endpoints[i]);
            let mut req = self.http.post(&url).json(&body);
            if let Some(w) = wait {
                // Shared between the members, so that a dead one leaves time for the others.
                let each = if n == 1 {
                    w
                } else {
                    (w / n as u32).max(Duration::from_secs(1)).min(w)
                };
                req = req.timeout(each);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    let v: Value = r
                        .json()
                        .await
                        .map_err(|e| EtcdError::Protocol(format!("{url}: {e}")))?;
                    if !status.is_success() {
                        return Err(EtcdError::Protocol(format!("{url}: {status}: {v}")));
                    }
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => errors.push(format!("{url}: {e}")),
            }
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    /// A new lease of `ttl` (whole seconds, at least 1): its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64> {
        let secs = ttl.as_secs().max(1);
        let v = self
            .post("/v3/lease/grant", json!({ "TTL": secs.to_string() }))
            .await?;
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(EtcdError::Protocol(format!("lease grant: {e}")));
        }
        number(&v, "ID")
    }

    /// Renews the lease: the seconds it has left from now (0: it is gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64> {
        self.keep_alive_within(lease, None).await
    }

    /// [`Etcd::keep_alive`], waiting up to `wait` for a member that answers slowly (a busy
    /// machine) rather than the client's usual timeout.
    pub async fn keep_alive_within(&self, lease: i64, wait: Option<Duration>) -> Result<i64> {
        let v = self
            .post_within(
                "/v3/lease/keepalive",
                json!({ "ID": lease.to_string() }),
                wait,
            )
            .await?;
        let r = v.get("result").unwrap_or(&v);
        // A lease that expired answers without a TTL (the gateway leaves zeros out).
        Ok(number(r, "TTL").unwrap_or(0))
    }

    /// Ends the lease now; the keys bound to it go with it.
    pub async fn revoke(&self, lease: i64) -> Result<()> {
        self.post("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await?;
        Ok(())
    }

    /// Puts `key = value` bound to `lease` if nobody holds `key`; else says who does.
    pub async fn claim(&self, key: &str, value: &str, lease: i64) -> Result<Claim> {
        let k = B64.encode(key);
        let body = json!({
            "compare": [{ "key": k, "target": "CREATE", "create_revision": "0" }],
            "success": [{ "request_put": { "key": k, "value": B64.encode(value), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": k } }],
        });
        let v = self.post("/v3/kv/txn", body).await?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(Claim::Won);
        }
        let kv = v
            .pointer("/responses/0/response_range/kvs/0")
            .ok_or_else(|| {
                // Released between the compare and the read: try again.
                EtcdError::Protocol(format!("the key {key} was taken and released at once"))
            })?;
        Ok(Claim::Held(holder(kv)?))
    }

    /// Puts `key = value` bound to `lease`.
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<()> {
        let body = json!({
            "key": B64.encode(key),
            "value": B64.encode(value),
            "lease": lease.to_string(),
        });
        self.post("/v3/kv/put", body).await?;
        Ok(())
    }

    /// Puts `key = value` (bound to no lease) only while `guard` holds `guard_value`: whether
    /// it did.
    pub async fn put_if(
        &self,
        key: &str,
        value: &str,
        guard: &str,
        guard_value: &str,
    ) -> Result<bool> {
        let body = json!({
            "compare": [{ "key": B64.encode(guard), "target": "VALUE", "result": "EQUAL", "value": B64.encode(guard_value) }],
            "success": [{ "request_put": { "key": B64.encode(key), "value": B64.encode(value) } }],
        });
        let v = self.post("/v3/kv/txn", body).await?;
        Ok(v.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    /// Every key under `prefix` with its value, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Holder)>> {
        // The range [prefix, prefix with its last byte plus one).
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .post(
                "/v3/kv/range",
                json!({ "key": B64.encode(prefix), "range_end": B64.encode(&end) }),
            )
            .await?;
        let kvs = v
            .get("kvs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        kvs.iter()
            .map(|kv| {
                let key = kv
                    .get("key")
                    .and_then(Value::as_str)
                    .and_then(|k| B64.decode(k).ok())
                    .map(|k| String::from_utf8_lossy(&k).into_owned())
                    .unwrap_or_default();
                Ok((key, holder(kv)?))
            })
            .collect()
    }

    /// The cluster's members: name and client URLs.
    pub async fn members(&self) -> Result<Vec<(String, Vec<String>)>> {
        Ok(self
            .member_ids()
            .await?
            .into_iter()
            .map(|(_, name, urls)| (name, urls))
            .collect())
    }

    /// The cluster's members as etcd's Raft knows them: id (a uint64, as text), name and client
    /// URLs.
    pub async fn member_ids(&self) -> Result<Vec<(String, String, Vec<String>)>> {
        let v = self.post("/v3/cluster/member/list", json!({})).await?;
        let list = v
            .get("members")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|m| {
                let id = match m.get("ID")? {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                let name = m.get("name").and_then(Value::as_str).unwrap_or("");
                let urls = m
                    .get("clientURLs")
                    .and_then(Value::as_array)
                    .map(|u| {
                        u.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                Some((id, name.to_string(), urls))
            })
            .collect())
    }

    /// The id of the member leading etcd's own Raft, as the members say.
    pub async fn raft_leader(&self) -> Result<String> {
        let v = self.post("/v3/maintenance/status", json!({})).await?;
        match v.get("leader") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(EtcdError::Protocol(format!("no leader in {v}"))),
        }
    }

    /// Asks the member leading etcd's Raft (reached at `leader_url`) to hand that to member
    /// `target` (etcd's own transfer: the cluster keeps answering).
    pub async fn transfer_raft(&self, leader_url: &str, target: &str) -> Result<()> {
        let url = format!(
            "{}/v3/maintenance/transfer-leadership",
            leader_url.trim_end_matches('/')
        );
        let r = self
            .http
            .post(&url)
            .json(&json!({ "targetID": target }))
            .send()
            .await
            .map_err(|e| EtcdError::Unreachable(format!("{url}: {e}")))?;
        if !r.status().is_success() {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            return Err(EtcdError::Protocol(format!("{url}: {status}: {body}")));
        }
        Ok(())
    }

    /// Whether the member at `url` says it is healthy (its `/health`), within the timeout.
    pub async fn healthy(&self, url: &str) -> bool {
        let r = self
            .http
            .get(format!("{}/health", url.trim_end_matches('/')))
            .send()
            .await;
        match r {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v.get("health").and_then(Value::as_str) == Some("true")),
            Err(_) => false,
        }
    }

    /// Who holds `key` now, if anyone.
    pub async fn get(&self, key: &str) -> Result<Option<Holder>> {
        let v = self
            .post("/v3/kv/range", json!({ "key": B64.encode(key) }))
            .await?;
        match v.pointer("/kvs/0") {
            Some(kv) => Ok(Some(holder(kv)?)),
            None => Ok(None),
        }
    }
}

/// A 64-bit number the gateway sends as a string (or, rarely, as a number).
fn number(v: &Value, field: &str) -> Result<i64> {
    match v.get(field) {
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| EtcdError::Protocol(format!("{field} is not a number: {s}"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| EtcdError::Protocol(format!("{field} is out of range: {n}"))),
        _ => Err(EtcdError::Protocol(format!("no {field} in {v}"))),
    }
}

fn holder(kv: &Value) -> Result<Holder> {
    let value = kv
        .get("value")
        .and_then(Value::as_str)
        .map(|s| B64.decode(s))
        .transpose()
        .map_err(|e| EtcdError::Protocol(format!("a value that is not base64: {e}")))?
        .unwrap_or_default();
    Ok(Holder {
        value: String::from_utf8_lossy(&value).into_owned(),
        // A key bound to no lease has none.
        lease: number(kv, "lease").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_come_as_strings_or_numbers() {
        assert_eq!(
            number(&json!({"ID": "4111120408764798981"}), "ID").unwrap(),
            4111120408764798981
        );
        assert_eq!(number(&json!({"TTL": 3}), "TTL").unwrap(), 3);
        assert!(number(&json!({"TTL": "x"}), "TTL").is_err());
        assert!(number(&json!({}), "TTL").is_err());
    }

    #[test]
    fn a_holder_is_read_from_a_range_answer() {
        let kv = json!({"key": B64.encode("/k"), "value": B64.encode("ctl-a"), "lease": "77"});
        assert_eq!(
            holder(&kv).unwrap(),
            Holder {
                value: "ctl-a".into(),
                lease: 77
            }
        );
        assert!(holder(&json!({"value": "!!"})).is_err());
    }

    #[test]
    fn no_endpoint_is_refused() {
        assert!(Etcd::new(vec![], Duration::from_secs(1)).is_err());
    }
}
