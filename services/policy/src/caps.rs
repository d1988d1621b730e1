//! Capabilities: which rights a socket holds on which rooms.
//!
//! # The matching rule
//! A capability map is `{ "<pattern>": ["subscribe", "publish", "presence"] }`. A pattern
//! is an exact room name (`chat`), a prefix ending in `*` (`team:*` matches `team:` and
//! everything after it), or `*` alone (every room). The rights a socket holds on a room
//! are the **union** of the rights of every pattern that matches it: patterns only grant,
//! never take away. A room no pattern matches grants nothing.
//!
//! Checking a right allocates nothing: one hash lookup for the exact names, a scan of the
//! (few) prefixes, and a bit test.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::validate_room;

/// Most patterns one capability map may hold; a token is not a database.
pub const MAX_PATTERNS: usize = 128;

/// One right on a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    Subscribe,
    Publish,
    Presence,
}

impl Right {
    const fn bit(self) -> u8 {
        match self {
            Right::Subscribe => 1,
            Right::Publish => 2,
            Right::Presence => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Right::Subscribe => "subscribe",
            Right::Publish => "publish",
            Right::Presence => "presence",
        }
    }

    fn parse(s: &str) -> Option<Right> {
        match s {
            "subscribe" => Some(Right::Subscribe),
            "publish" => Some(Right::Publish),
            "presence" => Some(Right::Presence),
            _ => None,
        }
    }

    const ALL: [Right; 3] = [Right::Subscribe, Right::Publish, Right::Presence];
}

/// A set of rights, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Rights(u8);

impl Rights {
    pub const NONE: Rights = Rights(0);
    pub const ALL: Rights = Rights(7);

    pub fn contains(self, r: Right) -> bool {
        self.0 & r.bit() != 0
    }

    pub fn with(self, r: Right) -> Rights {
        Rights(self.0 | r.bit())
    }

    fn union(self, o: Rights) -> Rights {
        Rights(self.0 | o.0)
    }

    fn names(self) -> Vec<&'static str> {
        Right::ALL.iter().filter(|r| self.contains(**r)).map(|r| r.name()).collect()
    }
}

/// Why a capability map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("caps must be an object of pattern to rights")]
    NotAnObject,
    #[error("caps may hold at most {MAX_PATTERNS} patterns")]
    TooMany,
    #[error("invalid room pattern")]
    BadPattern,
    #[error("rights must be an array of \"subscribe\", \"publish\", \"presence\"")]
    BadRights,
}

/// A parsed capability map. See the module documentation for the matching rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    exact: HashMap<Box<str>, Rights>,
    prefixes: Vec<(Box<str>, Rights)>,
    any: Rights,
}

impl Caps {
    /// A map granting every right on every room (`{"*": [all]}`).
    pub fn all() -> Caps {
        Caps { any: Rights::ALL, ..Caps::default() }
    }

    /// True when the map grants nothing at all.
    pub fn is_empty(&self) -> bool {
        self.any == Rights::NONE
            && self.exact.values().all(|r| *r == Rights::NONE)
            && self.prefixes.iter().all(|(_, r)| *r == Rights::NONE)
    }

    /// The union of the rights of every pattern matching `room`.
    pub fn rights(&self, room: &str) -> Rights {
        let mut r = self.any;
        if let Some(e) = self.exact.get(room) {
            r = r.union(*e);
        }
        for (p, pr) in &self.prefixes {
            if room.starts_with(&**p) {
                r = r.union(*pr);
            }
        }
        r
    }

    /// Whether `right` is granted on `room`.
    pub fn allows(&self, room: &str, right: Right) -> bool {
        self.rights(room).contains(right)
    }

    /// Adds `rights` for `pattern`, validating the pattern.
    pub fn grant(&mut self, pattern: &str, rights: Rights) -> Result<(), CapsError> {
        if self.exact.len() + self.prefixes.len() >= MAX_PATTERNS {
            return Err(CapsError::TooMany);
        }
        if pattern == "*" {
            self.any = self.any.union(rights);
        } else if let Some(prefix) = pattern.strip_suffix('*') {
            // The prefix itself must be made of room characters; an empty prefix is `*`.
            if prefix.is_empty() || !validate_room(prefix) {
                return Err(CapsError::BadPattern);
            }
            match self.prefixes.iter_mut().find(|(p, _)| &**p == prefix) {
                Some((_, r)) => *r = r.union(rights),
                None => self.prefixes.push((prefix.into(), rights)),
            }
        } else {
            if !validate_room(pattern) {
                return Err(CapsError::BadPattern);
            }
            let e = self.exact.entry(pattern.into()).or_default();
            *e = e.union(rights);
        }
        Ok(())
    }

    /// Parses the `caps` claim (or a policy's `default_caps`).
    pub fn from_json(v: &serde_json::Value) -> Result<Caps, CapsError> {
        let obj = v.as_object().ok_or(CapsError::NotAnObject)?;
        if obj.len() > MAX_PATTERNS {
            return Err(CapsError::TooMany);
        }
        let mut caps = Caps::default();
        for (pattern, rights) in obj {
            let arr = rights.as_array().ok_or(CapsError::BadRights)?;
            if arr.len() > Right::ALL.len() * 2 {
                return Err(CapsError::BadRights);
            }
            let mut rs = Rights::NONE;
            for r in arr {
                let right = r.as_str().and_then(Right::parse).ok_or(CapsError::BadRights)?;
                rs = rs.with(right);
            }
            caps.grant(pattern, rs)?;
        }
        Ok(caps)
    }

