//! Hosts provisioned over the network: what the controller writes on a booting machine's kernel
//! command line and what the machine sends back when it joins. Both ends parse and check with the
//! same code, so a value the controller would not write is one the agent will not act on.

use crate::validate::{self, ValidationError};
use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// A join token: 32 random bytes, hex. One-time, for one MAC, until it expires.
pub const TOKEN_HEX_LEN: usize = 64;

/// What the controller tells a booting machine on its kernel command line (`sw.*` words).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootParams {
    /// The controller's URL as the machine reaches it (`http://10.0.0.1:8080`).
    pub controller: String,
    /// The MAC it booted from (the NIC that becomes the host's bridge).
    pub mac: String,
    /// The host's name.
    pub name: String,
    /// The one-time join token; absent on a machine that joined before (it boots as itself).
    pub token: Option<String>,
    /// A static address `a.b.c.d/len` the operator assigned; DHCP from the site otherwise.
    pub address: Option<String>,
    pub gateway: Option<String>,
}

impl BootParams {
    /// The `sw.*` words of a kernel command line.
    pub fn to_cmdline(&self) -> String {
        let mut w = vec![
            format!("sw.controller={}", self.controller),
            format!("sw.mac={}", self.mac),
            format!("sw.name={}", self.name),
        ];
        if let Some(t) = &self.token {
            w.push(format!("sw.token={t}"));
        }
        if let Some(a) = &self.address {
            w.push(format!("sw.address={a}"));
        }
        if let Some(g) = &self.gateway {
            w.push(format!("sw.gateway={g}"));
        }
        w.join(" ")
    }

    /// Reads the `sw.*` words of `/proc/cmdline`, checking each.
    pub fn parse(cmdline: &str) -> Result<BootParams, ValidationError> {
        let mut p = BootParams::default();
        for word in cmdline.split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            match k {
                "sw.controller" => p.controller = controller_url("sw.controller", v)?,
                "sw.mac" => {
                    validate::exact("sw.mac", v, validate::mac_address)?;
                    p.mac = v.to_string()
                }
                "sw.name" => {
                    validate::exact("sw.name", v, validate::resource_name)?;
                    p.name = v.to_string()
                }
                "sw.token" => p.token = Some(token("sw.token", v)?),
                "sw.address" => p.address = Some(cidr("sw.address", v)?),
                "sw.gateway" => {
                    p.gateway = Some(validate::ipv4_address("sw.gateway", v)?.to_string())
                }
                _ => {}
            }
        }
        for (field, v) in [
            ("sw.controller", &p.controller),
            ("sw.mac", &p.mac),
            ("sw.name", &p.name),
        ] {
            if v.is_empty() {
                return Err(ValidationError::new(
                    field,
                    "missing from the kernel command line",
                ));
            }
        }
        Ok(p)
    }
}

/// An `http://` or `https://` URL of host[:port] only, as the controller is reached (checked
/// as another site's URL is).
pub fn controller_url(field: &str, v: &str) -> Result<String, ValidationError> {
    crate::sites::site_url(field, v)
}

/// A join token as the controller mints it.
pub fn token(field: &str, v: &str) -> Result<String, ValidationError> {
    if v.len() != TOKEN_HEX_LEN || !v.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(ValidationError::new(field, "not a join token"));
    }
    Ok(v.to_string())
}

/// `a.b.c.d/len`, a host address in its network (len 8 to 30).
pub fn cidr(field: &str, v: &str) -> Result<String, ValidationError> {
    let (a, len) = v
        .split_once('/')
        .ok_or_else(|| ValidationError::new(field, "an address with its prefix: 10.0.0.5/24"))?;
    let a = validate::ipv4_address(field, a)?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| ValidationError::new(field, "the prefix length is 8 to 30"))?;
    Ok(format!("{a}/{len}"))
}

/// A booting machine's join: the token from its command line, the SSH host key it made (and
/// keeps on its disk), the address it took.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionJoinRequest {
    pub mac: String,
    pub token: String,
    /// `ssh-ed25519 AAAA…`: pinned as the host's key.
    pub host_key: String,
    /// The address the controller reaches its SSH at.
    pub address: String,
}

