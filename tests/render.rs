//! Rendering tests: insta snapshots of every file of every host of inventory/example.yaml for
//! both targets (placeholder material: no real key or password ever lands in a snapshot), and
//! the real validators on output rendered with real throw-away certificates: `haproxy -c`,
//! Patroni's `--validate-config`, postgresql-common's `pg_conftool` reading the createcluster
//! drop-in. Each validator runs against the rendered files at their absolute target paths,
//! through an overlay of the rendered /etc on the real one in a private mount namespace (and,
//! for Patroni, an empty network namespace, so no packet leaves this machine).
//!
//! With CI=true a missing validator or missing root fails the test; otherwise it is skipped
//! with a message.
#![allow(clippy::disallowed_methods)] // tests start the validators themselves

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use pgha::inventory::{self, Inventory};
use pgha::render::files::LEAVES;
use pgha::render::placeholder::placeholder_material;
use pgha::render::{self, Leaf, Material, RenderedFile, Target, TemplateSource};

fn example() -> Inventory {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/example.yaml");
    inventory::load(&path)
        .expect("inventory/example.yaml is valid")
        .inventory
}

fn render(inv: &Inventory, material: &Material, target: Target) -> BTreeMap<String, Vec<RenderedFile>> {
    render::render_all(inv, material, target, &TemplateSource::Embedded).expect("example renders")
}

/// Snapshot name of one file: `<target>__<host>__<path with / as _>`.
fn snap_name(target: Target, host: &str, path: &str) -> String {
    format!("{target}__{host}__{}", path.trim_start_matches('/').replace('/', "_"))
}

#[test]
fn every_file_of_every_host_matches_its_snapshot() {
    let inv = example();
    let material = placeholder_material(&inv);
    for target in Target::ALL {
        let all = render(&inv, &material, target);
        let mut manifest = String::new();
        for (host, files) in &all {
            for f in files {
                manifest.push_str(&format!(
                    "{host} {} {}:{} {:04o}{}\n",
                    f.path,
                    f.owner,
                    f.group,
                    f.mode,
                    if f.secret { " secret" } else { "" }
                ));
                let content = if f.path.ends_with(".key") || (f.path.ends_with(".pem") && f.secret) {
                    redact_keys(&f.content)
                } else {
                    f.content.clone()
                };
                insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
                    insta::assert_snapshot!(snap_name(target, host, &f.path), content);
                });
            }
        }
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{target}__manifest"), manifest);
        });
    }
}

/// Replaces the body of every PEM private key block with `REDACTED`.
fn redact_keys(pem: &str) -> String {
    let mut out = String::new();
    let mut in_key = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
            in_key = true;
            out.push_str(line);
            out.push_str("\nREDACTED\n");
            continue;
        }
        if line.starts_with("-----END") && line.contains("PRIVATE KEY") {
            in_key = false;
        }
        if !in_key {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn keys_and_password_files_are_0600_and_marked_secret() {
    let inv = example();
    let material = placeholder_material(&inv);
    for target in Target::ALL {
        for (host, files) in render(&inv, &material, target) {
            for f in &files {
                if f.path.ends_with(".key") || f.content.contains("PRIVATE KEY") {
                    assert!(f.secret, "{host}:{} holds a key but is not secret", f.path);
                    assert_eq!(f.mode, 0o640, "{host}:{}", f.path);
                }
                if f.secret {
                    // Root-owned, readable by the service's group only (issue 12).
                    assert_eq!(f.owner, "root", "{host}:{}", f.path);
                    assert_eq!(
                        f.mode & 0o037,
                        0,
                        "{host}:{} is secret but group-writable or world readable",
                        f.path
                    );
                }
                assert_eq!(f.mode & 0o022, 0, "{host}:{} writable by a service user", f.path);
                assert!(f.path.starts_with('/'), "{host}: {} is not absolute", f.path);
                assert!(f.content.ends_with('\n'), "{host}:{} lacks a final newline", f.path);
            }
        }
    }
}

#[test]
fn each_host_gets_only_its_own_keys() {
    let inv = example();
    let material = placeholder_material(&inv);
    for (host, files) in render(&inv, &material, Target::Debian13) {
        for f in files.iter().filter(|f| f.path.ends_with(".crt")) {
            assert!(
                f.content.contains(&format!("of {host}\n")),
                "{host}:{} carries another host's certificate",
                f.path
            );
        }
    }
}

#[test]
fn a_template_error_names_the_template_and_line() {
    let inv = example();
    let material = placeholder_material(&inv);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("haproxy")).expect("mkdir");
    std::fs::write(
        dir.path().join("haproxy/haproxy.cfg.j2"),
        "global\n    maxconn {{ nope }}\n",
    )
    .expect("write");
    let host = inv.host("haproxy").expect("example has haproxy");
    let err = render::render_host(
        &inv,
        &material,
        host,
        Target::Debian13,
        &TemplateSource::Dir(dir.path().to_path_buf()),
    )
    .expect_err("undefined variable must fail (strict undefined)");
    let msg = err.to_string();
    assert!(msg.starts_with("templates/haproxy/haproxy.cfg.j2:2:"), "{msg}");
    assert!(msg.contains("undefined"), "{msg}");
    assert!(msg.contains("hint:"), "{msg}");
}

