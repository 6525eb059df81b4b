//! Reads `list table` output back: which of osprey's objects exist, and
//! which elements the sets hold with how long they have left.
//!
//! Objects are read one at a time, so a rule whose statements the
//! `nftables` crate cannot represent (the meters) never spoils the rest.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use nftables::expr::{Expression, NamedExpression};
use nftables::schema::Set;
use serde::Deserialize;
use serde_json::Value;
use tracing::debug;

use super::error::NftError;
use super::layout::CHAIN;

/// An element as listed: the address or range and the seconds it has left.
pub(crate) type Listed = (IpNet, Option<u32>);

/// What osprey's table holds now.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) sets: HashMap<String, Vec<Listed>>,
    pub(crate) chain: bool,
    pub(crate) rules: usize,
}

pub(crate) fn parse(op: &'static str, out: &str) -> Result<Listing, NftError> {
    let bad = |detail: String| NftError::Output { op, detail };
    let v: Value = serde_json::from_str(out).map_err(|e| bad(e.to_string()))?;
    let objects = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `nftables` array".into()))?;
    let mut l = Listing::default();
    for o in objects {
        if let Some(c) = o.get("chain") {
            l.chain |= c.get("name").and_then(Value::as_str) == Some(CHAIN);
        } else if let Some(r) = o.get("rule") {
            if r.get("chain").and_then(Value::as_str) == Some(CHAIN) {
                l.rules += 1;
            }
        } else if let Some(s) = o.get("set") {
            match Set::deserialize(s) {
                Ok(set) => {
                    let elems = set
                        .elem
                        .iter()
                        .flat_map(|e| e.iter())
                        .filter_map(|e| element(e, None))
                        .collect();
                    l.sets.insert(set.name.into_owned(), elems);
                }
                Err(e) => debug!(error = %e, "skipping a set nftables cannot read"),
            }
        }
    }
    Ok(l)
}

fn element(e: &Expression, expires: Option<u32>) -> Option<Listed> {
    match e {
        Expression::String(s) => {
            let a: IpAddr = s.parse().ok()?;
            Some((IpNet::from(a), expires))
        }
        Expression::Named(NamedExpression::Prefix(p)) => match p.addr.as_ref() {
            Expression::String(s) => {
                let a: IpAddr = s.parse().ok()?;
                let len = u8::try_from(p.len).ok()?;
                Some((IpNet::new(a, len).ok()?, expires))
            }
            _ => None,
        },
        Expression::Named(NamedExpression::Elem(el)) => element(&el.val, el.expires),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nft_1_0_6_output() {
        let out = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
          {"table": {"family": "inet", "name": "osprey", "handle": 1}},
          {"set": {"family": "inet", "name": "block_v4", "table": "osprey", "type": "ipv4_addr", "handle": 2,
            "flags": ["interval", "timeout"], "elem": [{"elem": {"val": "198.18.0.1", "timeout": 300, "expires": 299}},
            {"elem": {"val": {"prefix": {"addr": "198.18.64.0", "len": 24}}, "timeout": 300, "expires": 290}}]}},
          {"chain": {"family": "inet", "table": "osprey", "name": "prerouting", "handle": 1, "type": "filter",
            "hook": "prerouting", "prio": -300, "policy": "accept"}},
          {"rule": {"family": "inet", "table": "osprey", "chain": "prerouting", "handle": 4, "expr": []}}]}"#;
        let l = parse("list", out).unwrap();
        assert!(l.chain);
        assert_eq!(l.rules, 1);
        assert_eq!(
            l.sets["block_v4"],
            vec![
                ("198.18.0.1/32".parse().unwrap(), Some(299)),
                ("198.18.64.0/24".parse().unwrap(), Some(290))
            ]
        );
    }
}
