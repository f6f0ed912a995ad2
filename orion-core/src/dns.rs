//! DNS on every node (hickory-server), answered from the node's own replica
//! with no network hop, for the names of the service catalog:
//!
//! | name | answers |
//! |---|---|
//! | `<service>.service.orion.` | A: the addresses of its healthy instances; SRV: each instance's port, target `<alloc>.alloc.orion.` (its A in the additional section) |
//! | `<tag>.<service>.service.orion.` | the same, only instances with the tag |
//! | `_<service>._tcp.service.orion.` | SRV, RFC 2782 style |
//! | `<alloc>.alloc.orion.` | A: where the allocation runs |
//! | `<node>.node.orion.` | A: the node's host IP |
//!
//! Names are case-insensitive. Another name under `orion.` is NXDOMAIN;
//! a name outside it is REFUSED (this is not a recursive resolver). Records
//! carry a short TTL (5 s): instances come and go with allocations.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Header, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::catalog::{self, Instance};
use crate::replica::Replica;
use crate::state::ClusterState;

/// The domain Orion answers for.
pub const DOMAIN: &str = "orion.";

/// TTL of every record, in seconds.
pub const TTL: u32 = 5;

/// Answers DNS queries from a replica.
#[derive(Clone)]
pub struct DnsHandler {
    replica: Arc<Replica>,
}

impl DnsHandler {
    /// A handler reading `replica`.
    pub fn new(replica: Arc<Replica>) -> Self {
        DnsHandler { replica }
    }
}

/// What a query asks for, parsed from its name.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Service { name: String, tag: Option<String> },
    Alloc(String),
    Node(String),
}

fn parse(name: &str) -> Option<Ask> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    match labels.as_slice() {
        [svc, proto, "service", "orion"] if svc.starts_with('_') && proto.starts_with('_') => {
            Some(Ask::Service {
                name: svc[1..].to_string(),
                tag: None,
            })
        }
        [svc, "service", "orion"] => Some(Ask::Service {
            name: svc.to_string(),
            tag: None,
        }),
        [tag, svc, "service", "orion"] => Some(Ask::Service {
            name: svc.to_string(),
            tag: Some(tag.to_string()),
        }),
        [alloc, "alloc", "orion"] => Some(Ask::Alloc(alloc.to_string())),
        [node, "node", "orion"] => Some(Ask::Node(node.to_string())),
        _ => None,
    }
}

