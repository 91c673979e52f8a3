//! Input validation shared by the API and the dashboard, so both reject the same input with the
//! same message. Each function returns the normalised value or a [`ValidationError`] that names
//! the field.

use std::fmt;
use std::net::Ipv4Addr;

/// A field that failed validation, with a message fit for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

pub type Result<T> = std::result::Result<T, ValidationError>;

pub const USERNAME_MAX: usize = 32;
pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 256;
pub const DISPLAY_NAME_MAX: usize = 64;
pub const DESCRIPTION_MAX: usize = 500;
pub const NAME_MAX: usize = 63;
pub const TOKEN_EXPIRY_MAX_DAYS: u32 = 3650;

/// A user name: 1–32 characters, lowercase letters, digits, `.`, `_` or `-`, starting with a letter.
pub fn username(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ValidationError::new(field, "a user name is required"));
    }
    if v.chars().count() > USERNAME_MAX {
        return Err(ValidationError::new(
            field,
            format!("a user name has at most {USERNAME_MAX} characters"),
        ));
    }
    let first = v.chars().next().unwrap_or('-');
    if !first.is_ascii_lowercase() {
        return Err(ValidationError::new(
            field,
            "a user name starts with a lowercase letter",
        ));
    }
    if let Some(bad) = v
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "'{}' is not allowed in a user name: use lowercase letters, digits, '.', '_' or '-'",
                bad.escape_default()
            ),
        ));
    }
    Ok(v.to_string())
}

/// A new password: 10–256 characters, not only spaces. Existing passwords are never re-validated.
pub fn new_password(field: &str, value: &str) -> Result<()> {
    let n = value.chars().count();
    if n < PASSWORD_MIN {
        return Err(ValidationError::new(
            field,
            format!("a password has at least {PASSWORD_MIN} characters"),
        ));
    }
    if n > PASSWORD_MAX {
        return Err(ValidationError::new(
            field,
            format!("a password has at most {PASSWORD_MAX} characters"),
        ));
    }
    if value.trim().is_empty() {
        return Err(ValidationError::new(
            field,
            "a password cannot be only spaces",
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            "a password cannot contain control characters",
        ));
    }
    Ok(())
}

