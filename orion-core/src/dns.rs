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
//! The domain is configurable ([`DnsConfig::domain`], default `orion.`).
//! Names are case-insensitive. Another name under the domain is NXDOMAIN; a
//! name outside it is REFUSED — this is not a recursive resolver — unless
//! upstream servers are configured ([`DnsConfig::forward`]), which then get
//! the question and whose answer is relayed. Records carry a TTL of 0 by
//! default, as Consul's: instances come and go with allocations, so
//! resolvers should ask again.

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

/// The default domain Orion answers for.
pub const DOMAIN: &str = "orion.";

/// How a node's DNS answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// The domain (`orion.`); names under it are answered from the catalog.
    pub domain: String,
    /// TTL of every record, seconds. Default 0, as Consul's.
    pub ttl: u32,
    /// Servers asked for names outside the domain, in turn. Default none:
    /// those are refused.
    pub forward: Vec<SocketAddr>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            domain: DOMAIN.into(),
            ttl: 0,
            forward: Vec::new(),
        }
    }
}

impl DnsConfig {
    /// The domain as a DNS name, or why it is not one.
    pub fn domain_name(&self) -> Result<Name, String> {
        let d = if self.domain.ends_with('.') {
            self.domain.clone()
        } else {
            format!("{}.", self.domain)
        };
        let name = Name::from_ascii(&d).map_err(|e| format!("{:?}: {e}", self.domain))?;
        if name.is_root() {
            return Err("the root cannot be Orion's domain".into());
        }
        Ok(name.to_lowercase())
    }
}

/// Answers DNS queries from a replica.
#[derive(Clone)]
pub struct DnsHandler {
    replica: Arc<Replica>,
    domain: Name,
    /// The domain's labels, lower case, for matching.
    suffix: Vec<String>,
    ttl: u32,
    forward: Vec<SocketAddr>,
}

impl DnsHandler {
    /// A handler reading `replica` with the default [`DnsConfig`].
    pub fn new(replica: Arc<Replica>) -> Self {
        Self::with_config(replica, &DnsConfig::default()).expect("the default domain parses")
    }

    /// A handler reading `replica`, answering as `config` says.
    pub fn with_config(replica: Arc<Replica>, config: &DnsConfig) -> Result<Self, String> {
        let domain = config.domain_name()?;
        let suffix = domain
            .to_ascii()
            .trim_end_matches('.')
            .split('.')
            .map(str::to_string)
            .collect();
        Ok(DnsHandler {
            replica,
            domain,
            suffix,
            ttl: config.ttl,
            forward: config.forward.clone(),
        })
    }

    /// Asks the upstream servers in turn; their answer, or `None`.
    async fn forwarded(&self, request: &Request) -> Option<hickory_proto::op::Message> {
        use hickory_proto::op::{Message, Query};
        let info = request.request_info().ok()?;
        let mut m = Message::new();
        m.set_id(request.header().id())
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(request.header().recursion_desired())
            .add_query(Query::query(
                info.query.name().into(),
                info.query.query_type(),
            ));
        let bytes = m.to_vec().ok()?;
        for upstream in &self.forward {
            let bind: SocketAddr = if upstream.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
                continue;
            };
            if sock.send_to(&bytes, upstream).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            let got = tokio::time::timeout(FORWARD_TIMEOUT, sock.recv_from(&mut buf)).await;
            if let Ok(Ok((n, from))) = got {
                if from == *upstream {
                    if let Ok(reply) = Message::from_vec(&buf[..n]) {
                        if reply.id() == m.id() {
                            return Some(reply);
                        }
                    }
                }
            }
        }
        None
    }
}

/// How long an upstream server has to answer a forwarded question.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a query asks for, parsed from its name.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    Service { name: String, tag: Option<String> },
    Alloc(String),
    Node(String),
}

fn parse(name: &str, suffix: &[String]) -> Option<Ask> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = name.split('.').collect();
    let cut = labels.len().checked_sub(suffix.len())?;
    if labels[cut..].iter().zip(suffix).any(|(a, b)| a != b) {
        return None;
    }
    match &labels[..cut] {
        [svc, proto, "service"] if svc.starts_with('_') && proto.starts_with('_') => {
            Some(Ask::Service {
                name: svc[1..].to_string(),
                tag: None,
            })
        }
        [svc, "service"] => Some(Ask::Service {
            name: svc.to_string(),
            tag: None,
        }),
        [tag, svc, "service"] => Some(Ask::Service {
            name: svc.to_string(),
            tag: Some(tag.to_string()),
        }),
        [alloc, "alloc"] => Some(Ask::Alloc(alloc.to_string())),
        [node, "node"] => Some(Ask::Node(node.to_string())),
        _ => None,
    }
}

