//! An S3-compatible object store (Garage on the controllers and the witness, replication factor
//! 3, consistent mode: a put is acknowledged once two of the three nodes hold it) behind
//! [`ObjectStore`]. Requests are signed with AWS Signature V4 and sent to the node that answered
//! last, else the next that answers; a node that failed is tried last for a while, so a node
//! powered off (its packets dropped, nothing refused) costs one timeout, not one per request.
//! The store's own copies are Garage's business, never ours.

use super::{check_key, ObjectStore};
use sha2::{Digest, Sha256};
use std::io;
use std::time::{Duration, SystemTime};

pub use crate::config::S3Config;

/// How long a node that failed is tried only after the others.
const SHUNNED_FOR: Duration = Duration::from_secs(15);

pub struct S3Store {
    cfg: S3Config,
    client: reqwest::Client,
    /// The endpoint that answered last, and until when each failed one is tried last.
    current: std::sync::atomic::AtomicUsize,
    shunned: std::sync::Mutex<Vec<Option<std::time::Instant>>>,
    /// Its own runtime: the store's callers are blocking code.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Store {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// An error with what caused it (reqwest's own text names only the URL: "error sending
/// request" hides whether the connection was refused or a read timed out).
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// S3's URI encoding: unreserved characters stay, everything else is %XX (`/` kept in paths).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One request to sign.
struct Request<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    query: &'a [(String, String)],
    payload: &'a [u8],
    /// Headers to sign and send besides host, date and payload hash.
    extra: &'a [(&'a str, String)],
}