#[test]
fn a_template_override_replaces_only_that_file() {
    let inv = example();
    let material = placeholder_material(&inv);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("pgbouncer")).expect("mkdir");
    std::fs::write(
        dir.path().join("pgbouncer/pg_hba.conf.j2"),
        "# custom {{ host.name }}\n",
    )
    .expect("write");
    let host = inv.host("pgbouncer").expect("example has pgbouncer");
    let files = render::render_host(
        &inv,
        &material,
        host,
        Target::Debian13,
        &TemplateSource::Dir(dir.path().to_path_buf()),
    )
    .expect("renders");
    let by_path: BTreeMap<&str, &RenderedFile> = files.iter().map(|f| (f.path.as_str(), f)).collect();
    assert_eq!(by_path["/etc/pgbouncer/pg_hba.conf"].content, "# custom pgbouncer\n");
    assert!(by_path["/etc/pgbouncer/pgbouncer.ini"].content.contains("[databases]"));
}

#[test]
fn missing_material_is_an_error_not_a_blank_file() {
    let inv = example();
    let mut material = placeholder_material(&inv);
    material.leaves.retain(|(h, _), _| h.as_str() != "node2");
    let host = inv.host("node2").expect("node2");
    let err = render::render_host(&inv, &material, host, Target::Debian13, &TemplateSource::Embedded)
        .expect_err("node2 has no certificates");
    assert!(err.to_string().contains("node2"), "{err}");
}

#[test]
fn pgha_render_writes_the_tree_with_modes() {
    use std::os::unix::fs::PermissionsExt;
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["render", "inventory/example.yaml", "--placeholder-material", "--out"])
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgha");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("node1"), "{stdout}");
    assert!(
        !stdout.contains("PRIVATE KEY") && !stdout.contains("placeholder-"),
        "{stdout}"
    );
    let cfg = out.path().join("haproxy/etc/haproxy/haproxy.cfg");
    assert!(cfg.is_file());
    let key = out.path().join("node1/etc/pgha/tls/postgres-server.key");
    // `pgha render` writes secrets 0600 locally, whatever their mode on the host.
    assert_eq!(
        std::fs::metadata(&key).expect("key").permissions().mode() & 0o777,
        0o600
    );
    let patroni = out.path().join("node1/etc/patroni/config.yml");
    assert_eq!(
        std::fs::metadata(&patroni).expect("cfg").permissions().mode() & 0o777,
        0o600
    );
    let manifest = std::fs::read_to_string(out.path().join("node1/MANIFEST")).expect("manifest");
    assert!(manifest.contains("/etc/patroni/config.yml\troot\tpostgres\t0640\tpatroni.service"));
}

// ---------------------------------------------------------------------------------------------
// Real validators.

/// Whether validators must run (CI) rather than be skipped.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks a validator can run here; Err(reason) to skip, panics in CI.
fn can_run(tool: &str) -> bool {
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    let why = match (found, root) {
        (true, true) => return true,
        (false, _) => format!("`{tool}` is not installed (apt-get install it; .ci/test does)"),
        (true, false) => "needs root for a private mount namespace".to_owned(),
    };
    assert!(!required(), "CI=true: {why}");
    eprintln!("skipped: {why}");
    false
}

