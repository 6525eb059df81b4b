use super::*;

const POD: [u8; 4] = [198, 18, 0, 2];
const NODE: [u8; 4] = [198, 19, 0, 1];
const EXT: [u8; 4] = [198, 19, 9, 9];
const SVC: [u8; 4] = [198, 18, 200, 1];

/// An IPv4 TCP segment with the given TTL, checksums, IP id and flags.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: [u8; 4],
    sp: u16,
    dst: [u8; 4],
    dp: u16,
    ttl: u8,
    sums: (u16, u16),
    id: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, (id >> 8) as u8, id as u8, 0x40, 0, ttl, 6];
    p.extend_from_slice(&sums.0.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sp.to_be_bytes());
    p.extend_from_slice(&dp.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff]);
    p.extend_from_slice(&sums.1.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}

fn seg(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, id: u16, flags: u8) -> Vec<u8> {
    tcp(src, sp, dst, dp, 64, (1, 2), id, flags, b"")
}

fn data(id: u16, payload: &[u8]) -> Vec<u8> {
    tcp(POD, 40000, EXT, 80, 64, (0x1234, 0xaaaa), id, 0x18, payload)
}

fn view() -> NodeView {
    NodeView::new(NodeViewConfig::default()).expect("on")
}

fn flow(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Flow {
    Flow {
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        sport: sp,
        dport: dp,
        proto: 6,
    }
}

#[test]
fn a_copy_on_another_interface_is_dropped_even_routed_and_offloaded() {
    let mut v = view();
    let p = data(7, b"GET / HTTP/1.1\r\n");
    assert_eq!(
        v.observe(1.0, 5, &p),
        Verdict::Count,
        "the first copy counts"
    );
    // The bridge's copy: same packet, another interface.
    assert_eq!(v.observe(1.000_01, 3, &p), Verdict::Duplicate);
    // A routed hop lowered the TTL (and so the header checksum); the
    // other side of a veth finished the transport checksum.
    let routed = tcp(
        POD,
        40000,
        EXT,
        80,
        63,
        (0x1334, 0x5151),
        7,
        0x18,
        b"GET / HTTP/1.1\r\n",
    );
    assert_eq!(v.observe(1.000_02, 2, &routed), Verdict::Duplicate);
    assert_eq!(v.stats().duplicates, 2);
    assert!(v.folds().is_empty());
}

#[test]
fn retransmissions_and_late_or_different_packets_are_kept() {
    let mut v = view();
    let p = data(7, b"data");
    assert_eq!(v.observe(1.0, 5, &p), Verdict::Count);
    // The same bytes again on the same interface: a retransmission.
    assert_eq!(v.observe(1.0001, 5, &p), Verdict::Count);
    // Beyond the window on another interface: another packet.
    assert_eq!(v.observe(2.0, 3, &p), Verdict::Count);
    // Another IP id or payload is another packet.
    assert_eq!(v.observe(2.0, 4, &data(8, b"data")), Verdict::Count);
    assert_eq!(v.observe(2.0, 4, &data(7, b"datb")), Verdict::Count);
    // Not IP, or truncated: always counted.
    assert_eq!(v.observe(2.0, 1, &[0x00, 1, 2]), Verdict::Count);
    assert_eq!(v.observe(2.0, 2, &[0x00, 1, 2]), Verdict::Count);
    assert_eq!(v.observe(2.0, 2, &[0x45, 0, 0]), Verdict::Count);
    assert_eq!(*v.stats(), NodeViewStats::default());
}

#[test]
fn ipv6_copies_ignore_the_hop_limit() {
    let mut v = view();
    let mut p = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    p.extend_from_slice(&[0xfd; 32]);
    p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0xbe, 0xef]);
    assert_eq!(v.observe(1.0, 1, &p), Verdict::Count);
    let mut hop = p.clone();
    hop[7] = 63;
    hop[46] = 0;
    hop[47] = 0;
    assert_eq!(v.observe(1.0, 2, &hop), Verdict::Duplicate);
}

