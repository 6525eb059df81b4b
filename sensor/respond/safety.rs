//! The guards no rule can talk its way past: the allowlist and the
//! circuit breaker. (Whether a source's address is real is the evidence
//! stage's business: `conn/verify.rs` and `evidence/`.)

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;
use tokio::sync::watch;

/// Why a range is on the allowlist: the softened action's message names
/// it, so an operator can tell "the API server" from "a range I added".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// Loopback, link-local, multicast and friends.
    Builtin,
    /// `respond.allowlist`.
    Configured,
    /// One of this host's interface addresses.
    HostAddress,
    /// A default gateway of this host.
    Gateway,
    /// A nameserver of a resolv.conf osprey reads.
    Resolver,
    /// `KUBERNETES_SERVICE_HOST` or the kubeconfig's server.
    ApiService,
    /// An endpoint of the `default/kubernetes` EndpointSlices.
    ApiServer,
    /// A node's InternalIP.
    Node,
    /// A kube-dns/CoreDNS pod or the kube-dns Service.
    ClusterDns,
    /// An address of the platform URL's host.
    Platform,
    /// An address of a webhook's host.
    Webhook,
}

impl Source {
    /// The metric label (`osprey_allowlist_entries{source}`).
    pub fn label(self) -> &'static str {
        match self {
            Source::Builtin => "builtin",
            Source::Configured => "configured",
            Source::HostAddress => "host_address",
            Source::Gateway => "gateway",
            Source::Resolver => "resolver",
            Source::ApiService => "api_service",
            Source::ApiServer => "api_server",
            Source::Node => "node",
            Source::ClusterDns => "cluster_dns",
            Source::Platform => "platform",
            Source::Webhook => "webhook",
        }
    }

    /// What a person reads in a softened action.
    fn describe(self) -> &'static str {
        match self {
            Source::Builtin => "always allowed",
            Source::Configured => "configured",
            Source::HostAddress => "this host's address",
            Source::Gateway => "gateway",
            Source::Resolver => "resolver",
            Source::ApiService => "api server service",
            Source::ApiServer => "api server endpoint",
            Source::Node => "cluster node",
            Source::ClusterDns => "cluster DNS",
            Source::Platform => "platform host",
            Source::Webhook => "webhook host",
        }
    }
}

/// One allowlisted range and why it is there. Displays as
/// `api server endpoint 198.18.0.5/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub net: IpNet,
    pub source: Source,
}

impl Entry {
    pub fn new(net: IpNet, source: Source) -> Entry {
        Entry { net, source }
    }

    pub fn addr(addr: IpAddr, source: Source) -> Entry {
        Entry::new(IpNet::from(addr.to_canonical()), source)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.source.describe(), self.net)
    }
}

/// What the allowlist discovery task and a SIGHUP reload publish to the
/// responder: the configured ranges and every discovered entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub configured: Vec<IpNet>,
    pub discovered: Vec<Entry>,
}

/// Ranges osprey never acts on. Blocking the node's own addresses, its
/// gateway, its resolvers, the API server, the cluster's nodes and DNS or
/// the platform would cut the node (and osprey with it) off; loopback and
/// link-local carry the node's own plumbing (kubelet probes, cloud
/// metadata).
///
/// Three parts: the fixed ranges (built in and configured), what
/// [`Allowlist::discover`] reads from this host, and what the discovery
/// task (`respond::discover`) publishes through a watch channel that
/// [`Allowlist::refresh`] picks up — the cluster's API server endpoints,
/// nodes and DNS, the host's resolvers, the platform and webhook hosts,
/// and, after a SIGHUP, the configured ranges again.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    fixed: Vec<Entry>,
    host: Vec<Entry>,
    published: Vec<Entry>,
    feed: Option<watch::Receiver<Published>>,
}

/// Loopback, link-local, unspecified and multicast: never a real attacker
/// and always somebody's plumbing.
pub fn always_allowed() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "169.254.0.0/16",
        "0.0.0.0/32",
        "224.0.0.0/4",
        "255.255.255.255/32",
        "::1/128",
        "fe80::/10",
        "::/128",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