/// The controller's answer to a join: its SSH key, for root's `authorized_keys`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionJoinResponse {
    pub name: String,
    pub controller_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_sites_dhcp_pool_is_a_range_in_the_boot_network_and_static_addresses_stay_out_of_it() {
        let net = "10.0.0.0/24";
        assert_eq!(pool_in("dhcp_pool", " ", net).unwrap(), None);
        let p = pool_in("dhcp_pool", "10.0.0.100 - 10.0.0.199", net)
            .unwrap()
            .unwrap();
        assert_eq!(p.to_string(), "10.0.0.100-10.0.0.199");
        for (bad, says) in [
            ("10.0.0.100", "a range"),
            ("10.0.0.199-10.0.0.100", "ends before it starts"),
            ("10.0.0.100-10.0.1.20", "not in the hosts' network"),
            ("10.0.0.100-x", "not an IPv4 address"),
        ] {
            let e = pool_in("dhcp_pool", bad, net).unwrap_err();
            assert_eq!(e.field, "dhcp_pool");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert!(pool_in("dhcp_pool", "10.0.0.100-10.0.0.199", "")
            .unwrap_err()
            .message
            .contains("network first"));
        let pool = p.to_string();
        for inside in ["10.0.0.100/24", "10.0.0.150/24", "10.0.0.199/24"] {
            let e = outside_pool("address", inside, &pool).unwrap_err();
            assert!(
                e.message.contains("DHCP pool 10.0.0.100-10.0.0.199"),
                "{}",
                e.message
            );
        }
        for outside in ["10.0.0.99/24", "10.0.0.200/24"] {
            outside_pool("address", outside, &pool).unwrap();
        }
        outside_pool("address", "10.0.0.150/24", "").unwrap();
        // Settings keep the pool in its plain form, and refuse one outside the network.
        let s = ProvisionSettings {
            enabled: true,
            interface: "eth1".into(),
            network: net.into(),
            controller_url: "http://10.0.0.1:8080".into(),
            allow_unapproved: false,
            dhcp_pool: "10.0.0.100 -10.0.0.199".into(),
        };
        assert_eq!(s.check().unwrap().dhcp_pool, "10.0.0.100-10.0.0.199");
        let e = ProvisionSettings {
            dhcp_pool: "10.0.5.1-10.0.5.9".into(),
            ..s
        }
        .check()
        .unwrap_err();
        assert_eq!(e.field, "dhcp_pool");
    }
    #[test]
    fn a_static_address_is_inside_the_boot_network() {
        let net = "10.0.0.0/24";
        assert_eq!(
            static_address_in("address", "10.0.0.5/24", net).unwrap(),
            "10.0.0.5/24"
        );
        for bad in [
            "10.0.1.5/24",
            "10.0.0.5/16",
            "10.0.0.0/24",
            "10.0.0.255/24",
            "10.0.0.5",
        ] {
            assert!(static_address_in("address", bad, net).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_round_trips_and_refuses_what_the_controller_would_not_write() {
        let p = BootParams {
            controller: "http://10.77.5.1:8080".into(),
            mac: "52:54:00:77:05:10".into(),
            name: "node-1".into(),
            token: Some("ab".repeat(32)),
            address: Some("10.77.5.20/24".into()),
            gateway: Some("10.77.5.1".into()),
        };
        let line = format!("console=ttyS0 boot=live {} quiet", p.to_cmdline());
        assert_eq!(BootParams::parse(&line).unwrap(), p);
        let bad = |w: &str| BootParams::parse(&format!("{} {w}", p.to_cmdline())).unwrap_err();
        assert_eq!(bad("sw.token=xyz").field, "sw.token");
        assert_eq!(bad("sw.mac=01:00:00:00:00:01").field, "sw.mac");
        assert_eq!(bad("sw.controller=http://a/;reboot").field, "sw.controller");
        assert_eq!(bad("sw.address=10.0.0.1/31").field, "sw.address");
        assert_eq!(bad("sw.name=a/b").field, "sw.name");
        assert_eq!(
            BootParams::parse("sw.mac=52:54:00:77:05:10")
                .unwrap_err()
                .field,
            "sw.controller"
        );
    }
}

/// Network boot for the site: off, or answering on one interface for one network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionSettings {
    pub enabled: bool,
    /// The controller's interface on the hosts' network (`eth1`).
    pub interface: String,
    /// The hosts' network, `10.0.0.0/24`: boot information is given there, never addresses
    /// (the site's DHCP server keeps handing those out).
    pub network: String,
    /// The controller as booting machines reach it (`http://10.0.0.1:8080`).
    pub controller_url: String,
    /// Any machine that boots may join (true), or only those an operator approved (false).
    pub allow_unapproved: bool,
    /// The site's own DHCP server's pool on that network, `10.0.0.100-10.0.0.199` (empty: not
    /// told). A static address the operator assigns must lie outside it: the site's server could
    /// give it to another machine. A machine that took its address by DHCP outside it is told.
    #[serde(default)]
    pub dhcp_pool: String,
}

impl ProvisionSettings {
    /// Checks every field (an enabled site needs them all), in their plain forms.
    pub fn check(&self) -> Result<ProvisionSettings, ValidationError> {
        if !self.enabled && self.interface.is_empty() && self.network.is_empty() {
            return Ok(self.clone());
        }
        let interface = validate::interface_name("interface", &self.interface)?;
        let network = network("network", &self.network)?;
        let controller_url = controller_url("controller_url", self.controller_url.trim())?;
        let dhcp_pool = match pool_in("dhcp_pool", &self.dhcp_pool, &network)? {
            Some(p) => p.to_string(),
            None => String::new(),
        };
        Ok(ProvisionSettings {
            enabled: self.enabled,
            interface,
            network,
            controller_url,
            allow_unapproved: self.allow_unapproved,
            dhcp_pool,
        })
    }
}

/// A range of addresses, first to last (both in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressRange {
    pub first: std::net::Ipv4Addr,
    pub last: std::net::Ipv4Addr,
}

impl AddressRange {
    pub fn contains(&self, a: std::net::Ipv4Addr) -> bool {
        self.first <= a && a <= self.last
    }
}

impl std::fmt::Display for AddressRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The site's DHCP pool `first-last` on the boot network `net` (`n/len`): empty is none; both
/// ends inside the network, first not after last.
pub fn pool_in(field: &str, v: &str, net: &str) -> Result<Option<AddressRange>, ValidationError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let form = || ValidationError::new(field, "a range first-last: 10.0.0.100-10.0.0.199");
    let (a, b) = v.split_once('-').ok_or_else(form)?;
    let first = validate::ipv4_address(field, a)?;
    let last = validate::ipv4_address(field, b)?;
    if first > last {
        return Err(ValidationError::new(
            field,
            format!("the range ends before it starts: {first} is after {last}"),
        ));
    }
    let (n, len) = net
        .split_once('/')
        .and_then(|(n, l)| {
            Some((
                n.parse::<std::net::Ipv4Addr>().ok()?,
                l.parse::<u32>().ok()?,
            ))
        })
        .ok_or_else(|| {
            ValidationError::new(field, "set the hosts' network first: the pool is in it")
        })?;
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    for end in [first, last] {
        if u32::from(end) & mask != u32::from(n) {
            return Err(ValidationError::new(
                field,
                format!("{end} is not in the hosts' network {net}: the pool is the site's DHCP range on it"),
            ));
        }
    }
    Ok(Some(AddressRange { first, last }))
}

