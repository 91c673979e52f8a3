//! netMON's service checks, from the controller: shared's probes (an ICMP echo to the VPS's
//! address, then a TCP connect to each port it names), on a blocking thread.

use std::net::Ipv4Addr;

/// Whether the VPS at `ip` answers: the ICMP echo, then every TCP port. The first failure, said.
pub async fn check(ip: Ipv4Addr, ports: &[u16]) -> Result<(), String> {
    let ports = ports.to_vec();
    tokio::task::spawn_blocking(move || serverware_shared::probe::check(ip, &ports))
        .await
        .map_err(|e| format!("icmp: {e}"))?
}
