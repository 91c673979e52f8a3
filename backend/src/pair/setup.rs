//! What a pair's set-up checks before it changes anything, so that a mistake gets a clear error
//! naming the part and leaves everything as it was: every etcd member (both controllers' and the
//! witness's) answers, the partner runs this version, and no other controller claims this
//! controller's name or the pair's second place. A controller starting in pair mode makes the
//! claim check too: two machines configured with one name would otherwise take turns leading.

use super::{Etcd, Member};

/// The site's etcd cluster and the controllers present in it, as asked now.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// Each etcd member: its name, client URL and whether it answers healthy.
    pub etcd: Vec<(String, String, bool)>,
    /// The controllers that say they are present (their own leases).
    pub present: Vec<Member>,
}

/// Asks etcd for its members (each asked for its health) and for the controllers present.
pub async fn survey(etcd: &Etcd, members_prefix: &str) -> Result<Survey, String> {
    let members = etcd.members().await.map_err(|e| {
        format!(
            "etcd does not answer at {}: {e}",
            etcd.endpoints().join(", ")
        )
    })?;
    let mut out = Survey::default();
    for (name, urls) in members {
        let url = urls.first().cloned().unwrap_or_default();
        let ok = !url.is_empty() && etcd.healthy(&url).await;
        out.etcd.push((name, url, ok));
    }
    out.present = present(etcd, members_prefix).await?;
    Ok(out)
}

/// The controllers that say they are present. etcd electing a leader (a member just went down)
/// answers 503 for a moment: asked again for up to 10 s before that is the answer.
pub async fn present(etcd: &Etcd, members_prefix: &str) -> Result<Vec<Member>, String> {
    let prefix = format!("{}/", members_prefix.trim_end_matches('/'));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let listed = loop {
        match etcd.list(&prefix).await {
            Ok(l) => break l,
            Err(e) if e.to_string().contains("503") && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await
            }
            Err(e) => return Err(format!("cannot ask etcd who is present: {e}")),
        }
    };
    Ok(listed
        .into_iter()
        .filter_map(|(_, h)| serde_json::from_str(&h.value).ok())
        .collect())
}

/// Whether the etcd cluster can carry a pair: three members, every one answering. Each one that
/// does not is named.
pub fn judge_etcd(s: &Survey) -> Result<(), String> {
    let down: Vec<String> = s
        .etcd
        .iter()
        .filter(|(_, _, ok)| !ok)
        .map(|(n, u, _)| format!("{n} ({u})"))
        .collect();
    if !down.is_empty() {
        return Err(format!(
            "etcd member {} does not answer: every member (both controllers' and the witness's) must be up to set a pair up",
            down.join(", ")
        ));
    }
    if s.etcd.len() < 3 {
        let names: Vec<&str> = s.etcd.iter().map(|(n, _, _)| n.as_str()).collect();
        return Err(format!(
            "the site's etcd cluster has {} member(s) ({}): a pair needs three, one on each controller and one on the witness",
            s.etcd.len(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// Whether `me` may take its place in the pair beside those present: no other controller under
/// its name, at most one other controller.
pub fn judge_claim(me: &Member, present: &[Member]) -> Result<(), String> {
    if let Some(m) = present
        .iter()
        .find(|m| m.name == me.name && m.url != me.url)
    {
        return Err(format!(
            "a controller named {} is already in this site's pair, at {}: each controller needs a name of its own (pair.name)",
            m.name, m.url
        ));
    }
    let others: Vec<&Member> = present.iter().filter(|m| m.name != me.name).collect();
    if others.len() >= 2 {
        let names: Vec<String> = others
            .iter()
            .map(|m| format!("{} ({})", m.name, m.url))
            .collect();
        return Err(format!(
            "this site's pair has two controllers already: {}",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Whether the partner present runs `me`'s version (a pair is set up on one version; an upgrade
/// later replaces one controller after the other).
pub fn judge_version(me: &Member, present: &[Member]) -> Result<(), String> {
    if let Some(m) = present
        .iter()
        .find(|m| m.name != me.name && m.version != me.version)
    {
        return Err(format!(
            "the partner {} runs SERVERware {} and this controller {}: install the same version on both",
            m.name, m.version, me.version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, url: &str, version: &str) -> Member {
        Member {
            name: name.into(),
            url: url.into(),
            version: version.into(),
        }
    }

    #[test]
    fn a_member_that_does_not_answer_is_named() {
        let s = Survey {
            etcd: vec![
                ("ctl-a".into(), "http://10.0.0.1:2379".into(), true),
                ("ctl-b".into(), "http://10.0.0.2:2379".into(), true),
                ("witness".into(), "http://10.0.0.3:2379".into(), false),
            ],
            present: vec![],
        };
        let e = judge_etcd(&s).unwrap_err();
        assert!(e.contains("witness (http://10.0.0.3:2379)"), "{e}");
        let mut two = s.clone();
        two.etcd.pop();
        let e = judge_etcd(&two).unwrap_err();
        assert!(e.contains("2 member(s) (ctl-a, ctl-b)"), "{e}");
        let mut all = s;
        all.etcd[2].2 = true;
        assert!(judge_etcd(&all).is_ok());
    }

    #[test]
    fn a_name_taken_a_third_controller_and_another_version_are_refused() {
        let me = m("ctl-a", "http://a", "1.0.0");
        // Its own earlier run (same name, same place) is no rival.
        assert!(judge_claim(&me, &[m("ctl-a", "http://a", "1.0.0")]).is_ok());
        assert!(judge_claim(&me, &[m("ctl-b", "http://b", "1.0.0")]).is_ok());
        let e = judge_claim(&me, &[m("ctl-a", "http://x", "1.0.0")]).unwrap_err();
        assert!(
            e.contains("ctl-a is already") && e.contains("http://x"),
            "{e}"
        );
        let e = judge_claim(
            &me,
            &[
                m("ctl-b", "http://b", "1.0.0"),
                m("ctl-c", "http://c", "1.0.0"),
            ],
        )
        .unwrap_err();
        assert!(e.contains("two controllers already"), "{e}");
        assert!(judge_claim(&me, &[m("ctl-b", "http://b", "0.9.0")]).is_ok());
        let e = judge_version(&me, &[m("ctl-b", "http://b", "0.9.0")]).unwrap_err();
        assert!(e.contains("ctl-b runs SERVERware 0.9.0"), "{e}");
    }
}