/// A free-text label (token name, site name): 1–64 printable characters, trimmed.
pub fn label(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ValidationError::new(field, "a name is required"));
    }
    if v.chars().count() > DISPLAY_NAME_MAX {
        return Err(ValidationError::new(
            field,
            format!("at most {DISPLAY_NAME_MAX} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(v.to_string())
}

/// A description: up to 500 characters; newlines and tabs allowed, other control characters not.
pub fn description(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.chars().count() > DESCRIPTION_MAX {
        return Err(ValidationError::new(
            field,
            format!("at most {DESCRIPTION_MAX} characters"),
        ));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(ValidationError::new(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(v.to_string())
}

/// A host or VPS name, used as a hostname too: an RFC 1123 label of 1–63 characters,
/// lowercase letters, digits and `-`, not starting or ending with `-`.
pub fn resource_name(field: &str, value: &str) -> Result<String> {
    let v = value.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Err(ValidationError::new(field, "a name is required"));
    }
    if v.len() > NAME_MAX {
        return Err(ValidationError::new(
            field,
            format!("a name has at most {NAME_MAX} characters"),
        ));
    }
    if let Some(bad) = v
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(ValidationError::new(
            field,
            format!(
                "'{}' is not allowed in a name: use letters, digits and '-'",
                bad.escape_default()
            ),
        ));
    }
    if v.starts_with('-') || v.ends_with('-') {
        return Err(ValidationError::new(
            field,
            "a name cannot start or end with '-'",
        ));
    }
    Ok(v)
}

/// A VPS's name: a [`resource_name`] that does not start with `drill-` (the containers of
/// failover drills are named so on their hosts).
pub fn vps_name(field: &str, value: &str) -> Result<String> {
    let v = resource_name(field, value)?;
    if v.starts_with(crate::agent::DRILL_PREFIX) {
        return Err(ValidationError::new(
            field,
            format!(
                "names starting with '{}' are kept for failover drills' copies",
                crate::agent::DRILL_PREFIX
            ),
        ));
    }
    Ok(v)
}

/// A unicast IPv4 address a VPS or host can have (not 0.0.0.0, broadcast, multicast or loopback).
pub fn ipv4_address(field: &str, value: &str) -> Result<Ipv4Addr> {
    let v = value.trim();
    let ip: Ipv4Addr = v.parse().map_err(|_| {
        ValidationError::new(
            field,
            format!("'{v}' is not an IPv4 address (expected four numbers such as 10.0.0.5)"),
        )
    })?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(ValidationError::new(
            field,
            format!("{ip} cannot be given to a server"),
        ));
    }
    Ok(ip)
}

/// Where the controller reaches a host: `ssh://user@address[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SshAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "ssh://{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "ssh://{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

/// Parses `ssh://user@address[:port]` (port 22 by default). The address is an IP address or a
/// DNS name; the user is a POSIX user name.
pub fn ssh_address(field: &str, value: &str) -> Result<SshAddress> {
    let v = value.trim();
    let rest = v.strip_prefix("ssh://").ok_or_else(|| {
        ValidationError::new(
            field,
            "the address starts with ssh:// (ssh://user@address:port)",
        )
    })?;
    let (user, hostport) = rest.split_once('@').ok_or_else(|| {
        ValidationError::new(field, "the address names a user: ssh://user@address:port")
    })?;
    if user.is_empty()
        || user.len() > 32
        || !user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || user.starts_with('-')
    {
        return Err(ValidationError::new(
            field,
            format!("'{user}' is not a valid SSH user name"),
        ));
    }
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (h, after) = inner.split_once(']').ok_or_else(|| {
            ValidationError::new(field, "an IPv6 address is written in brackets: [fd00::1]")
        })?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(ValidationError::new(
                field,
                format!("'{h}' is not an IPv6 address"),
            ));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(ValidationError::new(
                    field,
                    "unexpected text after the address",
                ))
            }
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(ValidationError::new(
                    field,
                    format!("'{p}' is not a port number (1–65535)"),
                ))
            }
        },
    };
    if host.is_empty() {
        return Err(ValidationError::new(field, "the address names a host"));
    }
    if host.parse::<std::net::IpAddr>().is_err() {
        // A DNS name: labels of letters, digits and '-'.
        let ok = host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !ok {
            return Err(ValidationError::new(
                field,
                format!("'{host}' is neither an IP address nor a host name"),
            ));
        }
    }
    Ok(SshAddress {
        user: user.to_string(),
        host,
        port,
    })
}

/// A whole number within `min..=max`, with a message naming the unit.
pub fn number_in_range(field: &str, value: i64, min: i64, max: i64, unit: &str) -> Result<i64> {
    if value < min || value > max {
        return Err(ValidationError::new(
            field,
            format!("must be between {min} and {max} {unit}"),
        ));
    }
    Ok(value)
}

/// How often an agent samples: 250 ms to 60 s.
pub fn sample_interval_ms(field: &str, value: u32) -> Result<u32> {
    number_in_range(field, i64::from(value), 250, 60_000, "milliseconds").map(|v| v as u32)
}

/// The key types the SSH command line accepts.
pub const SSH_KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
];

/// A public key in OpenSSH's one-line form (`TYPE BASE64 [comment]`): its type and data, without
/// the comment. (Whether the data is a key of that type is checked where it is parsed.)
pub fn ssh_public_key(field: &str, text: &str) -> Result<String> {
    let t = text.trim();
    if t.len() > 16 * 1024 {
        return Err(ValidationError::new(
            field,
            "a public key has at most 16 KiB",
        ));
    }
    let mut parts = t.split_whitespace();
    let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
        return Err(ValidationError::new(
            field,
            "paste the whole public key: its type, then its data (ssh-ed25519 AAAA…), as in ~/.ssh/id_ed25519.pub",
        ));
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(ValidationError::new(
            field,
            format!(
                "'{}' is not a key type the SSH command line accepts ({})",
                kind.chars().take(40).collect::<String>().escape_default(),
                SSH_KEY_TYPES.join(", ")
            ),
        ));
    }
    if data.len() < 16
        || !data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    {
        return Err(ValidationError::new(
            field,
            "the key's data is not base64 (the long part after its type)",
        ));
    }
    Ok(format!("{kind} {data}"))
}

