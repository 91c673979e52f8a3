//! The reconciler: moves what hosts report toward what the database says.

use super::*;

/// How often the database is compared with what hosts report.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// The database is the source of truth: a VPS that should run but is reported stopped (its host
/// rebooted, or it crashed) is started again if it has autostart, else recorded as stopped.
/// VPSes with a task running are left to it.
pub async fn reconcile(state: &Arc<AppState>) -> ApiResult<()> {
    let rows: Vec<VpsRow> = state
        .db
        .run(|c| {
            Ok(vpses::table
                .filter(vpses::status.eq("running"))
                .select(VpsRow::as_select())
                .load(c)?)
        })
        .await?;
    for v in rows {
        let Some(h) = v.host_id else { continue };
        if state.vps_busy.task_of(v.id).is_some() {
            continue;
        }
        // A sample from before its last change says nothing about it yet.
        let settled =
            chrono::Utc::now().naive_utc() - v.updated_at > chrono::TimeDelta::seconds(15);
        if !settled {
            continue;
        }
        let Some(view) = state.hosts.view(h).filter(|view| view.status == "online") else {
            continue;
        };
        let Some(sample) = view.latest else { continue };
        let reported = sample
            .vpses
            .iter()
            .find(|x| x.name == v.name)
            .map(|x| x.state.clone());
        if reported.as_deref() != Some("stopped") {
            continue;
        }
        let system = Actor::system("reconcile");
        if v.autostart {
            tracing::warn!(
                vps = v.name,
                "VPS should run but is stopped; starting it (autostart)"
            );
            let id = v.id;
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set(vpses::status.eq("stopped"))
                        .execute(c)?;
                    Ok(())
                })
                .await?;
            if let Err(e) = start(state.clone(), system, v.id).await {
                tracing::warn!(vps = v.name, "restarting it failed: {}", e.body().message);
            }
        } else {
            let (id, name) = (v.id, v.name.clone());
            state
                .db
                .run(move |c| {
                    diesel::update(vpses::table.find(id))
                        .set((vpses::status.eq("stopped"), vpses::updated_at.eq(now())))
                        .execute(c)?;
                    audit::record_system(
                        c,
                        &system,
                        Change::new(
                            "vps.stopped_unexpectedly",
                            "vps",
                            id,
                            format!("VPS {name} stopped on its own (autostart is off)"),
                        )
                        .severity(serverware_shared::api::Severity::Warning),
                    )?;
                    Ok(())
                })
                .await?;
            changed(state, v.id, ChangeKind::Updated);
        }
    }
    Ok(())
}

/// Runs [`reconcile`] every few seconds.
pub fn start_reconciler(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RECONCILE_EVERY).await;
            if let Err(e) = reconcile(&state).await {
                tracing::warn!("reconciling VPSes failed: {}", e.body().message);
            }
        }
    });
}
