//! Transport conformance: both transports against a real OpenSSH server (sshd from Debian's
//! openssh-server, started on a loopback port with its own host key and authorized key).
//! Covers exit codes, large output, stdin, atomic install seen by a concurrent reader, owner
//! and mode, many commands at once, timeouts, unknown / changed host keys, and an unreachable
//! host reported by name.
#![allow(clippy::disallowed_methods)] // the fixture starts sshd and ssh-keygen

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgha::transport::{self, Cmd, Endpoint, FileKind, Kind, TransportError};
use sha2::{Digest, Sha256};

struct Sshd {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (apt-get install openssh-client)");
    assert!(st.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Sshd {
    fn start() -> Self {
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "sshd missing: apt-get install openssh-server (.ci/test installs it)"
        );
        std::fs::create_dir_all("/run/sshd").expect("privilege separation dir");
        // Below a directory only root can write: `install` refuses targets whose ancestors
        // another user could swap (a checkout under /tmp, /tmp itself), so /var/lib (root's on
        // Debian) unless the checkout's target/ is such a place.
        let root_only = |dir: &Path| {
            dir.ancestors()
                .all(|a| std::fs::metadata(a).is_ok_and(|m| m.uid() == 0 && m.permissions().mode() & 0o022 == 0))
        };
        let place = [Path::new(env!("CARGO_TARGET_TMPDIR")), Path::new("/var/lib")]
            .into_iter()
            .find(|d| d.is_dir() && root_only(d))
            .expect("a directory only root can write (target/tmp or /var/lib): run as root");
        let dir = tempfile::Builder::new()
            .prefix(".pgha-transport-test")
            .tempdir_in(place)
            .expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {0}/host_key\nAuthorizedKeysFile {0}/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nPidFile none\nStrictModes no\nMaxSessions 10\nLogLevel ERROR\n",
            d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("config");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        std::fs::write(d.join("known_hosts"), format!("[127.0.0.1]:{port} {host_pub}")).expect("known_hosts");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child, dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            name: "testhost".into(),
            address: "127.0.0.1".into(),
            port: self.port,
            user: "root".into(),
            key: Some(self.path("client_key")),
            known_hosts: Some(self.path("known_hosts")),
            become_: false,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

const T: Duration = Duration::from_secs(30);

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn conformance(kind: Kind) {
    let sshd = Sshd::start();
    let conn = transport::connect(kind, sshd.endpoint()).await.expect("connects");
    let t = conn.as_ref();

    // Exit codes pass through; stderr is kept apart from stdout.
    let out = t
        .exec(
            &Cmd::script("echo out; echo err >&2; exit 3", Vec::<String>::new()),
            None,
            T,
        )
        .await
        .expect("runs");
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert!(t.exec(&Cmd::new("true"), None, T).await.expect("runs").success());

    // Arguments arrive intact, whatever they contain.
    let hostile = "it's $(not run) `x` \"q\" ; | & \\ *";
    let out = t
        .exec(&Cmd::new("printf").arg("%s").arg(hostile), None, T)
        .await
        .expect("runs");
    assert_eq!(out.stdout_text(), hostile);

    // Large output (about 7 MB) arrives whole.
    let out = t
        .exec(&Cmd::new("seq").arg("1").arg("1000000"), None, T)
        .await
        .expect("runs");
    let text = out.stdout_text();
    assert_eq!(text.lines().count(), 1_000_000);
    assert_eq!(text.lines().last(), Some("1000000"));

    // Large stdin arrives whole.
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = t.exec(&Cmd::new("sha256sum"), Some(&blob), T).await.expect("runs");
    assert!(out.stdout_text().starts_with(&sha(&blob)));

    // Install: content, owner, group and mode as asked; stat sees the same in one round trip.
    let dir = sshd.path("files");
    std::fs::create_dir(&dir).expect("dir");
    let target = dir.join("conf").display().to_string();
    transport::install(t, &target, b"hello\n", "nobody", "nogroup", 0o640)
        .await
        .expect("installs");
    let st = transport::stat(
        t,
        &[
            target.clone(),
            dir.join("missing").display().to_string(),
            dir.display().to_string(),
        ],
    )
    .await
    .expect("stat");
    assert_eq!(
        st[0].kind,
        FileKind::File {
            sha256: sha(b"hello\n"),
            mode: 0o640,
            owner: "nobody".into(),
            group: "nogroup".into()
        }
    );
    assert_eq!(st[1].kind, FileKind::Missing);
    assert!(matches!(st[2].kind, FileKind::Dir { .. }));
    assert_eq!(std::fs::read(&target).expect("local read"), b"hello\n");
    // No temp file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pgha-tmp"))
        .collect();
    assert!(leftovers.is_empty());

    // Atomic install: a reader running concurrently sees the old or the new file, never a part.
    let a = vec![b'a'; 2_000_000];
    let b = vec![b'b'; 2_000_000];
    transport::install(t, &target, &a, "root", "root", 0o644)
        .await
        .expect("installs");
    let (ha, hb) = (sha(&a), sha(&b));
    let writer = async {
        for i in 0..12 {
            let content = if i % 2 == 0 { &b } else { &a };
            transport::install(t, &target, content, "root", "root", 0o644)
                .await
                .expect("installs");
        }
    };
    let reader = async {
        let mut seen = Vec::new();
        for _ in 0..40 {
            let out = t
                .exec(&Cmd::new("sha256sum").arg(&target), None, T)
                .await
                .expect("reads");
            seen.push(out.stdout_text().split_whitespace().next().unwrap_or("").to_string());
        }
        seen
    };
    let ((), seen) = tokio::join!(writer, reader);
    for h in &seen {
        assert!(h == &ha || h == &hb, "a reader saw a partial file: {h}");
    }

    // A validated install: a failing check keeps the old file; a passing one installs.
    let before = std::fs::read(&target).expect("read");
    let err = transport::install_checked(
        t,
        &target,
        b"bad\n",
        "root",
        "root",
        0o644,
        &["grep".into(), "-q".into(), "good".into(), "{}".into()],
    )
    .await
    .expect_err("validation fails");
    assert!(err.to_string().contains("failed validation"), "{err}");
    assert_eq!(std::fs::read(&target).expect("read"), before, "the old file is kept");
    transport::install_checked(
        t,
        &target,
        b"good\n",
        "root",
        "root",
        0o644,
        &["grep".into(), "-q".into(), "good".into(), "{}".into()],
    )
    .await
    .expect("validation passes");
    assert_eq!(std::fs::read(&target).expect("read"), b"good\n");

    // Installing into a missing directory fails with the host named, and leaves nothing.
    let err = transport::install(
        t,
        &sshd.path("nodir/x").display().to_string(),
        b"x",
        "root",
        "root",
        0o600,
    )
    .await
    .expect_err("no directory");
    assert!(err.to_string().starts_with("testhost:"), "{err}");

    // Many commands at once (more than sshd's MaxSessions) all complete.
    let many: Vec<_> = (0..40)
        .map(|i| {
            let c = Cmd::new("echo").arg(i.to_string());
            async move { t.exec(&c, None, T).await }
        })
        .collect();
    for (i, r) in futures::future::join_all(many).await.into_iter().enumerate() {
        assert_eq!(r.expect("runs").stdout_text().trim(), i.to_string());
    }

    // A command over its timeout is reported, naming the host.
    let err = t
        .exec(&Cmd::new("sleep").arg("5"), None, Duration::from_secs(1))
        .await
        .expect_err("times out");
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("testhost"));

    conn.close().await.expect("closes cleanly");
    // A closed connection runs nothing (each transport, no exception).
    let after = t.exec(&Cmd::new("true"), None, T).await;
    assert!(after.is_err(), "{kind:?}: a command ran after close: {after:?}");
}

async fn host_keys(kind: Kind) {
    let sshd = Sshd::start();
    // Unknown key: refused under strict checking, naming the host.
    std::fs::write(sshd.path("known_hosts"), "").expect("empty known_hosts");
    let err = transport::connect(kind, sshd.endpoint()).await.err().expect("refused");
    assert!(
        matches!(&err, TransportError::HostKey { what, .. } if what == "not known"),
        "{err}"
    );
    assert!(err.to_string().starts_with("testhost:"), "{err}");
    // Accept-new learns it, then strict checking passes.
    let mut ep = sshd.endpoint();
    ep.accept_new_host_keys = true;
    transport::connect(kind, ep)
        .await
        .expect("accept-new connects")
        .close()
        .await
        .expect("close");
    assert!(
        std::fs::read_to_string(sshd.path("known_hosts"))
            .expect("read")
            .contains("ssh-ed25519")
    );
    transport::connect(kind, sshd.endpoint())
        .await
        .expect("now known")
        .close()
        .await
        .expect("close");
    // Changed key: refused, even with accept-new.
    keygen(&sshd.path("other_key"));
    let other = std::fs::read_to_string(sshd.path("other_key.pub")).expect("other");
    std::fs::write(sshd.path("known_hosts"), format!("[127.0.0.1]:{} {other}", sshd.port)).expect("write");
    let mut ep = sshd.endpoint();
    ep.accept_new_host_keys = true;
    let err = transport::connect(kind, ep).await.err().expect("refused");
    assert!(matches!(&err, TransportError::HostKey { .. }), "{err}");
    assert!(err.to_string().contains("testhost"), "{err}");
}

async fn unreachable(kind: Kind) {
    let sshd = Sshd::start();
    let mut ep = sshd.endpoint();
    ep.port = free_port();
    ep.name = "ghost".into();
    let err = transport::connect(kind, ep).await.err().expect("nothing listens");
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
    assert!(err.to_string().starts_with("ghost: cannot connect"), "{err}");
}

async fn become_root(kind: Kind) {
    // Root with become: `sudo -n` must run non-interactively (the lab tests exercise a non-root
    // user with passwordless sudo).
    let sshd = Sshd::start();
    let mut ep = sshd.endpoint();
    ep.become_ = true;
    let conn = transport::connect(kind, ep).await.expect("connects");
    let out = conn.exec(&Cmd::new("id").arg("-u"), None, T).await.expect("runs");
    assert_eq!(
        out.stdout_text().trim(),
        "0",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conn.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_conformance() {
    conformance(Kind::Openssh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_conformance() {
    conformance(Kind::Russh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_host_keys() {
    host_keys(Kind::Openssh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_host_keys() {
    host_keys(Kind::Russh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_unreachable() {
    unreachable(Kind::Openssh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_unreachable() {
    unreachable(Kind::Russh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_become() {
    become_root(Kind::Openssh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn russh_become() {
    become_root(Kind::Russh).await;
}
