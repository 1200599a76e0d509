//! Unit tests of the PKI as a whole: chains, extensions, serials, validity, modes, idempotence
//! and renewal rules, plus `openssl verify` on every leaf. Test-only.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::testutil::sample_inventory;
use super::*;
use crate::inventory::Inventory;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    state: StateDir,
    inv: Inventory,
}

fn issued_fixture() -> (Fixture, Report) {
    issued_fixture_at(now())
}

fn issued_fixture_at(now: OffsetDateTime) -> (Fixture, Report) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join(".pgha"));
    let inv = sample_inventory();
    let report = ensure(&inv, &state, now).expect("ensure");
    (Fixture { _tmp: tmp, state, inv }, report)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("ls") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn issued_kinds(report: &Report) -> Vec<(String, LeafKind, Reason)> {
    report
        .leaves
        .iter()
        .filter_map(|l| match l.action {
            LeafAction::Issued(r) => Some((l.host.to_string(), l.kind, r)),
            LeafAction::Kept => None,
        })
        .collect()
}

fn pem_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
    p.contents
}

fn key_id(ext: &ParsedExtension<'_>) -> Option<Vec<u8>> {
    match ext {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
        _ => None,
    }
}

#[test]
fn first_run_creates_ca_bundle_and_every_leaf() {
    let (f, report) = issued_fixture();
    assert_eq!(report.ca, CaAction::Created);
    assert_eq!(report.bundle, "ca-bundle-1.pem");
    assert_eq!(report.leaves.len(), leaf_specs(&f.inv).len());
    assert!(issued_kinds(&report).iter().all(|(_, _, r)| *r == Reason::Missing));
    let bundle = current_bundle(&f.state).expect("read").expect("exists");
    assert_eq!(bundle.pem, read(&f.state.ca_cert()));
}

#[test]
fn ca_extensions() {
    let (f, _) = issued_fixture();
    let der = pem_der(&read(&f.state.ca_cert()));
    let (_, ca) = X509Certificate::from_der(&der).expect("ca");
    let bc = ca.basic_constraints().expect("ok").expect("present");
    assert!(bc.critical && bc.value.ca);
    let ku = ca.key_usage().expect("ok").expect("present");
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign() && !ku.value.digital_signature());
    let validity = ca.validity();
    let want_end = now() + Duration::days(i64::from(f.inv.tls.ca_validity_days));
    assert_eq!(validity.not_after.timestamp(), want_end.unix_timestamp());
    assert!(ca.verify_signature(None).is_ok(), "self-signed");
}