#[test]
fn masqueraded_connection_counts_under_the_pod_address_only() {
    let mut v = view();
    let (veth, br, uplink) = (5, 3, 2);
    // SYN: the pod's veth, the bridge, then the uplink after SNAT.
    let syn = seg(POD, 40000, EXT, 80, 1, 0x02);
    assert_eq!(v.observe(1.0, veth, &syn), Verdict::Count);
    assert_eq!(v.observe(1.000_001, br, &syn), Verdict::Duplicate);
    let snat = seg(NODE, 61000, EXT, 80, 1, 0x02);
    assert_eq!(v.observe(1.000_002, uplink, &snat), Verdict::NatTwin);
    assert!(
        v.folds().is_empty(),
        "the pod view came first: nothing to fold"
    );
    // SYN-ACK: arrives on the uplink under the node address (a known
    // twin now), then is un-SNATed onto the bridge and the veth.
    let sa_node = seg(EXT, 80, NODE, 61000, 0, 0x12);
    assert_eq!(v.observe(1.01, uplink, &sa_node), Verdict::NatTwin);
    let sa_pod = seg(EXT, 80, POD, 40000, 0, 0x12);
    assert_eq!(v.observe(1.010_001, br, &sa_pod), Verdict::Count);
    assert_eq!(v.observe(1.010_002, veth, &sa_pod), Verdict::Duplicate);
    let s = v.stats();
    assert_eq!(
        (s.nat_twins_folded, s.nat_twin_packets, s.duplicates),
        (1, 2, 2)
    );
}

#[test]
fn a_twin_learned_from_a_reply_first_is_folded_as_well() {
    // osprey started mid-connection: the first pair it sees is a reply.
    let mut v = view();
    let on_uplink = seg(EXT, 80, NODE, 61000, 9, 0x10);
    assert_eq!(v.observe(1.0, 2, &on_uplink), Verdict::Count);
    let on_bridge = seg(EXT, 80, POD, 40000, 9, 0x10);
    assert_eq!(v.observe(1.000_001, 3, &on_bridge), Verdict::Count);
    // The uplink view may have opened a connection: it is discarded.
    assert_eq!(
        v.folds(),
        [Fold {
            flow: flow(EXT, 80, NODE, 61000),
            outer: None
        }]
    );
    // From now on the node view is a twin in both directions.
    let out = seg(NODE, 61000, EXT, 80, 10, 0x10);
    assert_eq!(v.observe(1.1, 2, &out), Verdict::NatTwin);
}

#[test]
fn a_node_port_counts_under_the_pod_it_reaches() {
    let mut v = view();
    // The client's SYN reaches the node's port, then is DNATed to the pod.
    let to_node = seg(EXT, 50000, NODE, 30080, 3, 0x02);
    assert_eq!(v.observe(1.0, 2, &to_node), Verdict::Count);
    let to_pod = seg(EXT, 50000, POD, 8080, 3, 0x02);
    assert_eq!(v.observe(1.000_001, 3, &to_pod), Verdict::Count);
    assert_eq!(v.folds().len(), 1);
    assert_eq!(v.folds()[0].flow, flow(EXT, 50000, NODE, 30080));
    assert_eq!(v.observe(1.000_002, 5, &to_pod), Verdict::Duplicate);
    // The pod's answer, then its un-DNATed twin on the uplink.
    let from_pod = seg(POD, 8080, EXT, 50000, 4, 0x12);
    assert_eq!(v.observe(1.01, 5, &from_pod), Verdict::Count);
    let from_node = seg(NODE, 30080, EXT, 50000, 4, 0x12);
    assert_eq!(v.observe(1.010_002, 2, &from_node), Verdict::NatTwin);
    assert_eq!(v.stats().nat_twins_folded, 1);
}

#[test]
fn a_masquerading_node_port_keeps_the_pods_view_both_ways() {
    let mut v = view();
    // Both ends translated: the SYN keeps its later view, the SYN-ACK
    // its earlier (each the pod's).
    let syn_node = seg(EXT, 50000, NODE, 30080, 3, 0x02);
    let syn_pod = seg(NODE, 62000, POD, 8080, 3, 0x02);
    assert_eq!(v.observe(1.0, 2, &syn_node), Verdict::Count);
    assert_eq!(v.observe(1.000_001, 3, &syn_pod), Verdict::Count);
    assert_eq!(v.folds().len(), 1);
    let sa_pod = seg(POD, 8080, NODE, 62000, 5, 0x12);
    let sa_node = seg(NODE, 30080, EXT, 50000, 5, 0x12);
    assert_eq!(v.observe(1.01, 3, &sa_pod), Verdict::Count);
    assert_eq!(v.observe(1.010_001, 2, &sa_node), Verdict::NatTwin);
}

