//! The states of a VPS, kept apart: what the operator asked for (desired), what the controller
//! knows of it on its host (observed), and the one operation that may be in progress. One table
//! says which operation each observed state allows; the API and the dashboard both use it, and
//! every refusal names the state that forbids it.

use serde::{Deserialize, Serialize};
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// What the operator asked for; the reconciler moves the VPS toward it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum DesiredState {
    Running,
    Stopped,
}

/// What the controller knows of a VPS on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum ObservedState {
    /// Being made: its first operation has not finished.
    Creating,
    Running,
    Stopped,
    /// Paused (its processes frozen, for a consistent copy).
    Frozen,
    /// Its host is connected but has no such container.
    Missing,
    /// Its host cannot be reached: nobody can say whether it runs.
    Unknown,
}

/// An operation on a VPS; at most one is in progress per VPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum VpsOperation {
    Create,
    Start,
    Stop,
    Restart,
    Edit,
    Delete,
    /// Copying this VPS to a new one (this VPS is the source).
    Copy,
    Move,
    /// Replacing its files with a restore point (netDUPLO), or (the source) making a new VPS
    /// from one of its points.
    Restore,
}

macro_rules! names {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        // Stored as its name in a text column; a name the enum does not have is an error
        // when read, never a silent default.
        #[cfg(feature = "sql")]
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $t
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                self.as_str().to_sql(out)
            }
        }
        #[cfg(feature = "sql")]
        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $t
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                let s = String::from_sql(bytes)?;
                Self::parse(&s).ok_or_else(|| {
                    format!("'{s}' is not a {}", stringify!($t)).into()
                })
            }
        }
    };
}

/// What the controller knows of a host's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum HostStatus {
    /// Added or reconnecting: no sample yet.
    Connecting,
    /// Its samples arrive.
    Online,
    /// Its samples stopped (past the heartbeat timeout) or it cannot be reached.
    Offline,
    /// It presents another SSH host key than the one pinned: never trusted silently.
    KeyMismatch,
    /// It refuses the controller's key.
    AuthFailed,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(
    feature = "sql",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
pub enum TaskStatus {
    Running,
    Succeeded,
    Failed,
}

names!(HostStatus {
    Connecting => "connecting", Online => "online", Offline => "offline",
    KeyMismatch => "key_mismatch", AuthFailed => "auth_failed",
});
names!(TaskStatus { Running => "running", Succeeded => "succeeded", Failed => "failed" });
names!(DesiredState { Running => "running", Stopped => "stopped" });
names!(ObservedState {
    Creating => "creating", Running => "running", Stopped => "stopped", Frozen => "frozen",
    Missing => "missing", Unknown => "unknown",
});
names!(VpsOperation {
    Create => "create", Start => "start", Stop => "stop", Restart => "restart", Edit => "edit",
    Delete => "delete", Copy => "copy", Move => "move", Restore => "restore",
});

impl VpsOperation {
    /// The word shown as a VPS's status while the operation runs.
    pub fn progressive(self) -> &'static str {
        match self {
            Self::Create => "creating",
            Self::Start => "starting",
            Self::Stop => "stopping",
            Self::Restart => "restarting",
            Self::Edit => "updating",
            Self::Delete => "deleting",
            Self::Copy => "copying",
            Self::Move => "moving",
            Self::Restore => "restoring",
        }
    }

    /// The past participle, for refusals ("it cannot be started").
    pub fn participle(self) -> &'static str {
        match self {
            Self::Create => "created",
            Self::Start => "started",
            Self::Stop => "stopped",
            Self::Restart => "restarted",
            Self::Edit => "edited",
            Self::Delete => "deleted",
            Self::Copy => "copied",
            Self::Move => "moved",
            Self::Restore => "restored",
        }
    }

    /// The observed states in which the operation may begin: the one transition table.
    pub fn allowed_from(self) -> &'static [ObservedState] {
        use ObservedState::*;
        match self {
            // A create makes a new VPS; nothing exists to be in a state.
            Self::Create => &[],
            Self::Start => &[Stopped],
            Self::Stop | Self::Restart => &[Running, Frozen],
            // A delete must reach the host to remove the container: not while unknown.
            Self::Delete => &[Running, Stopped, Frozen, Missing],
            // An edit is stored and applied when the host is reachable again.
            Self::Edit => &[Running, Stopped, Frozen, Missing, Unknown],
            Self::Copy | Self::Move => &[Running, Stopped],
            // A restore replaces the files whatever ran on them; a VPS whose tree is gone
            // (missing) is exactly what a restore is for.
            Self::Restore => &[Running, Stopped, Frozen, Missing],
        }
    }
}

