//! Host ports: fixed ones free, and room in the dynamic range.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;
use crate::spec::Protocol;

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

/// Rejects nodes whose dynamic port range has too few free ports for the task.
///
/// Constant time while a node holds fewer ports than its range; see
/// [`Candidate::has_dynamic_ports`].
#[derive(Debug, Default)]
pub struct DynamicPortFilter;

impl Filter for DynamicPortFilter {
    fn name(&self) -> &'static str {
        "dynamic-ports"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        if ask.dynamic_ports.is_empty() {
            return Ok(());
        }
        for proto in [Protocol::Tcp, Protocol::Udp] {
            if !c.has_dynamic_ports(proto, ask.dynamic_count(proto), &ask.static_ports) {
                return Err(Reason::NoDynamicPort);
            }
        }
        Ok(())
    }
}