/// Real material: a throw-away ECDSA P-256 CA and every leaf with the SANs of docs/design.md §3.
fn real_material(inv: &Inventory) -> Material {
    use pgha::inventory::Role;
    use pgha::render::LeafKind;
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};

    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pgha test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let haproxies: Vec<_> = inv.hosts_with(Role::Haproxy).collect();

    let mut material = placeholder_material(inv);
    material.ca_bundle_pem = ca_cert.pem();
    for user in &inv.postgres.users {
        material.secrets.app_verifiers.insert(
            user.name.clone(),
            scram_verifier(&format!("{}-password", user.name), b"pgha-test-salt!!"),
        );
    }
    for host in &inv.hosts {
        for l in LEAVES.iter().filter(|l| pgha::render::files::leaf_wanted(l, host, inv)) {
            let mut sans = Vec::new();
            let own = |sans: &mut Vec<SanType>, h: &pgha::inventory::Host| {
                for n in h.dns_names() {
                    sans.push(SanType::DnsName(n.as_str().try_into().expect("dns name")));
                }
                sans.push(SanType::IpAddress(h.address));
            };
            let ekus = match l.kind {
                LeafKind::PostgresServer => {
                    own(&mut sans, host);
                    for h in &haproxies {
                        own(&mut sans, h);
                    }
                    vec![ExtendedKeyUsagePurpose::ServerAuth]
                }
                LeafKind::PatroniRest | LeafKind::EtcdServer | LeafKind::PgbouncerServer | LeafKind::HaproxyServer => {
                    own(&mut sans, host);
                    vec![ExtendedKeyUsagePurpose::ServerAuth]
                }
                LeafKind::EtcdPeer | LeafKind::Pgbackrest => {
                    own(&mut sans, host);
                    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
                }
                LeafKind::PatroniClient | LeafKind::HaproxyCheck => {
                    vec![ExtendedKeyUsagePurpose::ClientAuth]
                }
            };
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.subject_alt_names = sans;
            params.extended_key_usages = ekus;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, host.name.as_str());
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            material.leaves.insert(
                (host.name.clone(), l.kind),
                Leaf {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                },
            );
        }
    }
    material
}

/// Writes `files` under `root` (their absolute paths made relative).
fn write_tree(root: &Path, files: &[RenderedFile]) {
    for f in files {
        let p = root.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("absolute path has a parent")).expect("mkdir");
        std::fs::write(&p, &f.content).expect("write");
    }
}

/// Runs `script` with the rendered `etc` overlaid on /etc in a private mount namespace (plus an
/// empty network namespace when `no_network`). Returns (success, stdout+stderr).
fn in_overlay(etc: &Path, script: &str, no_network: bool) -> (bool, String) {
    // A hung validator must fail the test, not hang CI.
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "120", "unshare", "-m"]);
    if no_network {
        cmd.arg("-n");
    }
    let full = format!(
        "set -e; mount --make-rprivate /; mount -t overlay overlay -o lowerdir={}:/etc /etc; {script}",
        etc.display()
    );
    let out = cmd.args(["sh", "-c", &full]).output().expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn host_files(all: &BTreeMap<String, Vec<RenderedFile>>, host: &str) -> Vec<RenderedFile> {
    all.get(host).cloned().unwrap_or_else(|| panic!("no host {host}"))
}