#[test]
fn every_leaf_chains_to_the_ca_with_the_table_s_sans_and_ekus() {
    let (f, _) = issued_fixture();
    let ca_der = pem_der(&read(&f.state.ca_cert()));
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("ca");
    let ca_ski = ca
        .iter_extensions()
        .find_map(|e| key_id(e.parsed_extension()))
        .expect("CA SKI");
    for spec in leaf_specs(&f.inv) {
        let der = pem_der(&read(&f.state.leaf_cert(&spec.host, spec.kind)));
        let (_, cert) = X509Certificate::from_der(&der).expect("leaf");
        let what = format!("{} {}", spec.host, spec.kind);
        cert.verify_signature(Some(ca.public_key()))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(cert.issuer(), ca.subject(), "{what}");
        let aki = cert
            .iter_extensions()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(_) => key_id(e.parsed_extension()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{what}: no AKI"));
        assert_eq!(aki, ca_ski, "{what}");
        let bc = cert.basic_constraints().expect("ok").expect("present");
        assert!(!bc.value.ca, "{what}");
        assert!(
            cert.key_usage()
                .expect("ok")
                .expect("present")
                .value
                .digital_signature()
        );

        let info = CertInfo::from_der(&der).expect("info");
        assert_eq!(info.sans, spec.sans, "{what}");
        assert_eq!(info.ekus, spec.ekus, "{what}");
        assert_eq!(info.common_name.as_deref(), Some(spec.host.as_str()), "{what}");
        let eku = cert.extended_key_usage().expect("ok").expect("present").value;
        assert!(
            !eku.any && eku.other.is_empty() && !eku.code_signing,
            "{what}: only the table's EKUs"
        );
    }
}

#[test]
fn postgres_server_cert_names_haproxy() {
    let (f, _) = issued_fixture();
    let node = f.inv.host("node2").expect("node2");
    let info = CertInfo::from_pem(&read(&f.state.leaf_cert(&node.name, LeafKind::PostgresServer))).expect("info");
    let ip: IpAddr = "192.0.2.41".parse().expect("ip");
    assert!(info.sans.contains(&San::Dns("db.example.com".into())));
    assert!(info.sans.contains(&San::Dns("haproxy".into())));
    assert!(info.sans.contains(&San::Ip(ip)));
}

#[test]
fn serials_are_random_128_bit_and_distinct() {
    let (f, _) = issued_fixture();
    let mut serials = vec![CertInfo::from_pem(&read(&f.state.ca_cert())).expect("ca").serial];
    for spec in leaf_specs(&f.inv) {
        serials.push(
            CertInfo::from_pem(&read(&f.state.leaf_cert(&spec.host, spec.kind)))
                .expect("leaf")
                .serial,
        );
    }
    for s in &serials {
        assert!(s.len() <= 16, "at most 128 bits: {s:02x?}");
        // 16 random bytes: a leading zero byte happens 1 time in 256; two in a row almost never.
        assert!(s.len() >= 14, "suspiciously short serial: {s:02x?}");
    }
    let distinct: std::collections::BTreeSet<_> = serials.iter().collect();
    assert_eq!(distinct.len(), serials.len());
}

#[test]
fn leaf_validity_as_configured() {
    let (f, _) = issued_fixture();
    for spec in leaf_specs(&f.inv) {
        let info = CertInfo::from_pem(&read(&f.state.leaf_cert(&spec.host, spec.kind))).expect("leaf");
        assert_eq!(
            info.not_after,
            now() + Duration::days(i64::from(f.inv.tls.leaf_validity_days))
        );
        assert_eq!(info.not_before, now() - issue::BACKDATE);
    }
}

#[test]
fn modes_of_state_dir_keys_and_secrets() {
    let (f, _) = issued_fixture();
    ensure_secrets(&f.inv, &f.state).expect("secrets");
    for dir in [f.state.root().to_path_buf(), f.state.ca_dir(), f.state.trust_dir()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&f.state.ca_key()), 0o600);
    assert_eq!(mode(&f.state.secrets()), 0o600);
    for spec in leaf_specs(&f.inv) {
        assert_eq!(mode(&f.state.host_dir(&spec.host)), 0o700);
        assert_eq!(mode(&f.state.leaf_key(&spec.host, spec.kind)), 0o600);
    }
}

#[test]
fn state_dir_is_ignored_by_git() {
    let (f, _) = issued_fixture();
    let text = read(&f.state.gitignore());
    assert!(text.lines().any(|l| l == "*"), "{text}");
}

#[test]
fn group_or_world_readable_leaf_keys_are_refused() {
    let (f, _) = issued_fixture();
    let spec = &leaf_specs(&f.inv)[0];
    let key = f.state.leaf_key(&spec.host, spec.kind);
    assert!(f.state.read_leaf_key(&spec.host, spec.kind).is_ok());
    for loose in [0o640, 0o604, 0o644] {
        fs::set_permissions(&key, fs::Permissions::from_mode(loose)).expect("chmod");
        let err = f
            .state
            .read_leaf_key(&spec.host, spec.kind)
            .expect_err("loose mode refused");
        let text = err.to_string();
        assert!(
            text.contains(&key.display().to_string()) && text.contains("chmod 600"),
            "{text}"
        );
        let err = ensure(&f.inv, &f.state, now()).expect_err("ensure refuses it too");
        assert!(matches!(err, PkiError::InsecureMode { .. }), "{err}");
    }
}

#[test]
fn second_run_issues_nothing_and_rewrites_nothing() {
    let (f, _) = issued_fixture();
    let before = snapshot(f.state.root());
    let report = ensure(&f.inv, &f.state, now() + Duration::days(1)).expect("again");
    assert!(report.unchanged(), "{report:?}");
    assert_eq!(report.ca, CaAction::Kept);
    assert_eq!(snapshot(f.state.root()), before);
}