/// A static address `a.b.c.d/len` outside the site's DHCP pool `pool` (as settings keep it;
/// empty when not told).
pub fn outside_pool(field: &str, address: &str, pool: &str) -> Result<(), ValidationError> {
    let Some((first, last)) = pool.split_once('-') else {
        return Ok(());
    };
    let (Ok(first), Ok(last), Some(Ok(ip))) = (
        first.parse(),
        last.parse(),
        address
            .split('/')
            .next()
            .map(str::parse::<std::net::Ipv4Addr>),
    ) else {
        return Ok(());
    };
    let range = AddressRange { first, last };
    if range.contains(ip) {
        return Err(ValidationError::new(
            field,
            format!(
                "{ip} is in the site's DHCP pool {range}: its DHCP server may give it to another machine; choose an address outside the pool"
            ),
        ));
    }
    Ok(())
}

/// A network `a.b.c.0/len` (its address with no host bits set), len 8 to 30.
pub fn network(field: &str, v: &str) -> Result<String, ValidationError> {
    let c = cidr(field, v.trim())?;
    let (a, len) = c.split_once('/').unwrap_or_default();
    let a: std::net::Ipv4Addr = a
        .parse()
        .map_err(|_| ValidationError::new(field, "not an address"))?;
    let len: u32 = len.parse().unwrap_or(32);
    let bits = u32::from(a);
    let mask = u32::MAX << (32 - len);
    if bits & !mask != 0 {
        return Err(ValidationError::new(
            field,
            format!(
                "a network has no host bits: {}/{len}",
                std::net::Ipv4Addr::from(bits & mask)
            ),
        ));
    }
    Ok(c)
}