    /// The JSON form, patterns sorted, as accepted by [`Caps::from_json`].
    pub fn to_json(&self) -> serde_json::Value {
        let mut m: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        if self.any != Rights::NONE {
            m.insert("*".into(), self.any.names());
        }
        for (p, r) in &self.exact {
            m.insert(p.to_string(), r.names());
        }
        for (p, r) in &self.prefixes {
            m.insert(format!("{p}*"), r.names());
        }
        serde_json::to_value(m).unwrap_or_default()
    }
}

impl Serialize for Caps {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Caps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Caps, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Caps::from_json(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn caps(v: serde_json::Value) -> Caps {
        Caps::from_json(&v).expect("valid caps")
    }

    #[test]
    fn exact_prefix_and_any() {
        let c = caps(json!({
            "chat": ["subscribe"],
            "team:*": ["publish", "subscribe"],
            "*": ["presence"],
        }));
        assert!(c.allows("chat", Right::Subscribe));
        assert!(!c.allows("chat", Right::Publish));
        assert!(c.allows("chat", Right::Presence));
        assert!(c.allows("team:", Right::Publish));
        assert!(c.allows("team:42", Right::Publish));
        assert!(!c.allows("team", Right::Publish));
        assert!(!c.allows("chat2", Right::Subscribe));
        assert!(c.allows("anything", Right::Presence));
    }

    #[test]
    fn union_of_overlapping_patterns() {
        let c = caps(json!({"a*": ["subscribe"], "ab*": ["publish"], "abc": ["presence"]}));
        assert_eq!(c.rights("abc"), Rights::ALL);
        assert_eq!(c.rights("abd"), Rights::NONE.with(Right::Subscribe).with(Right::Publish));
        assert_eq!(c.rights("b"), Rights::NONE);
    }

    #[test]
    fn empty_and_default() {
        assert!(caps(json!({})).is_empty());
        assert!(caps(json!({"x": []})).is_empty());
        assert!(!Caps::all().is_empty());
        assert!(Caps::all().allows("whatever", Right::Publish));
    }

    #[test]
    fn refuses_bad_maps() {
        for (v, e) in [
            (json!([]), CapsError::NotAnObject),
            (json!("*"), CapsError::NotAnObject),
            (json!({"a b": ["subscribe"]}), CapsError::BadPattern),
            (json!({"*a": ["subscribe"]}), CapsError::BadPattern),
            (json!({"a**": ["subscribe"]}), CapsError::BadPattern),
            (json!({"": ["subscribe"]}), CapsError::BadPattern),
            (json!({"a": "subscribe"}), CapsError::BadRights),
            (json!({"a": ["admin"]}), CapsError::BadRights),
            (json!({"a": [1]}), CapsError::BadRights),
        ] {
            assert_eq!(Caps::from_json(&v), Err(e), "{v}");
        }
        let many: serde_json::Map<String, serde_json::Value> =
            (0..=MAX_PATTERNS).map(|i| (format!("r{i}"), json!(["subscribe"]))).collect();
        assert_eq!(Caps::from_json(&serde_json::Value::Object(many)), Err(CapsError::TooMany));
    }

    #[test]
    fn json_round_trip() {
        let v = json!({"*": ["presence"], "chat": ["publish", "subscribe"], "t:*": ["subscribe"]});
        let c = caps(v.clone());
        assert_eq!(caps(c.to_json()), c);
        assert_eq!(
            c.to_json(),
            json!({"*": ["presence"], "chat": ["subscribe", "publish"], "t:*": ["subscribe"]})
        );
    }

    fn room() -> impl Strategy<Value = String> {
        "[a-c:]{1,6}"
    }

    proptest! {
        // The matcher agrees with a naive reading of the rule for arbitrary maps.
        #[test]
        fn matches_naive_rule(
            pats in proptest::collection::vec(("[a-c:]{0,4}", any::<bool>(), 0u8..8), 0..8),
            r in room(),
        ) {
            let mut c = Caps::default();
            let mut expect = 0u8;
            for (p, star, bits) in &pats {
                let pattern = if *star { format!("{p}*") } else { p.clone() };
                let rights = Rights(*bits);
                if c.grant(&pattern, rights).is_err() {
                    // Only the empty exact pattern is invalid in this alphabet.
                    prop_assert!(p.is_empty() && !*star);
                    continue;
                }
                let hit = if *star { r.starts_with(p.as_str()) } else { &r == p };
                if hit { expect |= bits; }
            }
            prop_assert_eq!(c.rights(&r), Rights(expect));
        }

        // Parsing never panics on arbitrary JSON-ish maps, and what parses round-trips.
        #[test]
        fn parse_total(keys in proptest::collection::vec(".{0,8}", 0..6), rights in proptest::collection::vec(".{0,10}", 0..4)) {
            let m: serde_json::Map<String, serde_json::Value> =
                keys.iter().map(|k| (k.clone(), json!(rights))).collect();
            if let Ok(c) = Caps::from_json(&serde_json::Value::Object(m)) {
                prop_assert_eq!(Caps::from_json(&c.to_json()), Ok(c));
            }
        }
    }
}
