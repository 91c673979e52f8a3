//! The steps every operation that makes a VPS on a host shares (create, copy, restore as a new
//! VPS, move): its configuration defined before its files arrive, defined again once they are
//! there (the host name written into them), then started if asked. Sagas call `define` and
//! `start` (their driver records the step); the kinds that drive their steps by hand use
//! `define_step`, `configure_and_start` and `finish_on`, which record the kind's own step of
//! that name.

use super::*;

/// Defines (or defines again) the VPS on the host.
pub(super) async fn define(c: &Conn, v: &VpsRow, host: &HostRow) -> Result<()> {
    call(
        c,
        AgentRequest::VpsDefine {
            spec: spec(v, host),
        },
        QUICK,
    )
    .await?;
    Ok(())
}

/// Starts the VPS.
pub(super) async fn start(c: &Conn, v: &VpsRow) -> Result<()> {
    call(
        c,
        AgentRequest::VpsStart {
            name: v.name.clone(),
        },
        QUICK,
    )
    .await?;
    Ok(())
}

/// Defines the VPS on the host (before its files arrive), recorded as `defined`.
pub(super) async fn define_step<S: Steps>(
    state: &Vpses,
    task: &Task,
    c: &Conn,
    v: &VpsRow,
    host: &HostRow,
    defined: S,
) -> Result<()> {
    define(c, v, host).await?;
    ops::step(&state.db, task.id(), defined).await
}

/// With its files in place: defined again (recorded as `configured`), then started if `start`
/// (recorded as `started`). The caller records where it runs and its state.
pub(super) async fn configure_and_start<S: Steps>(
    state: &Vpses,
    task: &Task,
    c: &Conn,
    v: &VpsRow,
    host: &HostRow,
    start: bool,
    (configured, started): (S, S),
) -> Result<()> {
    define(c, v, host).await?;
    ops::step(&state.db, task.id(), configured).await?;
    if !start {
        return Ok(());
    }
    self::start(c, v).await?;
    ops::step(&state.db, task.id(), started).await
}

/// [`configure_and_start`], then its state recorded (it stays on the host it was made on).
pub(super) async fn finish_on<S: Steps>(
    state: &Vpses,
    task: &Task,
    c: &Conn,
    v: &VpsRow,
    host: &HostRow,
    start: bool,
    steps: (S, S),
) -> Result<bool> {
    configure_and_start(state, task, c, v, host, start, steps).await?;
    let observed = if start {
        ObservedState::Running
    } else {
        ObservedState::Stopped
    };
    set_state(state, v.id, observed, None).await?;
    Ok(start)
}