/// Why an operation cannot begin now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another operation holds the VPS.
    Busy { operation: VpsOperation, task: i64 },
    /// The VPS's observed state forbids it.
    State(ObservedState),
}

impl Refusal {
    /// A message for people, naming the VPS and the state that forbids the operation.
    pub fn message(&self, vps: &str, op: VpsOperation) -> String {
        match self {
            Refusal::Busy { operation, task } => format!(
                "VPS {vps} is busy: {} (task {task}); it cannot be {} until that ends",
                operation.progressive(),
                op.participle()
            ),
            Refusal::State(ObservedState::Unknown) => format!(
                "VPS {vps} is in an unknown state (its host cannot be reached); it cannot be {} now",
                op.participle()
            ),
            Refusal::State(s) => format!(
                "VPS {vps} is {}; it cannot be {} now",
                s.as_str(),
                op.participle()
            ),
        }
    }
}

/// Whether `op` may begin on a VPS in state `observed` with `in_progress` running on it.
pub fn check(
    op: VpsOperation,
    observed: ObservedState,
    in_progress: Option<(VpsOperation, i64)>,
) -> Result<(), Refusal> {
    if let Some((operation, task)) = in_progress {
        return Err(Refusal::Busy { operation, task });
    }
    if op.allowed_from().contains(&observed) {
        Ok(())
    } else {
        Err(Refusal::State(observed))
    }
}

/// The status a person reads: the operation in progress, else what is observed.
pub fn status(observed: ObservedState, in_progress: Option<VpsOperation>) -> &'static str {
    match in_progress {
        Some(op) => op.progressive(),
        None => observed.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "creating", "running", "stopped", "frozen", "missing", "unknown",
        ] {
            assert_eq!(ObservedState::parse(s).unwrap().as_str(), s);
        }
        for s in [
            "create", "start", "stop", "restart", "edit", "delete", "copy", "move", "restore",
        ] {
            assert_eq!(VpsOperation::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(DesiredState::parse("running"), Some(DesiredState::Running));
        for s in [
            "connecting",
            "online",
            "offline",
            "key_mismatch",
            "auth_failed",
        ] {
            assert_eq!(HostStatus::parse(s).unwrap().as_str(), s);
        }
        for s in ["running", "succeeded", "failed"] {
            assert_eq!(TaskStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(ObservedState::parse("error"), None);
    }

    #[test]
    fn busy_beats_every_state() {
        let e = check(
            VpsOperation::Stop,
            ObservedState::Running,
            Some((VpsOperation::Move, 7)),
        )
        .unwrap_err();
        assert_eq!(
            e.message("web", VpsOperation::Stop),
            "VPS web is busy: moving (task 7); it cannot be stopped until that ends"
        );
    }

    #[test]
    fn the_table() {
        use ObservedState::*;
        use VpsOperation::*;
        assert!(check(Start, Stopped, None).is_ok());
        assert_eq!(check(Start, Running, None), Err(Refusal::State(Running)));
        assert!(check(Stop, Frozen, None).is_ok());
        assert_eq!(check(Stop, Stopped, None), Err(Refusal::State(Stopped)));
        // Nothing but an edit is possible while the host cannot be reached.
        for op in [Start, Stop, Restart, Delete, Copy, Move] {
            assert_eq!(check(op, Unknown, None), Err(Refusal::State(Unknown)));
        }
        assert!(check(Edit, Unknown, None).is_ok());
        // A VPS still being made is touched by nothing.
        for op in [Start, Stop, Restart, Delete, Copy, Move, Edit] {
            assert!(check(op, Creating, None).is_err());
        }
        assert_eq!(
            Refusal::State(Unknown).message("db", Start),
            "VPS db is in an unknown state (its host cannot be reached); it cannot be started now"
        );
    }

    #[test]
    fn status_shows_the_operation_first() {
        assert_eq!(
            status(ObservedState::Running, Some(VpsOperation::Move)),
            "moving"
        );
        assert_eq!(status(ObservedState::Unknown, None), "unknown");
    }
}