#[test]
fn haproxy_accepts_the_rendered_config() {
    if !can_run("haproxy") || !can_run("unshare") {
        return;
    }
    // Also with the direct-TLS frontends (HAProxy's own certificate, re-encryption with ALPN).
    for direct in [false, true] {
        let mut inv = example();
        if direct {
            inv.haproxy.direct_tls = Some(pgha::inventory::DirectTls {
                rw_port: pgha::inventory::Port::new(5002).expect("port"),
                ro_port: pgha::inventory::Port::new(5003).expect("port"),
            });
        }
        let material = real_material(&inv);
        for target in Target::ALL {
            let all = render(&inv, &material, target);
            for host in inv.hosts_with(pgha::inventory::Role::Haproxy) {
                let cfg = host_files(&all, host.name.as_str());
                let cfg = &cfg
                    .iter()
                    .find(|f| f.path == "/etc/haproxy/haproxy.cfg")
                    .expect("haproxy.cfg")
                    .content;
                assert_eq!(cfg.contains("listen postgres_rw_direct"), direct, "{cfg}");
                let root = tempfile::tempdir().expect("tempdir");
                write_tree(root.path(), &host_files(&all, host.name.as_str()));
                let (ok, out) = in_overlay(
                    &root.path().join("etc"),
                    "haproxy -c -V -f /etc/haproxy/haproxy.cfg",
                    false,
                );
                assert!(ok, "{target} {}: haproxy -c failed:\n{out}", host.name);
                assert!(out.contains("Configuration file is valid"), "{out}");
                // The only acceptable warning: no server-state file before the first reload saves it.
                for line in out.lines().filter(|l| l.contains("[WARNING]")) {
                    assert!(
                        line.contains("Can't open global server state file"),
                        "{target} {}: haproxy -c warns:\n{out}",
                        host.name
                    );
                }
            }
        }
    }
}

#[test]
fn debian_reads_create_main_cluster_off_from_the_drop_in() {
    if !can_run("pg_conftool") || !can_run("unshare") {
        return;
    }
    let inv = example();
    let material = placeholder_material(&inv);
    for target in Target::ALL {
        let all = render(&inv, &material, target);
        let root = tempfile::tempdir().expect("tempdir");
        let node = inv.hosts_with(pgha::inventory::Role::Postgres).next().expect("a node");
        write_tree(root.path(), &host_files(&all, node.name.as_str()));
        // The maintainer script of postgresql-NN asks exactly this (maintscripts-functions).
        let (ok, out) = in_overlay(
            &root.path().join("etc"),
            "pg_conftool /etc/postgresql-common/createcluster.conf show -bs create_main_cluster",
            false,
        );
        assert!(
            ok && out.trim() == "off",
            "{target}: create_main_cluster is not off:\n{out}"
        );
    }
}

/// The Patroni installed here validates the target that ships the same major version.
fn installed_patroni_target() -> Option<Target> {
    let out = Command::new("patroni").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let major = v.split_whitespace().last()?.split('.').next()?.parse::<u32>().ok()?;
    Target::ALL.into_iter().find(|t| t.versions().patroni_major == major)
}