#[test]
fn a_service_between_pods_counts_under_the_pod_that_answers() {
    let mut v = view();
    let other = [198, 18, 0, 3];
    let via_svc = seg(POD, 40000, SVC, 80, 11, 0x02);
    let to_pod = seg(POD, 40000, other, 8080, 11, 0x02);
    assert_eq!(v.observe(1.0, 5, &via_svc), Verdict::Count);
    assert_eq!(v.observe(1.000_001, 3, &via_svc), Verdict::Duplicate);
    assert_eq!(v.observe(1.000_002, 3, &to_pod), Verdict::Count);
    assert_eq!(v.folds()[0].flow, flow(POD, 40000, SVC, 80));
    // The answer on its way back is un-DNATed: a twin.
    let answer = seg(other, 8080, POD, 40000, 12, 0x12);
    let answer_svc = seg(SVC, 80, POD, 40000, 12, 0x12);
    assert_eq!(v.observe(1.01, 6, &answer), Verdict::Count);
    assert_eq!(v.observe(1.010_001, 3, &answer_svc), Verdict::NatTwin);
    assert_eq!(v.observe(1.010_002, 5, &answer_svc), Verdict::NatTwin);
}

#[test]
fn a_counted_flow_is_never_folded() {
    let mut v = view();
    // A connection's pod view is established as canonical...
    assert_eq!(
        v.observe(1.0, 5, &seg(POD, 40000, EXT, 80, 1, 0x02)),
        Verdict::Count
    );
    assert_eq!(
        v.observe(1.000_001, 2, &seg(NODE, 61000, EXT, 80, 1, 0x02)),
        Verdict::NatTwin
    );
    // ...so a later packet of it whose content shows up under another
    // destination (which would otherwise read as DNAT) does not fold it.
    assert_eq!(
        v.observe(2.0, 5, &seg(POD, 40000, EXT, 80, 2, 0x10)),
        Verdict::Count
    );
    assert_eq!(
        v.observe(2.000_001, 3, &seg(POD, 40000, SVC, 80, 2, 0x10)),
        Verdict::NatTwin
    );
    assert!(v.folds().is_empty());
}

