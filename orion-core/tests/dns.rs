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