#[test]
fn leaves_expiring_within_the_window_are_reissued() {
    let (f, _) = issued_fixture();
    let days = i64::from(f.inv.tls.leaf_validity_days - f.inv.tls.renew_within_days);
    let quiet = ensure(&f.inv, &f.state, now() + Duration::days(days - 1)).expect("before window");
    assert!(quiet.unchanged());
    let later = now() + Duration::days(days);
    let report = ensure(&f.inv, &f.state, later).expect("in window");
    let issued = issued_kinds(&report);
    assert_eq!(issued.len(), report.leaves.len());
    assert!(issued.iter().all(|(_, _, r)| *r == Reason::Expiring));
    assert_eq!(report.ca, CaAction::Kept);
    assert!(ensure(&f.inv, &f.state, later).expect("again").unchanged());
}

#[test]
fn leaves_never_outlive_the_ca_and_do_not_churn_near_its_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join(".pgha"));
    let mut inv = sample_inventory();
    inv.tls.ca_validity_days = 100;
    ensure(&inv, &state, now()).expect("ensure");
    let ca_end = Ca::load(&state).expect("load").expect("ca").info().not_after;
    let spec = &leaf_specs(&inv)[0];
    let leaf = CertInfo::from_pem(&read(&state.leaf_cert(&spec.host, spec.kind))).expect("leaf");
    assert_eq!(leaf.not_after, ca_end, "capped at the CA's end");
    let late = now() + Duration::days(80);
    assert!(
        ensure(&inv, &state, late).expect("late").unchanged(),
        "re-issuing would not help"
    );
    let rows = status(&inv, &state, late).expect("status");
    assert!(
        rows.iter().all(|r| r.status == Health::Expiring),
        "status still tells the truth"
    );
}

#[test]
fn changed_haproxy_address_reissues_postgres_server_certs_only() {
    let (mut f, _) = issued_fixture();
    let proxy = f
        .inv
        .hosts
        .iter_mut()
        .find(|h| h.name.as_str() == "haproxy")
        .expect("haproxy");
    proxy.address = "192.0.2.42".parse().expect("ip");
    let report = ensure(&f.inv, &f.state, now()).expect("ensure");
    let mut issued = issued_kinds(&report);
    issued.sort();
    let want: Vec<_> = ["node1", "node2", "node3"]
        .iter()
        .map(|h| (h.to_string(), LeafKind::PostgresServer, Reason::SansChanged))
        .collect();
    assert_eq!(issued, want, "the HAProxy check cert names no address, so it is kept");
}

#[test]
fn leaves_of_another_ca_or_with_a_foreign_key_are_reissued() {
    let (f, _) = issued_fixture();
    let node1 = f.inv.host("node1").expect("node1").name.clone();
    let etcd1 = f.inv.host("etcd1").expect("etcd1").name.clone();
    // A key that does not belong to the certificate (e.g. a crash between the two writes).
    let other_key = read(&f.state.leaf_key(&etcd1, LeafKind::EtcdPeer));
    files::write_atomic(
        &f.state.leaf_key(&node1, LeafKind::PatroniRest),
        other_key.as_bytes(),
        FileMode::Private,
    )
    .expect("write");
    // A certificate from a different CA.
    let stranger = Ca::generate("other", 10, now()).expect("ca");
    let spec = leaf_specs(&f.inv)
        .into_iter()
        .find(|s| s.host == etcd1 && s.kind == LeafKind::EtcdServer)
        .expect("spec");
    write_leaf(&f.state, &spec, &stranger.issue(&spec, now(), 365).expect("issue")).expect("write");
    // A missing one.
    fs::remove_file(f.state.leaf_cert(&node1, LeafKind::PgbouncerServer)).ok();
    fs::remove_file(f.state.leaf_cert(&node1, LeafKind::PatroniClient)).expect("rm");

    let mut issued = issued_kinds(&ensure(&f.inv, &f.state, now()).expect("ensure"));
    issued.sort();
    assert_eq!(
        issued,
        vec![
            ("etcd1".into(), LeafKind::EtcdServer, Reason::OtherCa),
            ("node1".into(), LeafKind::PatroniRest, Reason::KeyMismatch),
            ("node1".into(), LeafKind::PatroniClient, Reason::Missing),
        ]
    );
}