/// `inner` in VXLAN over UDP between two nodes.
fn vxlan(inner: &[u8], dport: u16) -> Vec<u8> {
    let mut udp_payload = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    udp_payload.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    udp_payload.extend_from_slice(inner);
    let mut p = vec![0x45, 0, 0, 0, 0, 9, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&NODE);
    p.extend_from_slice(&[198, 19, 0, 2]);
    p.extend_from_slice(&41000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&((8 + udp_payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&udp_payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p
}

#[test]
fn an_overlays_encapsulated_copy_is_dropped_in_either_order() {
    let underlay = Flow {
        src: IpAddr::from(NODE),
        dst: IpAddr::from([198, 19, 0, 2]),
        sport: 41000,
        dport: 8472,
        proto: 17,
    };
    // Leaving: the pod's packet, then the overlay device, then the
    // encapsulated datagram on the uplink.
    let mut v = view();
    let p = seg(POD, 40000, [198, 18, 1, 7], 80, 1, 0x02);
    assert_eq!(v.observe(1.0, 5, &p), Verdict::Count);
    assert_eq!(v.observe(1.000_001, 7, &p), Verdict::Duplicate);
    assert_eq!(
        v.observe(1.000_002, 2, &vxlan(&p, 8472)),
        Verdict::Duplicate
    );
    // The underlay flow is a copy from now on, whatever it carries.
    let q = seg(POD, 40000, [198, 18, 1, 7], 80, 2, 0x10);
    assert_eq!(v.observe(1.1, 2, &vxlan(&q, 8472)), Verdict::Duplicate);
    assert_eq!(v.stats().overlay_flows_folded, 1);

    // Arriving: the datagram first, then the overlay device's copy,
    // which counts; what the datagram opened is folded.
    let mut v = view();
    assert_eq!(v.observe(1.0, 2, &vxlan(&p, 4789)), Verdict::Count);
    assert_eq!(v.observe(1.000_001, 7, &p), Verdict::Count);
    let u = Flow {
        dport: 4789,
        ..underlay
    };
    assert_eq!(
        v.folds(),
        [
            Fold {
                flow: u,
                outer: None
            },
            Fold {
                flow: flow(POD, 40000, [198, 18, 1, 7], 80),
                outer: Some(u)
            }
        ]
    );
    assert_eq!(v.folds()[1].shard_pair(), (u.src, u.dst));
    assert_eq!(v.observe(1.000_002, 5, &p), Verdict::Duplicate);

    // A connection from this node: its SYN leaves plain first; the answer
    // then arrives encapsulated first, in another underlay flow (the
    // source port follows the inner flow), and is a copy before the engine
    // counts it (the connection is the pod's, not the tunnel's).
    let mut v = view();
    let remote = [198, 18, 1, 7];
    assert_eq!(
        v.observe(1.0, 5, &seg(POD, 40000, remote, 80, 1, 0x02)),
        Verdict::Count
    );
    assert_eq!(
        v.observe(
            1.000_001,
            2,
            &vxlan(&seg(POD, 40000, remote, 80, 1, 0x02), 4789)
        ),
        Verdict::Duplicate
    );
    let answer = seg(remote, 80, POD, 40000, 2, 0x12);
    let mut back = vxlan(&answer, 4789);
    back[20] = 0x99; // another underlay source port
    assert_eq!(v.observe(1.01, 2, &back), Verdict::Duplicate);
    assert_eq!(v.observe(1.010_001, 7, &answer), Verdict::Count);
    assert!(v.folds().is_empty(), "the pod's connection is not folded");
    assert_eq!(v.stats().overlay_flows_folded, 2);
}

#[test]
fn twins_are_bounded_and_idle_ones_expire_first() {
    let mut v = NodeView::new(NodeViewConfig {
        max_twins: 8,
        ..NodeViewConfig::default()
    })
    .expect("on");
    for i in 0..100u16 {
        let t = f64::from(i);
        v.observe(t, 5, &seg(POD, 1000 + i, EXT, 80, i, 0x02));
        v.observe(t + 0.000_001, 2, &seg(NODE, 2000 + i, EXT, 80, i, 0x02));
        assert!(v.known.len() <= 8);
    }
    assert_eq!(v.stats().nat_twins_folded, 100);
}

#[test]
fn off_when_no_slots_and_the_sll2_interface_index_is_read() {
    assert!(NodeView::new(NodeViewConfig {
        slots: 0,
        ..NodeViewConfig::default()
    })
    .is_none());
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 42];
    sll2.extend_from_slice(&[0; 12]);
    assert_eq!(sll2_ifindex(&sll2), Some(42));
    assert_eq!(sll2_ifindex(&sll2[..6]), None);
}

#[test]
fn icmp_echo_through_snat_counts_once() {
    fn echo(src: [u8; 4], dst: [u8; 4], ty: u8, ident: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[ty, 0, 0, 0]);
        p.extend_from_slice(&ident.to_be_bytes());
        p.extend_from_slice(&[0, 1]);
        p
    }
    let mut v = view();
    assert_eq!(v.observe(1.0, 5, &echo(POD, EXT, 8, 77)), Verdict::Count);
    // NAT rewrote the identifier too.
    assert_eq!(
        v.observe(1.000_001, 2, &echo(NODE, EXT, 8, 1)),
        Verdict::NatTwin
    );
    assert_eq!(v.observe(1.01, 2, &echo(EXT, NODE, 0, 1)), Verdict::NatTwin);
    assert_eq!(
        v.observe(1.010_001, 5, &echo(EXT, POD, 0, 77)),
        Verdict::Count
    );
    // Two pings with another identifier are not copies of each other.
    assert_eq!(v.observe(2.0, 5, &echo(POD, EXT, 8, 78)), Verdict::Count);
    assert_eq!(
        v.observe(2.000_001, 6, &echo(POD, EXT, 8, 79)),
        Verdict::Count
    );
}

#[test]
fn nat_twins_of_later_fragments_are_judged_alone_and_not_remembered() {
    /// A later fragment (offset 185 * 8) of a UDP datagram.
    fn frag(src: [u8; 4], dst: [u8; 4], id: u16) -> Vec<u8> {
        let mut p = vec![
            0x45,
            0,
            0,
            28,
            (id >> 8) as u8,
            id as u8,
            0,
            185,
            64,
            17,
            0,
            0,
        ];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        p
    }
    let mut v = view();
    assert_eq!(v.observe(1.0, 5, &frag(POD, EXT, 40)), Verdict::Count);
    assert_eq!(
        v.observe(1.000_001, 2, &frag(NODE, EXT, 40)),
        Verdict::NatTwin
    );
    // The node's own fragments to the same host are not twins.
    assert_eq!(v.observe(1.1, 2, &frag(NODE, EXT, 41)), Verdict::Count);
    assert_eq!(v.stats().nat_twins_folded, 0);
}