/// A size as people write it: bytes (`1048576`), or a number with a binary unit (`512M`,
/// `512MiB`, `1.5G`, `2T`; K, M, G, T are powers of 1024, case ignored, `B` and `iB` optional).
pub fn size_text(field: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    let bad = || {
        ValidationError::new(
            field,
            format!(
                "'{text}' is not a size: write bytes, or a number with K, M, G or T (512M, 1.5G)"
            ),
        )
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(bad());
    }
    if mult == 1 {
        return num.parse::<u64>().map_err(|_| bad());
    }
    let v: f64 = num.parse().map_err(|_| bad())?;
    let bytes = v * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

/// A VPS memory limit: 16 MiB to 1 TiB.
pub fn memory_limit(field: &str, bytes: u64) -> Result<u64> {
    if !(16 << 20..=1 << 40).contains(&bytes) {
        return Err(ValidationError::new(
            field,
            "must be between 16 MiB and 1 TiB",
        ));
    }
    Ok(bytes)
}

/// CPU shares: 2–262144 (1024 is the default weight).
pub fn cpu_shares(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 2, 262_144, "shares").map(|v| v as u32)
}

/// A CPU limit in thousandths of a CPU: 100 (a tenth) to 256000.
pub fn cpu_limit_millis(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 100, 256_000, "thousandths of a CPU").map(|v| v as u32)
}

/// A network prefix length for VPS addresses: 8–30.
pub fn prefix_len(field: &str, v: u8) -> Result<u8> {
    number_in_range(field, i64::from(v), 8, 30, "bits").map(|v| v as u8)
}

/// How many root-filesystem transfers a host runs at once: 1–8 (each is an SSH session; OpenSSH
/// allows 10 per connection by default).
pub fn max_transfers(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 1, 8, "transfers").map(|v| v as u32)
}

/// A Linux interface name such as a bridge: 1–15 letters, digits, '-', '_' or '.'.
pub fn interface_name(field: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.is_empty()
        || v.len() > 15
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ValidationError::new(
            field,
            "an interface name has 1–15 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(v.to_string())
}

/// A host name for a VPS: DNS labels of letters, digits and '-', at most 63 characters.
pub fn hostname(field: &str, value: &str) -> Result<String> {
    let v = value.trim().to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 63
        && !v.starts_with('-')
        && !v.ends_with('-')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !ok {
        return Err(ValidationError::new(
            field,
            "a host name has letters, digits and '-' (at most 63), not starting or ending with '-'",
        ));
    }
    Ok(v)
}

/// How long a clean stop may take before the VPS is stopped by force: 1–600 seconds.
pub fn stop_timeout_secs(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 1, 600, "seconds").map(|v| v as u32)
}

/// A MAC address as six pairs of hex digits separated by ':' (`02:53:57:00:00:01`), unicast.
pub fn mac_address(field: &str, value: &str) -> Result<String> {
    let v = value.trim().to_ascii_lowercase();
    let parts: Vec<&str> = v.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    let unicast = ok && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0);
    if !unicast {
        return Err(ValidationError::new(
            field,
            "a MAC address is six pairs of hex digits such as 02:53:57:00:00:01, unicast",
        ));
    }
    Ok(v)
}

/// For a receiver that must not normalise (the agent): the value must be exactly what the rule
/// accepts, so that no space, newline or case change slips through the trimming of a rule.
pub fn exact<T: ToString>(
    field: &str,
    value: &str,
    rule: impl Fn(&str, &str) -> Result<T>,
) -> Result<()> {
    let normal = rule(field, value)?.to_string();
    if normal != value {
        return Err(ValidationError::new(
            field,
            format!(
                "'{}' is not in its plain form ('{normal}')",
                value.escape_default()
            ),
        ));
    }
    Ok(())
}

/// How long host rollups are kept: 1 day to 10 years.
pub fn drill_every_days(field: &str, value: u32) -> Result<u32> {
    number_in_range(field, i64::from(value), 0, 365, "days").map(|v| v as u32)
}