/// A static address `a.b.c.d/len` for a machine on the boot network `net` (`n/len`): inside it,
/// with the same prefix, neither the network's own address nor its broadcast.
pub fn static_address_in(field: &str, address: &str, net: &str) -> Result<String, ValidationError> {
    let a = cidr(field, address)?;
    let parse = |c: &str| -> Option<(u32, u32)> {
        let (ip, len) = c.split_once('/')?;
        Some((
            u32::from(ip.parse::<std::net::Ipv4Addr>().ok()?),
            len.parse().ok()?,
        ))
    };
    let ((ip, len), (n, nlen)) = match (parse(&a), parse(net)) {
        (Some(x), Some(y)) => (x, y),
        _ => {
            return Err(ValidationError::new(
                field,
                "not an address with its prefix",
            ))
        }
    };
    let mask = u32::MAX << (32 - nlen);
    if len != nlen || ip & mask != n {
        return Err(ValidationError::new(
            field,
            format!("not in the boot network {net}: machines boot and join there"),
        ));
    }
    if ip == n || ip == n | !mask {
        return Err(ValidationError::new(
            field,
            "the network's own address or its broadcast",
        ));
    }
    Ok(a)
}

/// A machine that booted from the network, and where it is on its way to become a host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionMachine {
    pub mac: String,
    /// The host name it gets.
    pub name: String,
    /// `waiting` (for approval), `approved`, `booting` (a token was handed out), `joining`,
    /// `joined`, `failed`.
    pub state: String,
    pub approved: bool,
    /// A static address the operator assigned (`10.0.0.5/24`), or DHCP.
    pub address: Option<String>,
    pub gateway: Option<String>,
    pub host_id: Option<i64>,
    /// The newest stage: `dhcp`, `ipxe`, `kernel`, `root`, `joined`, `online`.
    pub stage: String,
    pub message: String,
    /// The host image it boots (kept across reboots; changed by a re-image).
    #[serde(default)]
    pub image_id: Option<String>,
    pub first_seen_at: String,
    pub last_seen_at: String,
}

/// `POST /api/v1/provision/machines/{mac}/reimage`: boot the host into another image.
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReimageRequest {
    /// The image (an id from the image list); the newest usable one when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// Reboot even though VPSes still run on the host (they stop, and start again with it).
    #[serde(default)]
    pub force: bool,
}

/// A host image, checked against its manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionImage {
    pub id: String,
    pub version: String,
    pub built_at: i64,
    pub build_secs: f64,
    pub size_bytes: u64,
    /// Checked whole: only such an image is served.
    pub ok: bool,
    pub problem: Option<String>,
    /// The image a new machine gets: the newest good one a host came online on (while none
    /// has, the newest good one).
    pub served: bool,
    /// Which host first came online on it; a new machine gets the newest image one has.
    #[serde(default)]
    pub proven: Option<String>,
}

/// The Provisioning page: settings, images, machines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProvisionOverview {
    pub settings: ProvisionSettings,
    pub images: Vec<ProvisionImage>,
    pub machines: Vec<ProvisionMachine>,
    /// Whether the boot service (dnsmasq) is answering, or why not.
    pub boot_service: String,
}

/// A machine added by its MAC before it boots, approved, with the name and address it gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AddMachineRequest {
    pub mac: String,
    /// The name (default: `host-` and the end of its MAC) and the address it gets.
    #[serde(flatten)]
    pub approval: ApproveMachineRequest,
}

/// An operator's approval of a waiting machine, with the name and address it gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApproveMachineRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// `a.b.c.d/len`, or none for DHCP.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
}