fn address_record(name: &Name, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(name.clone(), TTL, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// The answer and additional records for a query, or `None` for a name that
/// does not exist.
fn answer(
    state: &ClusterState,
    qname: &Name,
    qtype: RecordType,
) -> Option<(Vec<Record>, Vec<Record>)> {
    let ask = parse(&qname.to_ascii())?;
    let mut answers = Vec::new();
    let mut extra = Vec::new();
    match ask {
        Ask::Service { name, tag } => {
            let (_, all) = catalog::instances(state, &name);
            let known =
                !all.is_empty() || state.jobs.values().any(|j| catalog::service_of(j) == name);
            if !known {
                return None;
            }
            let healthy: Vec<&Instance> = all
                .iter()
                .filter(|i| i.healthy)
                .filter(|i| tag.as_ref().is_none_or(|t| i.tags.contains(t)))
                .collect();
            match qtype {
                RecordType::SRV => {
                    for i in &healthy {
                        let target = Name::from_ascii(format!("{}.alloc.orion.", i.alloc)).ok()?;
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            TTL,
                            RData::SRV(SRV::new(1, 1, i.port, target.clone())),
                        ));
                        if let Ok(ip) = i.address.parse::<IpAddr>() {
                            extra.extend(address_record(&target, ip, RecordType::SRV));
                        }
                    }
                }
                _ => {
                    let ips: BTreeSet<IpAddr> = healthy
                        .iter()
                        .filter_map(|i| i.address.parse().ok())
                        .collect();
                    answers.extend(
                        ips.into_iter()
                            .filter_map(|ip| address_record(qname, ip, qtype)),
                    );
                }
            }
        }
        Ask::Alloc(id) => {
            let a = state
                .allocs
                .values()
                .find(|a| a.id.eq_ignore_ascii_case(&id))?;
            let ip = a.ports.first().map(|p| p.host_ip.clone()).or_else(|| {
                a.node
                    .as_ref()
                    .and_then(|n| state.nodes.get(n))
                    .map(|n| n.info.host_ip.clone())
            })?;
            if let Ok(ip) = ip.parse() {
                answers.extend(address_record(qname, ip, qtype));
            }
        }
        Ask::Node(id) => {
            let n = state
                .nodes
                .values()
                .find(|n| n.id().eq_ignore_ascii_case(&id))?;
            if let Ok(ip) = n.info.host_ip.parse() {
                answers.extend(address_record(qname, ip, qtype));
            }
        }
    }
    Some((answers, extra))
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_authoritative(true);
        header.set_recursion_available(false);
        let refuse = |code: ResponseCode| {
            let mut h = Header::response_from_request(request.header());
            h.set_response_code(code);
            h
        };
        let info = match request.request_info() {
            Ok(info) => info,
            Err(_) => {
                let h = refuse(ResponseCode::FormErr);
                let msg = builder.build_no_records(h);
                return response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| h.into());
            }
        };
        if request.header().op_code() != OpCode::Query
            || request.header().message_type() != MessageType::Query
        {
            let h = refuse(ResponseCode::NotImp);
            let msg = builder.build_no_records(h);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| h.into());
        }
        let qname: Name = info.query.name().into();
        let qtype = info.query.query_type();
        let domain = Name::from_ascii(DOMAIN).expect("the domain parses");
        if !domain.zone_of(&qname) {
            let h = refuse(ResponseCode::Refused);
            let msg = builder.build_no_records(h);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| h.into());
        }
        let state = self.replica.current();
        match answer(&state, &qname, qtype) {
            Some((answers, extra)) => {
                let msg = builder.build(header, answers.iter(), [], [], extra.iter());
                response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| header.into())
            }
            None => {
                header.set_response_code(ResponseCode::NXDomain);
                let msg = builder.build_no_records(header);
                response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| header.into())
            }
        }
    }
}

/// Serves DNS for `replica` on `udp` and `tcp` (already bound) until
/// `shutdown` turns true.
pub async fn serve(
    replica: Arc<Replica>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut server = hickory_server::ServerFuture::new(DnsHandler::new(replica));
    server.register_socket_std(udp)?;
    server.register_listener_std(tcp, std::time::Duration::from_secs(5))?;
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = server.shutdown_gracefully().await;
    Ok(())
}

/// Binds DNS's UDP and TCP sockets on `addr` (the same port for both).
pub fn bind(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let udp = std::net::UdpSocket::bind(addr)?;
    let addr = udp.local_addr()?;
    let tcp = std::net::TcpListener::bind(addr)?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    Ok((udp, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_what_they_ask() {
        let svc = |n: &str, t: Option<&str>| Ask::Service {
            name: n.into(),
            tag: t.map(Into::into),
        };
        assert_eq!(parse("web.service.orion."), Some(svc("web", None)));
        assert_eq!(parse("WEB.Service.Orion"), Some(svc("web", None)));
        assert_eq!(
            parse("blue.web.service.orion."),
            Some(svc("web", Some("blue")))
        );
        assert_eq!(parse("_web._tcp.service.orion."), Some(svc("web", None)));
        assert_eq!(
            parse("web-0-1.alloc.orion."),
            Some(Ask::Alloc("web-0-1".into()))
        );
        assert_eq!(parse("n1.node.orion."), Some(Ask::Node("n1".into())));
        assert_eq!(parse("web.orion."), None);
        assert_eq!(parse("example.com."), None);
    }
}
