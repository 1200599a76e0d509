//! Validated newtypes for the inventory's concepts: host names, data-centre names, roles, ports.
//! Each can only be built through a constructor that checks it; nothing here does I/O.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A host's name: an RFC 1123 DNS name, used as the etcd member name, the Patroni member name
/// and a certificate SAN, so it must be valid for all three.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

impl HostName {
    /// Checks `s` is a lowercase DNS name (labels of 1–63 of `a-z 0-9 -`, not starting or
    /// ending with `-`, at most 253 characters).
    pub fn new(s: &str) -> Result<Self, String> {
        check_dns_name(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a DNS name as certificates and etcd need it; the error says what is wrong.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("a name has at most 253 characters, this one has {}", s.len()));
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("`{s}` has an empty or over-long (>63) label"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "`{s}` contains `{}`: use lowercase letters, digits, `-` and `.` only",
                c.escape_default()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("`{s}`: a label cannot start or end with `-`"));
        }
    }
    Ok(())
}

/// A data-centre (or availability-zone) label, used for topology warnings and Patroni tags.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DcName(String);

impl DcName {
    /// Checks `s` is a short identifier (`a-z A-Z 0-9 - _`, 1–63 characters).
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 63 {
            return Err("a data-centre name has 1 to 63 characters".into());
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("`{s}`: use letters, digits, `-` and `_` only"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The label as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DcName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a host runs. A host may carry several roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// PostgreSQL managed by Patroni.
    Postgres,
    /// An etcd member (Patroni's distributed configuration store).
    Etcd,
    /// HAProxy routing to the primary (RW) and replicas (RO).
    Haproxy,
    /// PgBouncer pooling in front of HAProxy.
    Pgbouncer,
    /// The pgBackRest repository host (optional; at most one, never a PostgreSQL node).
    Backup,
}

impl Role {
    /// Every role, in bring-up order.
    pub const ALL: [Role; 5] = [Role::Etcd, Role::Postgres, Role::Haproxy, Role::Pgbouncer, Role::Backup];

    /// The roles every inventory must place on at least one host (`backup` is optional).
    pub const REQUIRED: [Role; 4] = [Role::Etcd, Role::Postgres, Role::Haproxy, Role::Pgbouncer];

    /// The name used in YAML and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Postgres => "postgres",
            Role::Etcd => "etcd",
            Role::Haproxy => "haproxy",
            Role::Pgbouncer => "pgbouncer",
            Role::Backup => "backup",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TCP port, 1–65535. Deserializes from an integer and says what it expected otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    /// Builds a port, refusing 0.
    pub const fn new(n: u16) -> Option<Self> {
        if n == 0 { None } else { Some(Self(n)) }
    }

    /// The port number.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 1–65535")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .ok()
                    .and_then(Port::new)
                    .ok_or_else(|| E::custom(format!("expected a port number 1–65535, found {v}")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("expected a port number 1–65535, found {v}"))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Err(E::custom(format!("expected a port number 1–65535, found \"{v}\"")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Port, E> {
                Err(E::custom(format!("expected a port number 1–65535, found {v}")))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Port, E> {
                Err(E::custom(format!("expected a port number 1–65535, found {v}")))
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_follow_rfc1123() {
        assert!(HostName::new("node1").is_ok());
        assert!(HostName::new("pg-1.dc1.example").is_ok());
        assert!(HostName::new("Node1").unwrap_err().contains("lowercase"));
        assert!(HostName::new("-a").unwrap_err().contains("cannot start"));
        assert!(HostName::new("a..b").is_err());
        assert!(HostName::new(&"a".repeat(64)).is_err());
        assert!(HostName::new("").is_err());
    }

    #[test]
    fn port_zero_is_refused() {
        assert!(Port::new(0).is_none());
        assert_eq!(Port::new(5432).map(Port::get), Some(5432));
    }
}