fn address_record(name: &Name, ip: IpAddr, qtype: RecordType, ttl: u32) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY | RecordType::SRV) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// The answer and additional records for a query, or `None` for a name that
/// does not exist.
fn answer(
    h: &DnsHandler,
    state: &ClusterState,
    qname: &Name,
    qtype: RecordType,
) -> Option<(Vec<Record>, Vec<Record>)> {
    let ttl = h.ttl;
    let ask = parse(&qname.to_ascii(), &h.suffix)?;
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
                        let target =
                            Name::from_ascii(format!("{}.alloc.{}", i.alloc, h.domain)).ok()?;
                        answers.push(Record::from_rdata(
                            qname.clone(),
                            ttl,
                            RData::SRV(SRV::new(1, 1, i.port, target.clone())),
                        ));
                        if let Ok(ip) = i.address.parse::<IpAddr>() {
                            extra.extend(address_record(&target, ip, RecordType::SRV, ttl));
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
                            .filter_map(|ip| address_record(qname, ip, qtype, ttl)),
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
                answers.extend(address_record(qname, ip, qtype, ttl));
            }
        }
        Ask::Node(id) => {
            let n = state
                .nodes
                .values()
                .find(|n| n.id().eq_ignore_ascii_case(&id))?;
            if let Ok(ip) = n.info.host_ip.parse() {
                answers.extend(address_record(qname, ip, qtype, ttl));
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
        if !self.domain.zone_of(&qname) {
            if !self.forward.is_empty() {
                if let Some(reply) = self.forwarded(request).await {
                    let mut h = Header::response_from_request(request.header());
                    h.set_response_code(reply.response_code());
                    h.set_recursion_available(reply.recursion_available());
                    let msg = builder.build(
                        h,
                        reply.answers().iter(),
                        reply.name_servers().iter(),
                        [],
                        reply.additionals().iter(),
                    );
                    return response
                        .send_response(msg)
                        .await
                        .unwrap_or_else(|_| h.into());
                }
                let h = refuse(ResponseCode::ServFail);
                let msg = builder.build_no_records(h);
                return response
                    .send_response(msg)
                    .await
                    .unwrap_or_else(|_| h.into());
            }
            let h = refuse(ResponseCode::Refused);
            let msg = builder.build_no_records(h);
            return response
                .send_response(msg)
                .await
                .unwrap_or_else(|_| h.into());
        }
        let state = self.replica.current();
        match answer(self, &state, &qname, qtype) {
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

/// Serves DNS with `handler` on `udp` and `tcp` (already bound) until
/// `shutdown` turns true.
pub async fn serve(
    handler: DnsHandler,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut server = hickory_server::ServerFuture::new(handler);
    server.register_socket_std(udp)?;
    server.register_listener_std(tcp, std::time::Duration::from_secs(5))?;
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = server.shutdown_gracefully().await;
    Ok(())
}

/// Binds DNS's UDP and TCP sockets on `addr` (the same port for both).
pub fn bind(addr: SocketAddr) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    // With port 0 the free UDP port may be taken for TCP: try a few.
    let mut tries = if addr.port() == 0 { 20 } else { 1 };
    let (udp, tcp) = loop {
        let udp = std::net::UdpSocket::bind(addr)?;
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(tcp) => break (udp, tcp),
            Err(e) if tries <= 1 => return Err(e),
            Err(_) => tries -= 1,
        }
    };
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
        let orion = ["orion".to_string()];
        let parse = |n: &str| super::parse(n, &orion);
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
        let deep = ["dc1".to_string(), "corp".to_string()];
        assert_eq!(
            super::parse("web.service.dc1.corp.", &deep),
            Some(svc("web", None))
        );
        assert_eq!(super::parse("web.service.orion.", &deep), None);
        assert_eq!(super::parse("corp.", &deep), None);
    }
}
