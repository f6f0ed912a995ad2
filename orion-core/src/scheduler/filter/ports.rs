//! Host ports: fixed ones free, and room in the dynamic range.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes where a fixed host port the task needs is taken.
#[derive(Debug, Default)]
pub struct StaticPortFilter;

impl Filter for StaticPortFilter {
    fn name(&self) -> &'static str {
        "static-ports"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        match ask
            .static_ports
            .iter()
            .find(|(p, proto)| c.port_taken(*p, *proto))
        {
            Some((p, _)) => Err(Reason::PortTaken(*p)),
            None => Ok(()),
        }
    }
}

/// Rejects nodes whose dynamic port range has no free port left.
///
/// Checks one free port per protocol; a task with several dynamic ports on a
/// nearly full range is caught when its ports are assigned.
#[derive(Debug, Default)]
pub struct DynamicPortFilter;

impl Filter for DynamicPortFilter {
    fn name(&self) -> &'static str {
        "dynamic-ports"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        match ask.dynamic_ports.first() {
            Some(proto) if c.free_dynamic_port(*proto, &[]).is_none() => Err(Reason::NoDynamicPort),
            _ => Ok(()),
        }
    }
}
