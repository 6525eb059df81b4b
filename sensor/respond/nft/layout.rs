//! osprey's table as nftables JSON objects, and the names that tie
//! decisions to sets.
//!
//! ```text
//! table inet osprey {
//!   set block_v4     { type ipv4_addr; flags interval, timeout; }
//!   set block_v6     { type ipv6_addr; flags interval, timeout; }
//!   set ratelimit_v4 { type ipv4_addr; flags interval, timeout; }   (default limit)
//!   set ratelimit_v6 { type ipv6_addr; flags interval, timeout; }
//!   set ratelimit_v4_p100_b200 ...    one pair per other limit, on demand
//!   chain prerouting { type filter hook prerouting priority -300; policy accept;
//!     ip saddr @block_v4 counter drop
//!     ip6 saddr @block_v6 counter drop
//!     ip saddr @ratelimit_v4 meter ratelimit_v4_meter { ip saddr timeout 60s
//!         limit rate over 100/second burst 200 packets } counter drop
//!     ip6 saddr @ratelimit_v6 meter ratelimit_v6_meter { ... } counter drop
//!     ... one pair per other limit
//!   }
//! }
//! ```
//!
//! Every set is an interval set so a CIDR is one element; every element
//! carries its own timeout, so the kernel expires decisions even when
//! osprey is gone. The meters are keyed by source address: a rate-limited
//! /24 limits each of its addresses separately. They are created by their
//! rule (nft 1.0.6 refuses a `meter` onto a set declared beforehand), so
//! rebuilding the chain starts them afresh.

use std::borrow::Cow;
use std::collections::HashSet;

use ipnet::IpNet;
use nftables::expr::{Elem, Expression, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, Element, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{Counter, Drop, Limit, Match, Meter, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::config::NftConfig;
use super::error::NftError;
use crate::respond::RateLimit;

/// The one chain osprey hooks.
pub(crate) const CHAIN: &str = "prerouting";

/// What a set holds: blocked sources, or sources under one rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Block,
    Rate(RateLimit),
}

/// Address family of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Fam {
    V4,
    V6,
}

impl Fam {
    pub(crate) fn of(net: &IpNet) -> Fam {
        match net {
            IpNet::V4(_) => Fam::V4,
            IpNet::V6(_) => Fam::V6,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Fam::V4 => "v4",
            Fam::V6 => "v6",
        }
    }

    fn proto(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }

    fn set_type(self) -> SetType {
        match self {
            Fam::V4 => SetType::Ipv4Addr,
            Fam::V6 => SetType::Ipv6Addr,
        }
    }
}

/// Checks a rate limit is one nft can express: exactly one rate, within
/// nft's 32-bit rate field.
pub(crate) fn check_rate(rl: &RateLimit) -> Result<(), NftError> {
    match (rl.packets_per_sec, rl.bytes_per_sec) {
        (Some(p), None) if p > 0 => Ok(()),
        (None, Some(b)) if b > 0 && b <= u64::from(u32::MAX) => Ok(()),
        _ => Err(NftError::Invalid(format!(
            "a rate limit needs exactly one non-zero rate (bytes below 2^32): {rl:?}"
        ))),
    }
}

/// The set holding `class` for `fam`. Limits other than the default get
/// names derived from the limit (`ratelimit_v4_p100_b200`,
/// `ratelimit_v4_bytes1000000_b2000`), so a restarted osprey finds the
/// same set for the same limit, and `class_of` can read the limit back.
pub(crate) fn set_name(class: &Class, fam: Fam, default: &RateLimit) -> String {
    let f = fam.suffix();
    match class {
        Class::Block => format!("block_{f}"),
        Class::Rate(rl) if rl == default => format!("ratelimit_{f}"),
        Class::Rate(rl) => match (rl.packets_per_sec, rl.bytes_per_sec) {
            (Some(p), _) => format!("ratelimit_{f}_p{p}_b{}", rl.burst),
            (None, b) => format!("ratelimit_{f}_bytes{}_b{}", b.unwrap_or(0), rl.burst),
        },
    }
}

/// The class and family of one of osprey's set names (adoption of a
/// leftover table reads them back); None for anything else.
pub(crate) fn class_of(name: &str, default: &RateLimit) -> Option<(Class, Fam)> {
    let fam_of = |s: &str| match s {
        "v4" => Some(Fam::V4),
        "v6" => Some(Fam::V6),
        _ => None,
    };
    if let Some(f) = name.strip_prefix("block_") {
        return Some((Class::Block, fam_of(f)?));
    }
    let rest = name.strip_prefix("ratelimit_")?;
    let (f, limit) = rest.split_once('_').unwrap_or((rest, ""));
    let fam = fam_of(f)?;
    if limit.is_empty() {
        return Some((Class::Rate(*default), fam));
    }
    let (rate, burst) = limit.split_once("_b")?;
    let burst = burst.parse().ok()?;
    let rl = if let Some(p) = rate.strip_prefix("bytes") {
        RateLimit {
            packets_per_sec: None,
            bytes_per_sec: Some(p.parse().ok()?),
            burst,
        }
    } else {
        RateLimit {
            packets_per_sec: Some(rate.strip_prefix('p')?.parse().ok()?),
            bytes_per_sec: None,
            burst,
        }
    };
    Some((Class::Rate(rl), fam))
}