/// A list's page size: 1–[`crate::api::MAX_PAGE`].
pub fn page_size(field: &str, value: u32) -> Result<u32> {
    number_in_range(
        field,
        i64::from(value),
        1,
        i64::from(crate::api::MAX_PAGE),
        "items",
    )
    .map(|v| v as u32)
}

/// A list filter's text: at most 64 characters, no control characters; lowered.
pub fn list_filter(field: &str, value: &str) -> Result<String> {
    let v = value.trim().to_lowercase();
    if v.chars().count() > 64 {
        return Err(ValidationError::new(
            field,
            "a filter has at most 64 characters",
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "a filter cannot hold control characters",
        ));
    }
    Ok(v)
}

/// A paged list's ask, checked: its page size (`usize::MAX` without `limit`), its filter
/// (lowered; None when empty) and the name the page starts after.
pub fn list_paging(
    limit: Option<u32>,
    q: Option<&str>,
    after: Option<&str>,
) -> Result<(usize, Option<String>, Option<String>)> {
    let limit = match limit {
        Some(l) => page_size("limit", l)? as usize,
        None => usize::MAX,
    };
    let q = q
        .map(|f| list_filter("q", f))
        .transpose()?
        .filter(|f| !f.is_empty());
    let after = after.map(|a| resource_name("after", a)).transpose()?;
    Ok((limit, q, after))
}

/// The VPS list's order ([`crate::api::VpsListQuery::sort`]).
pub fn vps_sort(field: &str, value: &str) -> Result<crate::api::VpsSort> {
    crate::api::VpsSort::ALL
        .into_iter()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = crate::api::VpsSort::ALL
                .iter()
                .map(|s| s.as_str())
                .collect();
            ValidationError::new(field, format!("one of {}", names.join(", ")))
        })
}

/// The VPS list's ask beyond [`list_paging`]: its order, largest first or not, and the row the
/// page starts at. `after` pages by name from the smallest; any other order or a start row
/// pages with `offset` instead (refused together: the page would be ambiguous).
pub fn vps_order(
    sort: Option<&str>,
    desc: Option<bool>,
    offset: Option<u32>,
    after: bool,
) -> Result<(crate::api::VpsSort, bool, usize)> {
    let sort = sort
        .map(|s| vps_sort("sort", s))
        .transpose()?
        .unwrap_or_default();
    let desc = desc.unwrap_or(false);
    if after && (offset.is_some() || desc || sort != crate::api::VpsSort::Name) {
        return Err(ValidationError::new(
            "after",
            "after pages by name from the smallest; with sort, desc or offset, page with offset",
        ));
    }
    Ok((sort, desc, offset.unwrap_or(0) as usize))
}

pub fn retention_days(field: &str, value: u32) -> Result<u32> {
    number_in_range(field, i64::from(value), 1, 3650, "days").map(|v| v as u32)
}

/// Days until an API token expires: 1–3650.
pub fn token_expiry_days(field: &str, value: u32) -> Result<u32> {
    number_in_range(field, value.into(), 1, TOKEN_EXPIRY_MAX_DAYS.into(), "days").map(|_| value)
}

/// netDUPLO's cycle interval per host: 1 s (continuous) to 24 hours.
pub const DUPLO_INTERVAL_MIN_SECS: u32 = 1;
pub const DUPLO_INTERVAL_MAX_SECS: u32 = 24 * 3600;
/// A new host's interval.
pub const DEFAULT_DUPLO_INTERVAL_SECS: u32 = 10;

pub fn duplo_interval_secs(field: &str, v: u32) -> Result<u32> {
    number_in_range(
        field,
        i64::from(v),
        DUPLO_INTERVAL_MIN_SECS.into(),
        DUPLO_INTERVAL_MAX_SECS.into(),
        "seconds (1 s is continuous; at most a day)",
    )
    .map(|v| v as u32)
}

/// How many of a VPS's newest restore points are always kept: 1–10000.
pub fn duplo_keep_last(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 1, 10_000, "restore points").map(|v| v as u32)
}

/// For how many days hourly and daily restore points are kept: 0–3650.
pub fn duplo_keep_days(field: &str, v: u32) -> Result<u32> {
    number_in_range(field, i64::from(v), 0, 3650, "days").map(|v| v as u32)
}