#[test]
fn a_replaced_ca_gets_a_new_bundle_generation_and_new_leaves() {
    let (f, _) = issued_fixture();
    fs::rename(f.state.ca_dir(), f.state.root().join("ca.old")).expect("move CA away");
    let report = ensure(&f.inv, &f.state, now()).expect("ensure");
    assert_eq!(report.ca, CaAction::Created);
    assert_eq!(report.bundle, "ca-bundle-2.pem");
    assert!(issued_kinds(&report).iter().all(|(_, _, r)| *r == Reason::OtherCa));
    assert_eq!(issued_kinds(&report).len(), report.leaves.len());
}

#[test]
fn unreadable_ca_key_names_the_file() {
    let (f, _) = issued_fixture();
    files::write_atomic(&f.state.ca_key(), b"garbage", FileMode::Private).expect("write");
    let err = ensure(&f.inv, &f.state, now()).expect_err("refused");
    let msg = err.to_string();
    assert!(msg.contains("ca.key") && msg.contains("hint:"), "{msg}");
}

#[test]
fn status_reports_missing_ok_and_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = StateDir::new(tmp.path().join(".pgha"));
    let mut inv = sample_inventory();
    let rows = status(&inv, &state, now()).expect("status");
    assert!(rows.iter().all(|r| r.status == Health::Missing));
    assert!(!state.root().exists(), "status writes nothing");

    ensure(&inv, &state, now()).expect("ensure");
    let rows = status(&inv, &state, now()).expect("status");
    assert!(rows.iter().all(|r| r.status == Health::Ok), "{rows:?}");
    assert_eq!(rows[0].certificate, "ca");
    assert_eq!(rows[1].days_left, Some(i64::from(inv.tls.leaf_validity_days)));

    inv.hosts
        .iter_mut()
        .filter(|h| h.name.as_str() == "haproxy")
        .for_each(|h| h.names.clear());
    let rows = status(&inv, &state, now() + Duration::days(340)).expect("status");
    let pg = rows.iter().find(|r| r.certificate == "postgres-server").expect("row");
    assert_eq!((pg.status, pg.reason), (Health::Mismatch, Some(Reason::SansChanged)));
    let rest = rows.iter().find(|r| r.certificate == "patroni-rest").expect("row");
    assert_eq!((rest.status, rest.reason), (Health::Expiring, Some(Reason::Expiring)));
}

#[test]
fn report_and_status_never_contain_key_material() {
    let (f, report) = issued_fixture();
    let text = format!("{report:?}{}", serde_json::to_string(&report).expect("json"));
    let rows = serde_json::to_string(&status(&f.inv, &f.state, now()).expect("status")).expect("json");
    assert!(!text.contains("PRIVATE KEY") && !rows.contains("PRIVATE KEY"));
    let ca = Ca::load(&f.state).expect("load").expect("ca");
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
}