fn fixed_entries(configured: &[IpNet]) -> Vec<Entry> {
    let mut fixed: Vec<Entry> = always_allowed()
        .into_iter()
        .map(|n| Entry::new(n, Source::Builtin))
        .collect();
    fixed.extend(
        configured
            .iter()
            .map(|n| Entry::new(*n, Source::Configured)),
    );
    fixed
}

impl Allowlist {
    /// The fixed part: `always_allowed()` plus the configured ranges.
    pub fn new(configured: &[IpNet]) -> Allowlist {
        Allowlist {
            fixed: fixed_entries(configured),
            ..Allowlist::default()
        }
    }

    /// Follows what the discovery task and SIGHUP reloads publish; what
    /// `feed` holds now is taken at once.
    pub fn follow(mut self, feed: watch::Receiver<Published>) -> Allowlist {
        self.feed = Some(feed);
        self.take_published();
        self
    }

    /// Picks up a newer publication, if any (cheap when there is none:
    /// the responder calls it every housekeeping tick). True if the
    /// allowlist changed.
    pub fn refresh(&mut self) -> bool {
        match &self.feed {
            Some(f) if f.has_changed().unwrap_or(false) => {
                self.take_published();
                true
            }
            _ => false,
        }
    }

    fn take_published(&mut self) {
        let Some(feed) = self.feed.as_mut() else {
            return;
        };
        let p = feed.borrow_and_update().clone();
        self.fixed = fixed_entries(&p.configured);
        self.published = p.discovered;
    }

    /// The ranges known without looking at the host (what rules are
    /// checked against at load).
    pub fn fixed(&self) -> Vec<IpNet> {
        self.fixed.iter().map(|e| e.net).collect()
    }

    /// Every entry, fixed, host and published.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.fixed.iter().chain(&self.host).chain(&self.published)
    }

    /// Looks up the node's addresses, default gateways, resolvers and the
    /// Kubernetes API server again (addresses change: DHCP, new pods'
    /// gateways). Unreadable sources are skipped: a missing resolv.conf
    /// must not stop enforcement elsewhere.
    pub fn discover(&mut self, api_servers: &[IpAddr]) {
        let mut found: Vec<Entry> = Vec::new();
        if let Ok(ifs) = if_addrs::get_if_addrs() {
            found.extend(ifs.iter().map(|i| Entry::addr(i.ip(), Source::HostAddress)));
        }
        found.extend(
            default_gateways()
                .into_iter()
                .map(|a| Entry::addr(a, Source::Gateway)),
        );
        if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
            found.extend(
                resolvers(&text)
                    .into_iter()
                    .map(|a| Entry::addr(a, Source::Resolver)),
            );
        }
        if let Some(h) = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            found.push(Entry::addr(h, Source::ApiService));
        }
        found.extend(
            api_servers
                .iter()
                .map(|a| Entry::addr(*a, Source::ApiServer)),
        );
        found.sort();
        found.dedup_by_key(|e| e.net);
        self.host = found;
    }

    /// The allowlisted entry a target touches, if any: a block of a CIDR
    /// that merely contains an allowlisted address is refused too.
    pub fn covering(&self, target: &IpNet) -> Option<Entry> {
        self.entries()
            .find(|a| a.net.contains(target) || target.contains(&a.net))
            .copied()
    }
}

/// `nameserver` lines of a resolv.conf.
pub fn resolvers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            // A scoped IPv6 resolver ("fe80::1%eth0") is link-local anyway.
            w.next()?.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The host's upstream resolvers from the resolv.conf files named, in
/// order; missing files are skipped. Loopback nameservers are left out:
/// they are allowlisted anyway, and a `127.0.0.53` stub says only that
/// systemd-resolved forwards elsewhere — to the servers its own
/// `/run/systemd/resolve/resolv.conf` lists, which is why that file is
/// read as well, rather than the stub alone. Every upstream of every file
/// counts: an extra allowlisted resolver costs nothing, a missing one can
/// cut the node's name resolution.
pub fn host_resolvers<P: AsRef<Path>>(paths: &[P]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = paths
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| resolvers(&t))
        .map(|a| a.to_canonical())
        .filter(|a| !a.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn default_gateways() -> Vec<IpAddr> {
    let mut out = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/proc/net/route") {
        out.extend(gateways_v4(&t));
    }
    if let Ok(t) = std::fs::read_to_string("/proc/net/ipv6_route") {
        out.extend(gateways_v6(&t));
    }
    out
}