/// The headers of a signed request: (name, value) to send.
fn sign(cfg: &S3Config, req: &Request, now: SystemTime) -> Vec<(String, String)> {
    let Request {
        method,
        host,
        path,
        query,
        payload,
        extra,
    } = *req;
    let t = chrono::DateTime::<chrono::Utc>::from(now);
    let amz_date = t.format("%Y%m%dT%H%M%SZ").to_string();
    let date = t.format("%Y%m%d").to_string();
    let payload_hash = hex(&Sha256::digest(payload));
    let mut q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, false), encode(v, false)))
        .collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), payload_hash.clone()),
        ("x-amz-date".into(), amz_date.clone()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| (k.to_lowercase(), v.trim().to_string())),
    );
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let request = format!(
        "{method}\n{}\n{canonical_query}\n{canonical_headers}\n{signed}\n{payload_hash}",
        encode(path, true)
    );
    let scope = format!("{date}/{}/s3/aws4_request", cfg.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", cfg.secret).as_bytes(), date.as_bytes());
    for part in [cfg.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    let mut out: Vec<(String, String)> = headers.into_iter().filter(|(k, _)| k != "host").collect();
    out.push((
        "authorization".into(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            cfg.key_id
        ),
    ));
    out
}

/// What came back.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl S3Store {
    pub fn open(cfg: S3Config) -> io::Result<S3Store> {
        if cfg.endpoints.is_empty() {
            return Err(other("the S3 store needs at least one endpoint"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-store")
            .enable_all()
            .build()?;
        // A node that stops answering mid-request (powered off: no reset ever comes) is given
        // up after a read has waited 15 s, not the whole request's minute.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(5))
            .build()
            .map_err(other)?;
        let s = S3Store {
            current: Default::default(),
            shunned: std::sync::Mutex::new(vec![None; cfg.endpoints.len()]),
            cfg,
            client,
            rt: Some(rt),
        };
        // The bucket must answer now: a wrong endpoint or key is said at start, not at the
        // first cycle.
        let r = s.call("HEAD", "", &[], &[], &[])?;
        if r.status != 200 {
            return Err(other(format!(
                "the S3 bucket '{}' does not answer (HTTP {}): check the bucket, the key and its rights",
                s.cfg.bucket, r.status
            )));
        }
        Ok(s)
    }

    /// One request, to the first endpoint that answers (a node down or failing: the next).
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        body: &[u8],
        extra: &[(&str, String)],
    ) -> io::Result<Reply> {
        let n = self.cfg.endpoints.len();
        let first = self.current.load(std::sync::atomic::Ordering::Relaxed) % n;
        let now = std::time::Instant::now();
        let shunned: Vec<bool> = {
            let s = self.shunned.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().map(|u| u.is_some_and(|u| u > now)).collect()
        };
        // The one that answered last, then the others; those that failed lately last of all.
        let mut order: Vec<usize> = (0..n).map(|i| (first + i) % n).collect();
        order.sort_by_key(|i| shunned[*i]);
        let endpoints: Vec<String> = order
            .iter()
            .map(|i| self.cfg.endpoints[*i].clone())
            .collect();
        self.call_on(&endpoints, method, key, query, body, extra)
    }

    /// Notes how endpoint `ep` did: answered (tried first from now on) or failed (tried last for
    /// a while).
    fn note(&self, ep: &str, answered: bool) {
        let Some(i) = self.cfg.endpoints.iter().position(|e| e == ep) else {
            return;
        };
        let mut s = self.shunned.lock().unwrap_or_else(|e| e.into_inner());
        if answered {
            self.current.store(i, std::sync::atomic::Ordering::Relaxed);
            s[i] = None;
        } else {
            s[i] = Some(std::time::Instant::now() + SHUNNED_FOR);
        }
    }

    /// [`S3Store::call`] on these endpoints only.
    #[allow(clippy::too_many_arguments)]
    fn call_on(
        &self,
        endpoints: &[String],
        method: &str,
        key: &str,
        query: &[(String, String)],
        body: &[u8],
        extra: &[(&str, String)],
    ) -> io::Result<Reply> {
        let path = if key.is_empty() {
            format!("/{}", self.cfg.bucket)
        } else {
            format!("/{}/{key}", self.cfg.bucket)
        };
        let rt = self.rt.as_ref().expect("the store's runtime");
        let mut errors = Vec::new();
        for ep in endpoints {
            let began = std::time::Instant::now();
            let host = ep
                .split_once("://")
                .map(|(_, h)| h)
                .unwrap_or(ep)
                .trim_end_matches('/');
            let headers = sign(
                &self.cfg,
                &Request {
                    method,
                    host,
                    path: &path,
                    query,
                    payload: body,
                    extra,
                },
                SystemTime::now(),
            );
            let mut url = format!("{}{}", ep.trim_end_matches('/'), encode(&path, true));
            if !query.is_empty() {
                url.push('?');
                url.push_str(
                    &query
                        .iter()
                        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(other)?;
            let mut req = self.client.request(m, &url).body(body.to_vec());
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            // Sent on the store's own runtime, waited for here: callers are blocking code (and
            // one on an async thread still only waits, never starts a runtime inside another).
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let r = async {
                    let r = req.send().await?;
                    let status = r.status().as_u16();
                    let headers = r.headers().clone();
                    let body = r.bytes().await?.to_vec();
                    Ok::<_, reqwest::Error>(Reply {
                        status,
                        headers,
                        body,
                    })
                }
                .await;
                let _ = tx.send(r);
            });
            let r = rx
                .recv()
                .map_err(|_| other("the S3 store's runtime is gone"))?;
            self.note(ep, r.as_ref().is_ok_and(|r| r.status < 500));
            match r {
                Ok(r) if r.status < 500 => return Ok(r),
                Ok(r) => errors.push(format!(
                    "{ep}: HTTP {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
                Err(e) => errors.push(format!(
                    "{ep}: {} (after {:.1} s)",
                    crate::error::causes(&e),
                    began.elapsed().as_secs_f64()
                )),
            }
        }
        Err(other(format!(
            "the S3 store does not answer: {}",
            errors.join("; ")
        )))
    }

    /// A node's metrics (Prometheus text from its admin API), if they answer within a few
    /// seconds.
    fn metrics(&self, url: &str) -> Option<String> {
        let mut req = self
            .client
            .get(format!("{url}/metrics"))
            .timeout(Duration::from_secs(3));
        if let Some(t) = &self.cfg.metrics_token {
            req = req.bearer_auth(t);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.as_ref()?.spawn(async move {
            let r = async {
                let r = req.send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                r.text().await.ok()
            }
            .await;
            let _ = tx.send(r);
        });
        rx.recv().ok().flatten()
    }

    fn fail(&self, what: &str, key: &str, r: &Reply) -> io::Error {
        other(format!(
            "S3 {what} {key}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
                .chars()
                .take(300)
                .collect::<String>()
        ))
    }
}

/// The text of every `<TAG>…</TAG>` in `xml`, in order (S3's list answers hold nothing nested
/// under these tags).
fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The value of gauge `name` in Prometheus text (summed over its label sets).
fn gauge(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name alone, or with labels: not a longer name that starts alike.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = v {
            *found.get_or_insert(0) += v.max(0.0) as u64;
        }
    }
    found
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, data: &[u8]) -> io::Result<()> {
        check_key(key)?;
        let r = self.call("PUT", key, &[], data, &[])?;
        if r.status != 200 {
            return Err(self.fail("put", key, &r));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> io::Result<Vec<u8>> {
        check_key(key)?;
        let r = self.call("GET", key, &[], &[], &[])?;
        match r.status {
            200 => Ok(r.body),
            404 => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{key} is not in the store"),
            )),
            _ => Err(self.fail("get", key, &r)),
        }
    }

    fn exists(&self, key: &str) -> io::Result<bool> {
        Ok(self.stat(key)?.is_some())
    }

    fn touch(&self, key: &str) -> io::Result<bool> {
        check_key(key)?;
        // A copy onto itself with its metadata replaced: its Last-Modified becomes now.
        let source = format!("/{}/{}", self.cfg.bucket, encode(key, true));
        let r = self.call(
            "PUT",
            key,
            &[],
            &[],
            &[
                ("x-amz-copy-source", source),
                ("x-amz-metadata-directive", "REPLACE".into()),
            ],
        )?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail("touch", key, &r)),
        }
    }

    fn stat(&self, key: &str) -> io::Result<Option<(u64, SystemTime)>> {
        check_key(key)?;
        let r = self.call("HEAD", key, &[], &[], &[])?;
        match r.status {
            200 => {
                let size = r
                    .headers
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let at = r
                    .headers
                    .get("last-modified")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                    .map(SystemTime::from)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Ok(Some((size, at)))
            }
            404 => Ok(None),
            _ => Err(self.fail("stat", key, &r)),
        }
    }

    fn delete(&self, key: &str) -> io::Result<()> {
        check_key(key)?;
        let r = self.call("DELETE", key, &[], &[], &[])?;
        if r.status == 204 || r.status == 200 || r.status == 404 {
            return Ok(());
        }
        Err(self.fail("delete", key, &r))
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if let Some(t) = &token {
                q.push(("continuation-token".into(), t.clone()));
            }
            let r = self.call("GET", "", &q, &[], &[])?;
            if r.status != 200 {
                return Err(self.fail("list", prefix, &r));
            }
            let xml = String::from_utf8_lossy(&r.body).into_owned();
            for contents in tags(&xml, "Contents") {
                if let Some(k) = tags(contents, "Key").first() {
                    out.push(unescape(k));
                }
            }
            let truncated = tags(&xml, "IsTruncated").first() == Some(&"true");
            token = tags(&xml, "NextContinuationToken")
                .first()
                .map(|t| unescape(t));
            if !truncated || token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    fn nodes(&self) -> Vec<serverware_shared::api::StorageNodeInfo> {
        self.cfg
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let answers = self
                    .call_on(std::slice::from_ref(ep), "HEAD", "", &[], &[], &[])
                    .is_ok_and(|r| r.status == 200);
                let m = self
                    .cfg
                    .metrics
                    .get(i)
                    .and_then(|url| self.metrics(url))
                    .unwrap_or_default();
                serverware_shared::api::StorageNodeInfo {
                    endpoint: ep.clone(),
                    answers,
                    resync_queue: gauge(&m, "block_resync_queue_length"),
                    resync_errors: gauge(&m, "block_resync_errored_blocks"),
                }
            })
            .collect()
    }

    fn remote(&self) -> Option<String> {
        Some(format!(
            "S3 bucket {} at {}",
            self.cfg.bucket,
            self.cfg.endpoints.join(", ")
        ))
    }

    fn commit(&self, key: &str, data: &[u8]) -> io::Result<()> {
        // Every put was acknowledged by a write quorum already: the commit is one more put,
        // which S3 makes whole or not at all.
        self.put(key, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gauge_is_read_by_its_whole_name_over_its_labels() {
        let text = "# HELP block_resync_queue_length x\n\
                    # TYPE block_resync_queue_length gauge\n\
                    block_resync_queue_length{instance=\"a\"} 7\n\
                    block_resync_queue_length_max 99\n\
                    block_resync_errored_blocks 2\n";
        assert_eq!(gauge(text, "block_resync_queue_length"), Some(7));
        assert_eq!(gauge(text, "block_resync_errored_blocks"), Some(2));
        assert_eq!(gauge(text, "block_rc_size"), None);
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_request_is_signed_as_aws_documents() {
        // AWS's documented example: GET /test.txt with a Range header (Signature V4 for S3).
        let cfg = S3Config {
            endpoints: vec!["https://examplebucket.s3.amazonaws.com".into()],
            bucket: "examplebucket".into(),
            region: "us-east-1".into(),
            key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            metrics: Vec::new(),
            metrics_token: None,
        };
        let at = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z").unwrap();
        let h = sign(
            &cfg,
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                query: &[],
                payload: b"",
                extra: &[("range", "bytes=0-9".into())],
            },
            at.into(),
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert!(
            auth.ends_with(
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
    }

    #[test]
    fn list_answers_are_read() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a/b&amp;c</Key><Size>1</Size></Contents><Contents><Key>a/d</Key></Contents><NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        let keys: Vec<String> = tags(xml, "Contents")
            .iter()
            .map(|c| unescape(tags(c, "Key")[0]))
            .collect();
        assert_eq!(keys, vec!["a/b&c", "a/d"]);
        assert_eq!(tags(xml, "NextContinuationToken"), vec!["t1"]);
        assert_eq!(encode("a b/c", true), "a%20b/c");
    }
}
