//! Ids of what the controller records, one type each, so that a host's id can never be passed
//! where a VPS's is meant. On the wire (JSON, URL paths) each is the bare number; in the
//! database a `BIGINT` column (the `sql` feature).

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$m:meta])* $t:ident) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        #[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::BigInt))]
        pub struct $t(pub i64);

        impl $t {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $t {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($t)
            }
        }

        #[cfg(feature = "sql")]
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::BigInt, DB> for $t
        where
            DB: diesel::backend::Backend,
            i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                self.0.to_sql(out)
            }
        }

        #[cfg(feature = "sql")]
        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::BigInt, DB> for $t
        where
            DB: diesel::backend::Backend,
            i64: diesel::deserialize::FromSql<diesel::sql_types::BigInt, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                i64::from_sql(bytes).map($t)
            }
        }
    };
}

id! {
    /// A host of the site.
    HostId
}

id! {
    /// A VPS.
    VpsId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_number_on_the_wire() {
        assert_eq!(serde_json::to_string(&VpsId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<HostId>("12").unwrap(), HostId(12));
        assert_eq!("42".parse::<VpsId>().unwrap(), VpsId(42));
        assert_eq!(HostId(3).to_string(), "3");
    }
}