/// Gateways of /proc/net/route: hex, in the host's (little-endian) order.
pub fn gateways_v4(text: &str) -> Vec<IpAddr> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let gw = l.split_whitespace().nth(2)?;
            let n = u32::from_str_radix(gw, 16).ok().filter(|&n| n != 0)?;
            Some(IpAddr::V4(Ipv4Addr::from(n.swap_bytes())))
        })
        .collect()
}

/// Next hops of /proc/net/ipv6_route (fifth column, 32 hex digits).
pub fn gateways_v6(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let hop = l.split_whitespace().nth(4)?;
            let n = u128::from_str_radix(hop, 16).ok().filter(|&n| n != 0)?;
            Some(IpAddr::V6(Ipv6Addr::from(n)))
        })
        .collect()
}

/// At most `max` enforcement actions per minute; past that, actions are
/// only alerted until the minute's window has room again. A model gone
/// wrong (or an attacker who has learnt to make it fire) must not be able
/// to block half the internet before someone looks.
pub struct Breaker {
    max: usize,
    window: f64,
    /// Times (seconds) of the enforcements admitted within the window.
    admitted: VecDeque<f64>,
    open: bool,
}

/// What the breaker said, and whether that changed its state.
#[derive(Debug, PartialEq, Eq)]
pub enum BreakerVerdict {
    Admit,
    /// Refused; `tripped` on the first refusal after admitting.
    Refuse {
        tripped: bool,
    },
}

impl Breaker {
    pub fn new(max_per_minute: u32) -> Breaker {
        Breaker {
            max: max_per_minute as usize,
            window: 60.0,
            admitted: VecDeque::new(),
            open: false,
        }
    }

