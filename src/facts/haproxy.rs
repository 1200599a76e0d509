//! HAProxy facts and the routing rule on them: the servers of each proxy with their status, read
//! from the admin socket (`show stat`, CSV), and "exactly one RW server UP, and it is the
//! leader". [`stat_cmd`] is the command; [`parse_stat`] is pure and tested on output captured
//! from HAProxy on the lab (tests/fixtures/haproxy/).

use serde::Serialize;

use crate::render::paths;
use crate::transport::Cmd;

/// The proxy that routes writes (to the primary only).
pub const RW_PROXY: &str = "postgres_rw";
/// The proxy that routes reads (to the replicas, the primary as backup).
pub const RO_PROXY: &str = "postgres_ro";

/// `show stat` on HAProxy's admin socket (run on the HAProxy host).
pub fn stat_cmd() -> Cmd {
    Cmd::script(
        "echo 'show stat' | socat stdio unix-connect:\"$1\"",
        [paths::HAPROXY_ADMIN_SOCKET.to_string()],
    )
}

/// One server of a proxy, as `show stat` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Server {
    /// The proxy (`pxname`), e.g. `postgres_rw`.
    pub proxy: String,
    /// The server (`svname`): a PostgreSQL host's name (`<name>_primary` for RO's backups).
    pub server: String,
    /// `status`: `UP`, `DOWN`, `UP 1/3`, `MAINT`, `no check`…
    pub status: String,
}

impl Server {
    /// UP (also while going down: `UP 1/3`).
    pub fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }
}

/// Why `show stat` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HAProxy show stat: {0}")]
pub struct ParseError(pub String);

/// Parses `show stat` (CSV with a `# pxname,svname,…` header): every server line (frontends
/// and backends left out). Columns are found by the header's names.
pub fn parse_stat(csv: &str) -> Result<Vec<Server>, ParseError> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().and_then(|h| h.strip_prefix("# ")).ok_or_else(|| {
        ParseError(format!(
            "no `# pxname,…` header: {}",
            csv.chars().take(120).collect::<String>()
        ))
    })?;
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| {
        cols.iter()
            .position(|c| *c == name)
            .ok_or_else(|| ParseError(format!("no `{name}` column")))
    };
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    Ok(lines
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let (proxy, server, status) = (f.get(px)?, f.get(sv)?, f.get(st)?);
            (*server != "FRONTEND" && *server != "BACKEND").then(|| Server {
                proxy: proxy.to_string(),
                server: server.to_string(),
                status: status.to_string(),
            })
        })
        .collect())
}

/// The servers UP in the RW proxy.
pub fn rw_up(servers: &[Server]) -> Vec<&str> {
    servers
        .iter()
        .filter(|s| s.proxy == RW_PROXY && s.is_up())
        .map(|s| s.server.as_str())
        .collect()
}

/// The routing rule: exactly one RW server UP, and (when the leader is known) it is the
/// leader. `Ok` names it; `Err` says what HAProxy routes instead, with every RW server's status
/// (`0 UP (node1 MAINT, node2 DOWN, node3 DOWN)`).
pub fn check_rw(servers: &[Server], leader: Option<&str>) -> Result<String, String> {
    let up = rw_up(servers);
    match (up.as_slice(), leader) {
        ([one], Some(l)) if *one != l => Err(format!("{one} UP, but the leader is {l}")),
        ([one], _) => Ok(format!("{one} UP")),
        _ => {
            let states: Vec<String> = servers
                .iter()
                .filter(|s| s.proxy == RW_PROXY)
                .map(|s| format!("{} {}", s.server, s.status))
                .collect();
            Err(format!("{} UP ({})", up.len(), states.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n\
stats,FRONTEND,,,1,1,,1,0,0,0,0,0,,,,,OPEN,\n\
postgres_rw,FRONTEND,,,0,0,,0,0,0,0,0,0,,,,,OPEN,\n\
postgres_rw,pg1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n\
postgres_rw,pg2,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1\n\
postgres_rw,BACKEND,0,0,0,0,,0,0,0,0,0,,0,0,0,0,UP,1\n\
postgres_ro,pg2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n\
postgres_ro,pg1_primary,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1\n";

    #[test]
    fn servers_and_the_rw_rule() {
        let s = parse_stat(STAT).expect("parses");
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(rw_up(&s), ["pg1"]);
        assert_eq!(check_rw(&s, Some("pg1")), Ok("pg1 UP".into()));
        assert_eq!(check_rw(&s, None), Ok("pg1 UP".into()));
        assert!(
            check_rw(&s, Some("pg2"))
                .expect_err("not the leader")
                .contains("leader is pg2")
        );
        let none: Vec<Server> = s.iter().filter(|x| x.server != "pg1").cloned().collect();
        assert_eq!(check_rw(&none, Some("pg1")), Err("0 UP (pg2 DOWN)".into()));
        assert!(parse_stat("Unknown command\n").is_err());
    }

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/haproxy/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_real_show_stat_routes_writes_to_the_leader_only() {
        let s = parse_stat(&fixture("show-stat.csv")).expect("parses");
        assert_eq!(s.iter().filter(|x| x.proxy == RW_PROXY).count(), 3, "{s:?}");
        assert_eq!(rw_up(&s), ["node1"]);
        assert_eq!(check_rw(&s, Some("node1")), Ok("node1 UP".into()));
        assert!(check_rw(&s, Some("node2")).is_err());
        let ro_up: Vec<&str> = s
            .iter()
            .filter(|x| x.proxy == RO_PROXY && x.is_up())
            .map(|x| x.server.as_str())
            .collect();
        assert_eq!(ro_up, ["node2", "node3", "node1_primary"]);
        // node3's Patroni stopped: RO routes around it, RW unchanged.
        let s = parse_stat(&fixture("show-stat-replica-stopped.csv")).expect("parses");
        assert_eq!(rw_up(&s), ["node1"]);
        assert!(
            !s.iter()
                .any(|x| x.proxy == RO_PROXY && x.server == "node3" && x.is_up())
        );
    }
}