/// netMON: who goes first when room is short (higher first).
pub fn ha_priority(field: &str, v: i32) -> Result<i32> {
    number_in_range(field, i64::from(v), -1000, 1000, "(higher goes first)").map(|v| v as i32)
}

/// At most this many TCP ports per VPS's service checks.
pub const MAX_CHECK_PORTS: usize = 8;

/// netMON: the TCP ports a VPS's service checks try (besides an ICMP echo), sorted: 1–65535,
/// each once, at most [`MAX_CHECK_PORTS`].
pub fn check_ports(field: &str, ports: &[u32]) -> Result<Vec<u16>> {
    if ports.len() > MAX_CHECK_PORTS {
        return Err(ValidationError::new(
            field,
            format!("at most {MAX_CHECK_PORTS} ports are checked"),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        match u16::try_from(*p) {
            Ok(p) if p > 0 => {
                if out.contains(&p) {
                    return Err(ValidationError::new(
                        field,
                        format!("port {p} is named twice"),
                    ));
                }
                out.push(p);
            }
            _ => {
                return Err(ValidationError::new(
                    field,
                    format!("{p} is not a TCP port (1–65535)"),
                ))
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Checked ports as a person types them ("22, 80" or "22 80"), checked as [`check_ports`].
pub fn check_ports_text(field: &str, text: &str) -> Result<Vec<u16>> {
    let mut ports = Vec::new();
    for p in text.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        match p.trim().parse::<u32>() {
            Ok(n) => ports.push(n),
            Err(_) => {
                return Err(ValidationError::new(
                    field,
                    format!("{p:?} is not a port number"),
                ))
            }
        }
    }
    check_ports(field, &ports)
}

/// Priority as a person types it ("" is 0).
pub fn ha_priority_text(field: &str, text: &str) -> Result<i32> {
    match text.trim() {
        "" => Ok(0),
        t => t
            .parse::<i32>()
            .map_err(|_| ValidationError::new(field, "a whole number from -1000 to 1000"))
            .and_then(|v| ha_priority(field, v)),
    }
}

/// The HA fields of a VPS form as typed: its priority and its checked ports.
pub fn ha_settings_text(priority: &str, ports: &str) -> Result<(i32, Vec<u32>)> {
    let p = ha_priority_text("ha_priority", priority)?;
    let ports = check_ports_text("check_ports", ports)?;
    Ok((p, ports.into_iter().map(u32::from).collect()))
}

/// The stored form of checked ports ("22,80"), read back; what does not parse is left out.
pub fn parse_check_ports(stored: &str) -> Vec<u16> {
    stored
        .split(',')
        .filter_map(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p > 0)
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn ssh_public_keys_are_checked_and_their_comment_dropped() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl me@laptop";
        assert_eq!(
            ssh_public_key("public_key", k).unwrap(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        );
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "ssh-ed25519 not;base64!!!!!!!!!!",
        ] {
            assert_eq!(
                ssh_public_key("public_key", bad).unwrap_err().field,
                "public_key",
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_are_read_as_people_write_them() {
        assert_eq!(size_text("m", "1048576"), Ok(1 << 20));
        assert_eq!(size_text("m", "512M"), Ok(512 << 20));
        assert_eq!(size_text("m", "512MiB"), Ok(512 << 20));
        assert_eq!(size_text("m", "1.5g"), Ok(3 << 29));
        assert_eq!(size_text("m", " 2 TB "), Ok(2 << 40));
        for bad in [
            "",
            "M",
            "1.2.3G",
            "12X",
            "-5M",
            "1e9",
            "99999999999999999999T",
        ] {
            let e = size_text("memory", bad).unwrap_err();
            assert_eq!(e.field, "memory", "{bad}");
        }
    }

    use super::*;

    #[test]
    fn ha_settings_are_checked() {
        assert_eq!(ha_priority("p", 1000).unwrap(), 1000);
        assert!(ha_priority("p", 1001).is_err());
        assert!(ha_priority("p", -1001).is_err());
        assert_eq!(check_ports("c", &[443, 22]).unwrap(), vec![22, 443]);
        assert_eq!(check_ports("c", &[]).unwrap(), Vec::<u16>::new());
        assert!(check_ports("c", &[0]).is_err());
        assert!(check_ports("c", &[65536]).is_err());
        assert!(check_ports("c", &[80, 80]).is_err());
        assert!(check_ports("c", &[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        assert_eq!(parse_check_ports("22,80"), vec![22, 80]);
        assert_eq!(check_ports_text("c", "80, 22").unwrap(), vec![22, 80]);
        assert_eq!(check_ports_text("c", " ").unwrap(), Vec::<u16>::new());
        assert!(check_ports_text("c", "http").is_err());
        assert_eq!(ha_priority_text("p", "").unwrap(), 0);
        assert!(ha_priority_text("p", "x").is_err());
        assert_eq!(parse_check_ports(""), Vec::<u16>::new());
    }

    #[test]
    fn usernames() {
        assert_eq!(username("u", " alice ").unwrap(), "alice");
        assert_eq!(username("u", "ops.team-1_a").unwrap(), "ops.team-1_a");
        for bad in ["", "Alice", "1abc", "a b", "a;rm", "ä", &"a".repeat(33)] {
            let e = username("username", bad).unwrap_err();
            assert_eq!(e.field, "username", "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(new_password("p", "correct horse").is_ok());
        assert!(new_password("p", "short").is_err());
        assert!(new_password("p", "          ").is_err());
        assert!(new_password("p", "abcdefghij\u{0}").is_err());
        assert!(new_password("p", &"x".repeat(257)).is_err());
    }

    #[test]
    fn labels_and_descriptions() {
        assert_eq!(label("name", "  CI token ").unwrap(), "CI token");
        assert!(label("name", "   ").is_err());
        assert!(label("name", "a\nb").is_err());
        assert!(label("name", &"x".repeat(65)).is_err());
        assert_eq!(
            description("d", "line one\nline two").unwrap(),
            "line one\nline two"
        );
        assert!(description("d", "bell\u{7}").is_err());
    }

    #[test]
    fn resource_names() {
        assert_eq!(resource_name("name", "Web-01").unwrap(), "web-01");
        assert_eq!(vps_name("name", "Web-01").unwrap(), "web-01");
        let e = vps_name("name", "Drill-7").unwrap_err();
        assert!(e.message.contains("failover drills"), "{e:?}");
        assert_eq!(vps_name("name", "drills").unwrap(), "drills");
        for bad in ["", "-a", "a-", "a_b", "a.b", "a b", &"a".repeat(64)] {
            assert!(resource_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv4() {
        assert_eq!(
            ipv4_address("ip", "10.77.1.5").unwrap(),
            Ipv4Addr::new(10, 77, 1, 5)
        );
        for bad in [
            "",
            "10.77.1",
            "10.77.1.256",
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
        ] {
            let e = ipv4_address("ip", bad).unwrap_err();
            assert_eq!(e.field, "ip");
        }
    }

    #[test]
    fn ssh_addresses() {
        let a = ssh_address("address", "ssh://root@10.77.0.2").unwrap();
        assert_eq!(
            (a.user.as_str(), a.host.as_str(), a.port),
            ("root", "10.77.0.2", 22)
        );
        let a = ssh_address("address", "ssh://admin@host-1.example:2222").unwrap();
        assert_eq!(a.port, 2222);
        assert_eq!(a.to_string(), "ssh://admin@host-1.example:2222");
        let a = ssh_address("address", "ssh://root@[fd00::1]:22").unwrap();
        assert_eq!(a.host, "fd00::1");
        for bad in [
            "10.77.0.2",
            "ssh://10.77.0.2",
            "ssh://root@",
            "ssh://root@10.77.0.2:0",
            "ssh://root@10.77.0.2:99999",
            "ssh://root@bad_host",
            "ssh://-oProxyCommand=x@h",
            "ssh://root@[fd00::1",
        ] {
            assert!(ssh_address("address", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert!(number_in_range("n", 5, 1, 10, "s").is_ok());
        assert_eq!(
            number_in_range("n", 0, 1, 10, "s").unwrap_err().message,
            "must be between 1 and 10 s"
        );
        assert!(token_expiry_days("d", 0).is_err());
        assert!(token_expiry_days("d", 3651).is_err());
        assert!(token_expiry_days("d", 30).is_ok());
    }
}
