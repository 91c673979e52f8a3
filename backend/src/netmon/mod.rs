//! netMON: watches hosts and HA VPSes and brings a lost host's VPSes up elsewhere. Its
//! decisions are pure logic ([`decide`]), tested on a simulated site ([`sim`]).

pub mod decide;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod sim;
