//! The guards no rule can talk its way past: the allowlist and the
//! circuit breaker. (Whether a source's address is real is the evidence
//! stage's business: `conn/verify.rs` and `evidence/`.)

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Ranges osprey never acts on. Blocking the node's own addresses, its
/// gateway, its resolvers or the API server would cut the node (and osprey
/// with it) off; loopback and link-local carry the node's own plumbing
/// (kubelet probes, cloud metadata).
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    fixed: Vec<IpNet>,
    discovered: Vec<IpNet>,
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

impl Allowlist {
    /// The fixed part: `always_allowed()` plus the configured ranges.
    pub fn new(configured: &[IpNet]) -> Allowlist {
        let mut fixed = always_allowed();
        fixed.extend_from_slice(configured);
        Allowlist {
            fixed,
            discovered: Vec::new(),
        }
    }

    /// The ranges known without looking at the host (what rules are
    /// checked against at load).
    pub fn fixed(&self) -> &[IpNet] {
        &self.fixed
    }

    /// Looks up the node's addresses, default gateways, resolvers and the
    /// Kubernetes API server again (addresses change: DHCP, new pods'
    /// gateways). Unreadable sources are skipped: a missing resolv.conf
    /// must not stop enforcement elsewhere.
    pub fn discover(&mut self, api_servers: &[IpAddr]) {
        let mut found: Vec<IpAddr> = Vec::new();
        if let Ok(ifs) = if_addrs::get_if_addrs() {
            found.extend(ifs.iter().map(|i| i.ip()));
        }
        found.extend(default_gateways());
        if let Ok(text) = std::fs::read_to_string("/etc/resolv.conf") {
            found.extend(resolvers(&text));
        }
        if let Some(h) = std::env::var("KUBERNETES_SERVICE_HOST")
            .ok()
            .and_then(|h| h.parse::<IpAddr>().ok())
        {
            found.push(h);
        }
        found.extend_from_slice(api_servers);
        found.sort();
        found.dedup();
        self.discovered = found.into_iter().map(IpNet::from).collect();
    }

    /// The allowlisted range a target touches, if any: a block of a CIDR
    /// that merely contains an allowlisted address is refused too.
    pub fn covering(&self, target: &IpNet) -> Option<IpNet> {
        self.fixed
            .iter()
            .chain(&self.discovered)
            .find(|a| a.contains(target) || target.contains(*a))
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
        assert!(a.discovered.iter().any(|n| n.addr().is_loopback()));
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