    pub fn check(&mut self, now: f64) -> BreakerVerdict {
        while self
            .admitted
            .front()
            .is_some_and(|&t| now - t >= self.window)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() < self.max {
            self.admitted.push_back(now);
            self.open = false;
            BreakerVerdict::Admit
        } else {
            let tripped = !self.open;
            self.open = true;
            BreakerVerdict::Refuse { tripped }
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_covers_fixed_discovered_and_containing_ranges() {
        let mut a = Allowlist::new(&["198.19.0.0/16".parse().unwrap()]);
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(a.covering(&net("127.0.0.53/32")).is_some());
        assert!(a.covering(&net("169.254.169.254/32")).is_some());
        assert!(a.covering(&net("fe80::1/128")).is_some());
        assert!(a.covering(&net("198.19.4.4/32")).is_some());
        // A block of a range that swallows an allowlisted address.
        assert!(a.covering(&net("198.0.0.0/8")).is_some());
        assert!(a.covering(&net("0.0.0.0/0")).is_some());
        assert!(a.covering(&net("198.18.0.9/32")).is_none());
        a.discover(&["198.18.7.7".parse().unwrap()]);
        assert!(a.covering(&net("198.18.7.7/32")).is_some());
        // This host's own addresses are found (loopback at least).
        assert!(a.host.iter().any(|e| e.net.addr().is_loopback()));
    }

    /// Each entry says where it came from, and a softened action's
    /// message carries that; publications replace the configured ranges
    /// (SIGHUP) and the discovered entries, and only when they change.
    #[test]
    fn entries_are_labelled_and_publications_are_followed() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let (tx, rx) = watch::channel(Published {
            configured: vec![net("198.19.0.0/16")],
            discovered: vec![Entry::new(net("198.18.0.5/32"), Source::ApiServer)],
        });
        let mut a = Allowlist::new(&[]).follow(rx);
        let hit = a.covering(&net("198.18.0.5/32")).expect("api server");
        assert_eq!(hit.to_string(), "api server endpoint 198.18.0.5/32");
        assert_eq!(
            a.covering(&net("198.19.3.3/32")).map(|e| e.source),
            Some(Source::Configured)
        );
        assert_eq!(
            a.covering(&net("127.0.0.1/32")).map(|e| e.to_string()),
            Some("always allowed 127.0.0.0/8".into())
        );
        assert!(!a.refresh(), "nothing new was published");
        tx.send_modify(|p| {
            p.configured = vec![net("fd00:1::/64")];
            p.discovered
                .push(Entry::new(net("198.18.9.9/32"), Source::Node));
        });
        assert!(a.refresh());
        assert!(
            a.covering(&net("198.19.3.3/32")).is_none(),
            "old range kept"
        );
        assert_eq!(
            a.covering(&net("fd00:1::7/128")).map(|e| e.source),
            Some(Source::Configured)
        );
        assert_eq!(
            a.covering(&net("198.18.9.9/32")).map(|e| e.to_string()),
            Some("cluster node 198.18.9.9/32".into())
        );
        assert_eq!(a.fixed().len(), always_allowed().len() + 1);
    }

    /// A host behind systemd-resolved has only the 127.0.0.53 stub in
    /// /etc/resolv.conf; its upstreams are in resolved's own file. Both
    /// are read, loopback is left out, a missing file is skipped.
    #[test]
    fn host_resolvers_follow_the_stub_to_systemd_resolved() {
        let dir = std::env::temp_dir().join(format!("osprey-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stub = dir.join("etc-resolv.conf");
        let upstream = dir.join("systemd-resolv.conf");
        std::fs::write(
            &stub,
            "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n",
        )
        .unwrap();
        std::fs::write(
            &upstream,
            "# resolved's upstreams\nnameserver 198.18.53.1\nnameserver fd00:53::1\n",
        )
        .unwrap();
        let missing = dir.join("absent.conf");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            host_resolvers(&[&stub, &missing, &upstream]),
            [ip("198.18.53.1"), ip("fd00:53::1")]
        );
        // The stub alone names no upstream (loopback is allowlisted anyway).
        assert!(host_resolvers(&[&stub]).is_empty());
        // A plain host: its resolv.conf names the upstream directly.
        std::fs::write(&stub, "nameserver 198.18.53.2\nnameserver 198.18.53.1\n").unwrap();
        assert_eq!(
            host_resolvers(&[&stub, &upstream]),
            [ip("198.18.53.1"), ip("198.18.53.2"), ip("fd00:53::1")]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn host_files_parse() {
        let r = resolvers(
            "# x\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nsearch svc\nnameserver bogus\n",
        );
        assert_eq!(
            r,
            [
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        let route = "Iface\tDestination\tGateway \tFlags\n\
                     eth0\t00000000\t0100A8C0\t0003\n\
                     eth0\t0000A8C0\t00000000\t0001\n";
        assert_eq!(
            gateways_v4(route),
            ["192.168.0.1".parse::<IpAddr>().unwrap()]
        );
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n";
        assert_eq!(gateways_v6(v6), ["fe80::1".parse::<IpAddr>().unwrap()]);
    }

    /// Trying to break the breaker: a burst far over the limit, then time
    /// passing in small steps; never more than `max` admitted in any
    /// 60-second window, and it closes again once the window has room.
    #[test]
    fn breaker_never_admits_more_than_max_per_minute() {
        let mut b = Breaker::new(5);
        let t0 = 1_700_000_000.0;
        let mut admitted: Vec<f64> = Vec::new();
        let mut trips = 0;
        for i in 0..2_000u64 {
            let now = t0 + i as f64 * 0.097;
            match b.check(now) {
                BreakerVerdict::Admit => admitted.push(now),
                BreakerVerdict::Refuse { tripped } => trips += usize::from(tripped),
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&u| u - t < 60.0).count();
            assert!(in_window <= 5, "{in_window} admitted within a minute");
        }
        // 2,000 tries over ~194 s: a window's worth per minute, re-opened
        // each minute (each refusal run counted as one trip).
        assert!(
            admitted.len() >= 15 && admitted.len() <= 20,
            "{}",
            admitted.len()
        );
        assert!(trips >= 3, "{trips}");
        let mut zero = Breaker::new(0);
        assert_eq!(zero.check(t0), BreakerVerdict::Refuse { tripped: true });
        assert_eq!(zero.check(t0), BreakerVerdict::Refuse { tripped: false });
    }
}