/// Builds the objects of one configured table.
pub(crate) struct Layout<'c> {
    pub(crate) cfg: &'c NftConfig,
}

impl<'c> Layout<'c> {
    pub(crate) fn table(&self) -> NfListObject<'c> {
        NfListObject::Table(nftables::schema::Table {
            family: NfFamily::INet,
            name: Cow::Borrowed(&self.cfg.table),
            handle: None,
        })
    }

    pub(crate) fn chain(&self) -> NfListObject<'c> {
        NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.cfg.table),
            name: CHAIN.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(NfHook::Prerouting),
            prio: Some(self.cfg.prerouting_priority),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        })
    }

    pub(crate) fn set(&self, class: &Class, fam: Fam) -> NfListObject<'c> {
        NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.cfg.table),
            name: set_name(class, fam, &self.cfg.default_rate_limit).into(),
            set_type: SetTypeValue::Single(fam.set_type()),
            flags: Some(HashSet::from([SetFlag::Interval, SetFlag::Timeout])),
            ..Set::default()
        }))
    }

    /// The drop rule of a class: a plain drop for blocks, a per-source
    /// meter over the limit for rate limits.
    pub(crate) fn rule(&self, class: &Class, fam: Fam) -> NfListObject<'c> {
        let set = set_name(class, fam, &self.cfg.default_rate_limit);
        let mut expr = vec![Statement::Match(Match {
            left: saddr(fam),
            right: Expression::String(format!("@{set}").into()),
            op: Operator::EQ,
        })];
        if let Class::Rate(rl) = class {
            expr.push(Statement::Meter(Meter {
                name: format!("{set}_meter").into(),
                key: Expression::Named(NamedExpression::Elem(Elem {
                    val: Box::new(saddr(fam)),
                    timeout: Some(self.cfg.meter_timeout_secs.max(1)),
                    expires: None,
                    comment: None,
                    counter: None,
                })),
                stmt: Box::new(Statement::Limit(limit_over(rl))),
            }));
        }
        expr.push(Statement::Counter(Counter::Anonymous(None)));
        expr.push(Statement::Drop(Some(Drop {})));
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.cfg.table),
            chain: CHAIN.into(),
            expr: expr.into(),
            ..Rule::default()
        })
    }

    /// One element: `net` for `ttl_secs`, or just its key when `ttl_secs`
    /// is None (deletion).
    pub(crate) fn element(
        &self,
        class: &Class,
        net: &IpNet,
        ttl_secs: Option<u32>,
    ) -> NfListObject<'c> {
        let key = addr_expr(net);
        let elem = match ttl_secs {
            Some(t) => Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(key),
                timeout: Some(t.max(1)),
                expires: None,
                comment: None,
                counter: None,
            })),
            None => key,
        };
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: Cow::Borrowed(&self.cfg.table),
            name: set_name(class, Fam::of(net), &self.cfg.default_rate_limit).into(),
            elem: vec![elem].into(),
        })
    }
}

fn saddr(fam: Fam) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: fam.proto().into(),
            field: "saddr".into(),
        },
    )))
}

fn limit_over(rl: &RateLimit) -> Limit<'static> {
    let (rate, unit) = match (rl.packets_per_sec, rl.bytes_per_sec) {
        (Some(p), _) => (p, None),
        (None, b) => (
            u32::try_from(b.unwrap_or(0)).unwrap_or(u32::MAX),
            Some(Cow::Borrowed("bytes")),
        ),
    };
    Limit {
        rate,
        rate_unit: unit.clone(),
        per: Some("second".into()),
        burst: (rl.burst > 0).then_some(rl.burst),
        burst_unit: unit.filter(|_| rl.burst > 0),
        inv: Some(true),
    }
}

/// A host is written as its address, a network as a prefix: nft lists
/// them back the same way, which `listing` relies on.
pub(crate) fn addr_expr(net: &IpNet) -> Expression<'static> {
    let net = net.trunc();
    if net.prefix_len() == net.max_prefix_len() {
        Expression::String(net.addr().to_string().into())
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(net.network().to_string().into())),
            len: u32::from(net.prefix_len()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_names_read_back() {
        let d = NftConfig::default().default_rate_limit;
        let other = RateLimit {
            packets_per_sec: Some(10),
            bytes_per_sec: None,
            burst: 20,
        };
        let bytes = RateLimit {
            packets_per_sec: None,
            bytes_per_sec: Some(1_000_000),
            burst: 0,
        };
        for class in [
            Class::Block,
            Class::Rate(d),
            Class::Rate(other),
            Class::Rate(bytes),
        ] {
            for fam in [Fam::V4, Fam::V6] {
                let name = set_name(&class, fam, &d);
                assert_eq!(class_of(&name, &d), Some((class, fam)), "{name}");
            }
        }
        assert_eq!(
            set_name(&Class::Rate(other), Fam::V4, &d),
            "ratelimit_v4_p10_b20"
        );
        assert_eq!(class_of("ratelimit_v4_meter", &d), None);
        assert_eq!(class_of("other", &d), None);
    }
}