/// The real OpenSSL accepts every leaf for its purpose: `openssl verify -x509_strict -purpose`.
#[test]
#[allow(clippy::disallowed_methods, reason = "a test running the real openssl, like CI does")]
fn openssl_verifies_every_leaf() {
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is not installed: apt-get install openssl");
    }
    let (f, _) = issued_fixture_at(OffsetDateTime::now_utc());
    let ca = f.state.ca_cert();
    for spec in leaf_specs(&f.inv) {
        let cert = f.state.leaf_cert(&spec.host, spec.kind);
        for eku in &spec.ekus {
            let purpose = match eku {
                Eku::ServerAuth => "sslserver",
                Eku::ClientAuth => "sslclient",
            };
            let out = std::process::Command::new("openssl")
                .args(["verify", "-x509_strict", "-purpose", purpose, "-CAfile"])
                .arg(&ca)
                .arg(&cert)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "{} {} ({purpose}): {}{}",
                spec.host,
                spec.kind,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let key = f.state.leaf_key(&spec.host, spec.kind);
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&key)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn bundle_ders(state: &StateDir) -> Vec<Vec<u8>> {
    inspect::pem_certificates(&current_bundle(state).expect("bundle").expect("some bundle").pem)
}

#[test]
fn ca_rotation_goes_trust_first_and_archives_the_old_ca() {
    let (f, _) = issued_fixture();
    let old = Ca::load(&f.state).expect("load").expect("ca");
    let gen1 = current_bundle(&f.state).expect("b").expect("b").generation;

    let mut r = rotation::begin(&f.inv, &f.state, now()).expect("begin");
    assert_eq!(r.phase, Phase::TrustBoth);
    let next = Ca::load_next(&f.state).expect("next").expect("next CA");
    assert_ne!(next.info().der, old.info().der);
    assert_ne!(next.info().common_name, None);
    assert_eq!(
        bundle_ders(&f.state),
        vec![old.info().der.clone(), next.info().der.clone()]
    );
    // Leaves still come from the old CA: `ensure` (a plain deploy) issues nothing.
    assert!(ensure(&f.inv, &f.state, now()).expect("ensure").unchanged());
    // begin again: the same rotation, no third CA, no new bundle.
    assert_eq!(rotation::begin(&f.inv, &f.state, now()).expect("again"), r);
    let gen2 = current_bundle(&f.state).expect("b").expect("b").generation;
    assert_eq!(gen2, gen1 + 1);

    rotation::promote(&f.state, &mut r).expect("promote");
    assert_eq!(r.phase, Phase::NewLeaves);
    assert_eq!(load_rotation(&f.state).expect("load"), Some(r.clone()));
    let current = Ca::load(&f.state).expect("load").expect("ca");
    assert_eq!(current.info().der, next.info().der);
    assert!(!f.state.next_ca_cert().exists() && !f.state.next_ca_key().exists());
    let archived = f.state.archived_ca_dir(&r.old_ca);
    assert_eq!(read(&archived.join("ca.crt")), old.cert_pem());
    assert_eq!(mode(&archived.join("ca.key")), 0o600);
    rotation::promote(&f.state, &mut r).expect("promote is idempotent");

    // The bundle still trusts both; every leaf is re-issued from the new CA.
    let report = ensure(&f.inv, &f.state, now()).expect("ensure");
    assert!(!report.bundle_published);
    assert_eq!(report.issued().count(), report.leaves.len());
    assert!(report.issued().all(|l| l.action == LeafAction::Issued(Reason::OtherCa)));

    rotation::trust_new(&f.state, &mut r).expect("trust new");
    assert_eq!(r.phase, Phase::TrustNew);
    assert_eq!(bundle_ders(&f.state), vec![next.info().der.clone()]);
    let gen3 = current_bundle(&f.state).expect("b").expect("b").generation;
    rotation::trust_new(&f.state, &mut r).expect("idempotent");
    assert_eq!(current_bundle(&f.state).expect("b").expect("b").generation, gen3);
    assert!(ensure(&f.inv, &f.state, now()).expect("ensure").unchanged());

    rotation::finish(&f.state).expect("finish");
    assert_eq!(load_rotation(&f.state).expect("load"), None);
    assert!(archived.join("ca.key").exists(), "the old CA is kept");
}

#[test]
fn renewing_leaves_reissues_all_or_only_the_expiring() {
    let (f, _) = issued_fixture();
    let before: Vec<String> = leaf_specs(&f.inv)
        .iter()
        .map(|s| read(&f.state.leaf_cert(&s.host, s.kind)))
        .collect();
    let none = renew_leaves(&f.inv, &f.state, now(), Renew::ExpiringWithin(1)).expect("renew");
    assert!(none.iter().all(|o| o.action == LeafAction::Kept));
    let all = renew_leaves(&f.inv, &f.state, now(), Renew::All).expect("renew");
    assert!(all.iter().all(|o| o.action == LeafAction::Issued(Reason::Requested)));
    for (spec, old) in leaf_specs(&f.inv).iter().zip(before) {
        assert_ne!(
            read(&f.state.leaf_cert(&spec.host, spec.kind)),
            old,
            "{} {}",
            spec.host,
            spec.kind
        );
    }
    // A window longer than the leaves' validity renews them all as expiring.
    let days = f.inv.tls.leaf_validity_days + 1;
    let late = renew_leaves(&f.inv, &f.state, now(), Renew::ExpiringWithin(days)).expect("renew");
    assert!(late.iter().all(|o| o.action == LeafAction::Issued(Reason::Expiring)));
}

#[test]
fn a_corrupt_rotation_file_is_a_clear_error() {
    let (f, _) = issued_fixture();
    fs::write(f.state.rotation(), "{\"phase\": \"sideways\"}").expect("write");
    let e = load_rotation(&f.state).expect_err("refused").to_string();
    assert!(e.contains("rotation.json") && e.contains("hint:"), "{e}");
}
