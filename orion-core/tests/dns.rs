//! DNS on a node over the fakes: A and SRV records for a service's healthy
//! instances (by tag too), allocation and node names, NXDOMAIN inside the
//! domain, REFUSED outside it — real UDP and TCP queries to the node's port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};

fn query(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut m = Message::new();
    m.set_id(7)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

fn query_tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    use std::io::{Read, Write};
    let mut m = Message::new();
    m.set_id(9)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let bytes = m.to_vec().unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_from_the_catalog() {
    let cluster = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some("n1".into());
            p
        })
        .runtime_shared(Arc::new(FakeRuntime::new()))
        .store(MemStore::new("n1"))
        .config(orion_core::testing::fast_loops())
        .dns("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    cluster.ready(Duration::from_secs(5)).await.unwrap();
    let addr = cluster.dns_addr().unwrap();
    let mut spec = JobSpec::service("api", "orion-test/web:1")
        .port("http", 80)
        .replicas(2)
        .resources(0.1, 32);
    spec.task.service = Some(orion_core::spec::ServiceSpec {
        name: Some("backend".into()),
        tags: vec!["blue".into()],
        meta: Default::default(),
    });
    cluster.submit(spec).await.unwrap();
    cluster
        .wait_running("api", 2, Duration::from_secs(10))
        .await
        .unwrap();

    let a =
        tokio::task::spawn_blocking(move || query(addr, "backend.service.orion.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(a.response_code(), ResponseCode::NoError);
    assert!(a.authoritative());
    let ips: Vec<String> = a
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(ip) => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ips, ["127.0.0.1"], "one host, its address once");

    let srv = tokio::task::spawn_blocking(move || {
        query(addr, "_backend._tcp.service.orion.", RecordType::SRV)
    })
    .await
    .unwrap();
    let ports: Vec<u16> = srv
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some(s.port()),
            _ => None,
        })
        .collect();
    let mut want: Vec<u16> = cluster
        .service("backend")
        .1
        .iter()
        .map(|i| i.port)
        .collect();
    let mut got = ports.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "one SRV per instance, with its host port");
    assert_eq!(
        srv.additionals().len(),
        2,
        "each target's address comes along"
    );

    let blue = tokio::task::spawn_blocking(move || {
        query_tcp(addr, "BLUE.backend.service.orion.", RecordType::A)
    })
    .await
    .unwrap();
    assert_eq!(blue.answers().len(), 1, "by tag, over TCP, any case");
    let green = tokio::task::spawn_blocking(move || {
        query(addr, "green.backend.service.orion.", RecordType::A)
    })
    .await
    .unwrap();
    assert_eq!(
        (green.response_code(), green.answers().len()),
        (ResponseCode::NoError, 0)
    );
    let node = tokio::task::spawn_blocking(move || query(addr, "n1.node.orion.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(node.answers().len(), 1);
    let alloc = cluster.service("backend").1[0].alloc.clone();
    let name = format!("{alloc}.alloc.orion.");
    let by_alloc = tokio::task::spawn_blocking(move || query(addr, &name, RecordType::A))
        .await
        .unwrap();
    assert_eq!(by_alloc.answers().len(), 1);
    let missing =
        tokio::task::spawn_blocking(move || query(addr, "nope.service.orion.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    let outside = tokio::task::spawn_blocking(move || query(addr, "example.com.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(outside.response_code(), ResponseCode::Refused);

    // Stopped: its instances leave the answers.
    cluster.stop_job("api", false).await.unwrap();
    let mut left = usize::MAX;
    for _ in 0..100 {
        let a = tokio::task::spawn_blocking(move || {
            query(addr, "backend.service.orion.", RecordType::A)
        })
        .await
        .unwrap();
        left = a.answers().len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0);
    cluster.shutdown().await;
}

/// Sends raw bytes; the answer's response code, or `None` when the server
/// dropped them (no answer within 300 ms).
fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<ResponseCode> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    sock.send_to(bytes, addr).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(Message::from_vec(&buf[..n]).ok()?.response_code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_flooding_queries_cost_nothing() {
    let cluster = dns_node("n2", orion_core::dns::DnsConfig::default()).await;
    let addr = cluster.dns_addr().unwrap();
    let index = cluster.store().replica().applied_index();
    let ok = move || {
        let m = query(addr, "web.service.orion.", RecordType::A);
        (m.response_code(), m.answers().len())
    };
    let results = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        // Shorter than a header: nothing to answer to.
        out.push(("short", raw(addr, &[0x12, 0x34, 0x01])));
        // A header, then garbage where the question should be.
        let mut garbage = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
        garbage.extend([0xff; 40]);
        out.push(("garbage", raw(addr, &garbage)));
        // Oversized: a valid query padded to 4,000 bytes.
        let mut big = Message::new();
        big.set_id(3)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(
                Name::from_ascii("web.service.orion.").unwrap(),
                RecordType::A,
            ));
        let mut bytes = big.to_vec().unwrap();
        bytes.resize(4000, 0xaa);
        out.push(("oversized", raw(addr, &bytes)));
        // Two questions in one message.
        let mut two = Message::new();
        two.set_id(4)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .add_query(Query::query(
                Name::from_ascii("web.service.orion.").unwrap(),
                RecordType::A,
            ))
            .add_query(Query::query(
                Name::from_ascii("n2.node.orion.").unwrap(),
                RecordType::A,
            ));
        out.push(("two questions", raw(addr, &two.to_vec().unwrap())));
        // An UPDATE, not a query.
        let mut upd = Message::new();
        upd.set_id(5)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Update)
            .add_query(Query::query(
                Name::from_ascii("service.orion.").unwrap(),
                RecordType::SOA,
            ));
        out.push(("update", raw(addr, &upd.to_vec().unwrap())));
        out
    })
    .await
    .unwrap();
    let want: &[(&str, &[Option<ResponseCode>])] = &[
        ("short", &[None]),
        ("garbage", &[None, Some(ResponseCode::FormErr)]),
        (
            "oversized",
            &[
                None,
                Some(ResponseCode::FormErr),
                Some(ResponseCode::NoError),
            ],
        ),
        ("two questions", &[None, Some(ResponseCode::FormErr)]),
        (
            "update",
            &[Some(ResponseCode::NotImp), Some(ResponseCode::Refused)],
        ),
    ];
    for ((what, got), (_, allowed)) in results.iter().zip(want) {
        assert!(
            allowed.contains(got),
            "{what}: {got:?}, want one of {allowed:?}"
        );
    }
    assert_eq!(
        tokio::task::spawn_blocking(ok).await.unwrap(),
        (ResponseCode::NoError, 1)
    );

    // A flood: 8 sockets fire 5,000 queries each without waiting for answers.
    let flood = tokio::task::spawn_blocking(move || {
        let q = {
            let mut m = Message::new();
            m.set_id(6)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .add_query(Query::query(
                    Name::from_ascii("web.service.orion.").unwrap(),
                    RecordType::A,
                ));
            m.to_vec().unwrap()
        };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    for _ in 0..5000 {
                        let _ = s.send_to(&q, addr);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    flood.await.unwrap();
    // Still answering (a query that meets a full socket buffer is dropped, as
    // UDP may: a client asks again), and nothing was written by any of it.
    let after = tokio::task::spawn_blocking(move || {
        (0..5).find_map(|_| {
            let bytes = {
                let mut m = Message::new();
                m.set_id(8)
                    .set_message_type(MessageType::Query)
                    .set_op_code(OpCode::Query)
                    .add_query(Query::query(
                        Name::from_ascii("web.service.orion.").unwrap(),
                        RecordType::A,
                    ));
                m.to_vec().unwrap()
            };
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            sock.send_to(&bytes, addr).unwrap();
            let mut buf = [0u8; 4096];
            let (n, _) = sock.recv_from(&mut buf).ok()?;
            let m = Message::from_vec(&buf[..n]).ok()?;
            Some((m.response_code(), m.answers().len()))
        })
    })
    .await
    .unwrap();
    assert_eq!(after, Some((ResponseCode::NoError, 1)));
    assert!(cluster.runtime_health().is_none());
    assert_eq!(cluster.store().replica().applied_index(), index);
    cluster.shutdown().await;
}

async fn dns_node(name: &str, config: orion_core::dns::DnsConfig) -> Cluster {
    let cluster = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some(name.into());
            p
        })
        .runtime_shared(Arc::new(FakeRuntime::new()))
        .store(MemStore::new(name))
        .config(orion_core::testing::fast_loops())
        .dns("127.0.0.1:0".parse().unwrap())
        .dns_config(config)
        .start()
        .await
        .unwrap();
    cluster.ready(Duration::from_secs(5)).await.unwrap();
    cluster
        .submit(
            JobSpec::service("web", "orion-test/web:1")
                .port("http", 80)
                .resources(0.1, 32),
        )
        .await
        .unwrap();
    cluster
        .wait_running("web", 1, Duration::from_secs(10))
        .await
        .unwrap();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_domain_and_ttl_are_configurable_and_other_names_go_upstream_only_when_asked() {
    use orion_core::dns::DnsConfig;
    // Upstream: a node with the defaults (domain orion., TTL 0).
    let upstream = dns_node("up", DnsConfig::default()).await;
    let up = upstream.dns_addr().unwrap();
    let ttl0 = tokio::task::spawn_blocking(move || query(up, "web.service.orion.", RecordType::A))
        .await
        .unwrap();
    assert_eq!(ttl0.answers()[0].ttl(), 0, "TTL 0 by default");
    // This node: its own domain and TTL, and the upstream for the rest.
    let node = dns_node(
        "dc",
        DnsConfig {
            domain: "dc1.corp".into(),
            ttl: 7,
            forward: vec![up],
        },
    )
    .await;
    let addr = node.dns_addr().unwrap();
    let own =
        tokio::task::spawn_blocking(move || query(addr, "web.service.dc1.corp.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(own.response_code(), ResponseCode::NoError);
    assert_eq!((own.answers().len(), own.answers()[0].ttl()), (1, 7));
    let srv = tokio::task::spawn_blocking(move || {
        query(addr, "_web._tcp.service.dc1.corp.", RecordType::SRV)
    })
    .await
    .unwrap();
    match srv.answers()[0].data() {
        RData::SRV(s) => assert!(s.target().to_ascii().ends_with(".alloc.dc1.corp."), "{s:?}"),
        other => panic!("{other:?}"),
    }
    let missing =
        tokio::task::spawn_blocking(move || query(addr, "nope.service.dc1.corp.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    // Outside the domain: asked upstream, its answer relayed.
    let relayed =
        tokio::task::spawn_blocking(move || query(addr, "web.service.orion.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(relayed.response_code(), ResponseCode::NoError);
    assert_eq!(relayed.answers().len(), 1, "{relayed:?}");
    let unknown_up =
        tokio::task::spawn_blocking(move || query(addr, "nope.service.orion.", RecordType::A))
            .await
            .unwrap();
    assert_eq!(unknown_up.response_code(), ResponseCode::NXDomain);
    // A domain that is not a name is refused at start, naming the field.
    let bad = Cluster::builder()
        .runtime(FakeRuntime::new())
        .store(MemStore::new("bad"))
        .dns("127.0.0.1:0".parse().unwrap())
        .dns_config(DnsConfig {
            domain: ".".into(),
            ..Default::default()
        })
        .start()
        .await;
    let Err(err) = bad else {
        panic!("the root as the domain is refused")
    };
    let err = err.to_string();
    assert!(err.contains("dns.domain"), "{err}");
    node.shutdown().await;
    upstream.shutdown().await;
}