#[test]
fn patroni_validates_the_rendered_config() {
    if !can_run("patroni") || !can_run("unshare") || !can_run("ip") {
        return;
    }
    let Some(target) = installed_patroni_target() else {
        assert!(!required(), "CI=true: unknown Patroni version");
        eprintln!("skipped: Patroni version matches no target");
        return;
    };
    let inv = example();
    let material = real_material(&inv);
    let all = render(&inv, &material, target);
    for node in inv.hosts_with(pgha::inventory::Role::Postgres) {
        let root = tempfile::tempdir().expect("tempdir");
        let files = host_files(&all, node.name.as_str());
        write_tree(root.path(), &files);
        // bin_dir must hold PostgreSQL's executables: point it at stubs (the only rewrite).
        let stub = root.path().join("stub-bin");
        std::fs::create_dir_all(&stub).expect("mkdir");
        for exe in [
            "pg_ctl",
            "initdb",
            "pg_controldata",
            "pg_basebackup",
            "postgres",
            "pg_isready",
        ] {
            use std::os::unix::fs::PermissionsExt;
            let p = stub.join(exe);
            std::fs::write(&p, "#!/bin/sh\nexit 0\n").expect("stub");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let cfg_path = root.path().join("etc/patroni/config.yml");
        let cfg = std::fs::read_to_string(&cfg_path).expect("config");
        let bin_dir = format!("bin_dir: \"{}\"", pgha::render::paths::pg_bin_dir(target));
        assert!(cfg.contains(&bin_dir), "{cfg}");
        std::fs::write(
            &cfg_path,
            cfg.replace(&bin_dir, &format!("bin_dir: \"{}\"", stub.display())),
        )
        .expect("rewrite");
        // Patroni checks every etcd3 host answers: resolve the members to 127.0.0.1 inside an
        // empty network namespace and listen there on the client port.
        let etcd_names: Vec<String> = inv
            .hosts_with(pgha::inventory::Role::Etcd)
            .map(|h| h.name.to_string())
            .collect();
        std::fs::write(
            root.path().join("etc/hosts"),
            format!("127.0.0.1 localhost {}\n", etcd_names.join(" ")),
        )
        .expect("hosts");
        let port = inv.etcd.client_port.get();
        let script = format!(
            "ip link set lo up; \
             /usr/bin/python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\",{port})); s.listen(64); time.sleep(60)' & \
             l=$!; i=0; until /usr/bin/python3 -c \"import socket; socket.create_connection(('127.0.0.1',{port}),1)\" 2>/dev/null || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done; \
             rc=0; patroni --validate-config /etc/patroni/config.yml || rc=$?; kill $l; exit $rc"
        );
        let (ok, out) = in_overlay(&root.path().join("etc"), &script, true);
        assert!(ok, "{target} {}: patroni --validate-config failed:\n{out}", node.name);
    }
}

#[test]
fn pgbouncer_starts_with_the_rendered_config() {
    if !can_run("pgbouncer") || !can_run("unshare") || !can_run("ip") || !can_run("psql") {
        return;
    }
    let inv = example();
    let material = real_material(&inv);
    let version = Command::new("pgbouncer").arg("--version").output().expect("pgbouncer");
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    // The installed PgBouncer runs the target that ships it (1.18: debian12, 1.24: debian13).
    let Some(target) = Target::ALL
        .into_iter()
        .find(|t| version.contains(&format!("PgBouncer {}.", t.versions().pgbouncer)))
    else {
        assert!(!required(), "CI=true: {version} matches no target");
        eprintln!("skipped: {version} matches no target");
        return;
    };
    let all = render(&inv, &material, target);
    for host in inv.hosts_with(pgha::inventory::Role::Pgbouncer) {
        let root = tempfile::tempdir().expect("tempdir");
        let files = host_files(&all, host.name.as_str());
        write_tree(root.path(), &files);
        let chowns: Vec<String> = files
            .iter()
            .map(|f| {
                let p = root.path().join(f.path.trim_start_matches('/'));
                format!(
                    "chown {}:{} {p}; chmod {:o} {p}",
                    f.owner,
                    f.group,
                    f.mode,
                    p = p.display()
                )
            })
            .collect();
        std::fs::write(
            root.path().join("etc/hosts"),
            format!(
                "127.0.0.1 localhost haproxy\n{} {}\n",
                host.address,
                host.dns_names()
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )
        .expect("hosts");
        // Its own sockets, pid and log in tmpfs; its address on the loopback of an empty network
        // namespace. PgBouncer must parse the ini, HBA and auth files, load the TLS files and
        // listen; then the admin console must admit the local postgres user by peer, and an
        // application must pass TLS verify-full (PgBouncer's name) and SCRAM: its first query
        // then fails only for want of a server (HAProxy is not there).
        let bundle = pgha::render::paths::ca_bundle(&material.ca_bundle_file);
        let script = format!(
            "{chowns}; \
             mount -t tmpfs tmpfs /var/run/postgresql; mount -t tmpfs tmpfs /var/log/postgresql; \
             chown postgres:postgres /var/run/postgresql /var/log/postgresql; \
             ip link set lo up; ip addr add {addr} dev lo; \
             pgbouncer -u postgres /etc/pgbouncer/pgbouncer.ini & p=$!; \
             i=0; until [ -S /var/run/postgresql/.s.PGSQL.{port} ] || [ $i -ge 100 ]; do i=$((i+1)); sleep 0.1; done; \
             echo ADMIN: $(timeout -s KILL 10 runuser -u postgres -- psql -X -w -h /var/run/postgresql -p {port} -U postgres -Atc 'SHOW VERSION' pgbouncer 2>&1 </dev/null); \
             echo APP: $(PGPASSWORD=app-password PGCONNECT_TIMEOUT=5 timeout -s KILL 10 psql -X -w \"host={name} port={port} dbname={db}_rw user=app sslmode=verify-full sslrootcert={bundle}\" -Atc 'SELECT 1' 2>&1 </dev/null); \
             echo WRONG: $(PGPASSWORD=wrong PGCONNECT_TIMEOUT=5 timeout -s KILL 10 psql -X -w \"host={name} port={port} dbname={db}_rw user=app sslmode=verify-full sslrootcert={bundle}\" -Atc 'SELECT 1' 2>&1 </dev/null); \
             kill $p; wait $p || true; cat /var/log/postgresql/pgbouncer.log",
            chowns = chowns.join("; "),
            addr = pgha::render::paths::host_cidr(host.address),
            port = inv.pgbouncer.port.get(),
            name = host.name,
            db = inv.postgres.databases[0].name,
        );
        let (ok, out) = in_overlay(&root.path().join("etc"), &script, true);
        assert!(ok, "{target} {}: pgbouncer failed:\n{out}", host.name);
        assert!(out.contains("process up"), "{out}");
        for l in out.lines().filter(|l| l.contains("WARNING")) {
            assert!(
                l.contains("pooler error: SASL authentication failed"),
                "{target} {}: pgbouncer warns:\n{out}",
                host.name
            );
        }
        let line = |tag: &str| out.lines().find(|l| l.starts_with(tag)).unwrap_or("").to_owned();
        assert!(
            line("ADMIN:").contains(&format!("PgBouncer {}", target.versions().pgbouncer)),
            "{out}"
        );
        let app = line("APP:");
        assert!(
            !app.contains("SSL") && !app.contains("certificate") && !app.contains("authentication failed"),
            "{out}"
        );
        // Past TLS (verify-full) and SCRAM, PgBouncer only lacked a server.
        let login = format!(
            "login attempt: db={}_rw user=app tls=TLSv1.3",
            inv.postgres.databases[0].name
        );
        assert!(out.contains(&login), "{out}");
        assert!(line("WRONG:").contains("authentication failed"), "{out}");
    }
}

/// PostgreSQL's SCRAM-SHA-256 verifier of `password` (RFC 5802/7677, 4096 iterations).
fn scram_verifier(password: &str, salt: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(msg.iter().copied()).collect();
        let inner = Sha256::digest(&inner);
        let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
        Sha256::digest(&outer).to_vec()
    }
    let mut u = hmac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
    let mut salted = u.clone();
    for _ in 1..4096 {
        u = hmac(password.as_bytes(), &u);
        salted.iter_mut().zip(&u).for_each(|(s, x)| *s ^= x);
    }
    let stored = Sha256::digest(hmac(&salted, b"Client Key")).to_vec();
    let server = hmac(&salted, b"Server Key");
    format!("SCRAM-SHA-256$4096:{}${}:{}", b64(salt), b64(&stored), b64(&server))
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn pgha_render_with_the_real_pki_passes_haproxy_check() {
    let out = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let run = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["render", "inventory/example.yaml", "--target", "debian12", "--state"])
        .arg(state.path())
        .arg("--out")
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgha");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("issued"), "first run issues the PKI: {stderr}");
    let userlist = std::fs::read_to_string(out.path().join("pgbouncer/etc/pgbouncer/userlist.txt")).expect("userlist");
    assert!(
        userlist.contains("\"app\" \"SCRAM-SHA-256$4096:"),
        "real verifier expected"
    );
    // A second render issues nothing and writes the same files.
    let again = Command::new(env!("CARGO_BIN_EXE_pgha"))
        .args(["render", "inventory/example.yaml", "--target", "debian12", "--state"])
        .arg(state.path())
        .arg("--out")
        .arg(out.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgha");
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("issued"));
    assert_eq!(
        std::fs::read_to_string(out.path().join("pgbouncer/etc/pgbouncer/userlist.txt")).expect("userlist"),
        userlist
    );
    if !can_run("haproxy") || !can_run("unshare") {
        return;
    }
    let (ok, text) = in_overlay(
        &out.path().join("haproxy/etc"),
        "haproxy -c -f /etc/haproxy/haproxy.cfg",
        false,
    );
    assert!(ok && text.contains("Configuration file is valid"), "{text}");
}
