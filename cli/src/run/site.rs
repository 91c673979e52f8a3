//! `sw status`: the site at a glance.

use crate::show;
use serde_json::Value;

/// `sw status` for people.
pub(super) fn site_text(v: &Value) -> String {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let incidents = v["incidents"].as_array().cloned().unwrap_or_default();
    let state = if v["healthy"] == true {
        "healthy".to_string()
    } else {
        format!("{} incident(s)", incidents.len())
    };
    let risk: Vec<String> = v["ha"]["at_risk"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{} ({})",
                r["name"].as_str().unwrap_or("?"),
                r["why"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let lag = match v["duplication"]["max_lag_ms"].as_i64() {
        Some(ms) => format!(
            "worst lag {:.1} s ({})",
            ms as f64 / 1000.0,
            v["duplication"]["max_lag_vps"].as_str().unwrap_or("?")
        ),
        None => "no restore point yet".into(),
    };
    let lag = match v["duplication"]["without_point"].as_u64() {
        Some(n) if n > 0 && v["duplication"]["max_lag_ms"].is_i64() => {
            format!("{lag}; {n} with no point yet")
        }
        _ => lag,
    };
    let storage = match (
        v["storage"]["filesystem_bytes"].as_f64(),
        v["storage"]["filesystem_free_bytes"].as_f64(),
    ) {
        (Some(t), Some(f)) => format!("{} free of {}", show::bytes(f), show::bytes(t)),
        _ => "-".into(),
    };
    let mut out = show::pairs(&[
        (
            "Site",
            format!("{state}, {} failover(s) in 24 h", n("/failovers_24h")),
        ),
        (
            "Hosts",
            format!(
                "{} of {} online ({} down, {} in maintenance)",
                n("/hosts/online"),
                n("/hosts/total"),
                n("/hosts/down"),
                n("/hosts/maintenance")
            ),
        ),
        (
            "HA VPSes",
            format!(
                "{} of {} protected{}",
                n("/ha/protected"),
                n("/ha/total"),
                if risk.is_empty() {
                    String::new()
                } else {
                    format!("; at risk: {}", risk.join(", "))
                }
            ),
        ),
        (
            "Duplication",
            format!(
                "{lag}; {} of {} failing",
                n("/duplication/failing"),
                n("/duplication/vpses")
            ),
        ),
        ("Storage", storage),
    ]);
    for i in &incidents {
        let since = i["since"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| format!(" (since {})", show::time(&t.with_timezone(&chrono::Utc))))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n\n{:<8}{}{since}\n        {}\n        dashboard: {}",
            i["severity"].as_str().unwrap_or("?").to_uppercase(),
            i["title"].as_str().unwrap_or("?"),
            i["detail"].as_str().unwrap_or(""),
            i["link"].as_str().unwrap_or("")
        ));
    }
    out
}
