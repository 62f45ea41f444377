//! Connections as libpq users expect them: the `PG*` environment variables and connection
//! files, passwords (in the URL, `PGPASSWORD`, the password file), TLS modes, certificates,
//! and errors an operator can act on.
//!
//! Besides the shared clusters, two of their own: one that wants a password over TCP, and one
//! that accepts TCP only over TLS (its pg_hba.conf rejects plain connections, so any
//! connection that works there used TLS). Every run gets an empty `HOME` (`util::pgcopy()`
//! sees to that), so the runner's `~/.pgpass` and `~/.postgresql/root.crt` never take part.

use crate::util::{
    self, assert_exit, both, copy_to, exit, pair, scratch_dir, test_name, Cluster, ClusterOptions,
    Output, TestDb,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The password of the `app` role; distinctive, so finding it in output means a leak.
const PASSWORD: &str = "Pw-7f3a-pgcopy-Leak-Check";

/// `--parallel 2` for the copies here: two lanes, so the readers' and writers' own sessions
/// connect too.
const TWO_LANES: &[&str] = &["--parallel", "2"];

/// `pgcopy list --source CONN`: the cheapest command that connects.
fn list(conn: &str) -> Command {
    let mut cmd = util::pgcopy();
    cmd.args(["list", "--source", conn]);
    cmd
}

#[track_caller]
fn assert_lists(out: &Output, table: &str) {
    assert_exit!(out, exit::SUCCESS);
    assert!(out.stdout.contains(table), "{table} is not listed:{out:?}");
}

#[track_caller]
fn assert_fails_saying(out: &Output, words: &str) {
    assert_exit!(out, exit::USAGE);
    assert!(
        out.stderr.contains(words),
        "the error does not say {words:?}:{out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------------------------

#[test]
fn pg_variables_fill_what_the_connection_string_leaves_out() {
    let db = util::source().create_db(&test_name!());
    db.exec("CREATE TABLE env_marker (a int)");
    let port = db.port.to_string();

    // Only the database in the string.
    let out = util::run(
        list(&format!("dbname={}", db.name))
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", &port)
            .env("PGUSER", "postgres"),
    );
    assert_lists(&out, "env_marker");

    // Nothing at all in the string.
    let out = util::run(
        list("")
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", &port)
            .env("PGUSER", "postgres")
            .env("PGDATABASE", &db.name),
    );
    assert_lists(&out, "env_marker");

    // A socket directory in PGHOST; libpq never uses TLS on a socket, whatever PGSSLMODE says.
    let out = util::run(
        list("")
            .env("PGHOST", db.socket_dir())
            .env("PGPORT", &port)
            .env("PGUSER", "postgres")
            .env("PGDATABASE", &db.name)
            .env("PGSSLMODE", "require"),
    );
    assert_lists(&out, "env_marker");

    // The string wins: PGDATABASE names a database that does not exist.
    let out = util::run(
        list(&format!("postgres://postgres@127.0.0.1:{port}/{}", db.name))
            .env("PGDATABASE", "no_such_database")
            .env("PGPORT", "1"),
    );
    assert_lists(&out, "env_marker");
}

#[test]
fn reads_connections_from_files_and_the_environment() {
    let (src, dst) = pair!();
    both(&src, &dst, "CREATE TABLE t (id int)");
    src.exec("INSERT INTO t SELECT generate_series(1, 10)");
    let dir = util::scratch_dir("conn-files");
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    let source_file = dir.join("source.conn");
    std::fs::write(&source_file, format!("# the source\n\n{}\n", src.url())).expect("writing");

    let out = util::run(
        util::pgcopy()
            .args(["copy", "--yes", "--source-file"])
            .arg(&source_file)
            .env("PGCOPY_DEST", dst.url()),
    );
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dst.count("t"), 10);

    let out = util::run(
        util::pgcopy()
            .args(["list", "--source-file"])
            .arg(dir.join("missing.conn")),
    );
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("missing.conn"), "{out:?}");

    // A path that cannot be read as a file (root reads any file, so use a directory).
    let out = util::run(util::pgcopy().args(["list", "--source-file"]).arg(&dir));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("reading --source-file"), "{out:?}");
    std::fs::remove_dir_all(&dir).expect("removing the temp dir");

    let out = util::run(util::pgcopy().args(["copy", "--yes", "--dest", &dst.url()]));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("PGCOPY_SOURCE"), "{out:?}");
}

#[test]
fn a_refused_connection_says_connection_refused() {
    // A port that nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port();
    let out = util::run(&mut list(&format!(
        "postgres://postgres@127.0.0.1:{port}/x"
    )));
    assert_fails_saying(&out, "connection refused");
    assert!(out.stderr.contains(&format!("127.0.0.1:{port}")), "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Passwords
// ---------------------------------------------------------------------------------------------

/// A cluster that wants a SCRAM password over TCP from `app`, a superuser (so `copy` may do
/// everything it does), and its database `passwords` with one table.
fn password_cluster() -> &'static (Cluster, TestDb) {
    static CLUSTER: OnceLock<(Cluster, TestDb)> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let cluster = util::start_cluster(
            ClusterOptions::default()
                .conf("password_encryption", "scram-sha-256")
                .hba("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"),
        );
        let db = cluster.create_db("passwords");
        db.exec(&format!(
            "CREATE ROLE app LOGIN SUPERUSER PASSWORD '{PASSWORD}';
             CREATE TABLE password_marker (id int PRIMARY KEY, note text);
             INSERT INTO password_marker SELECT i, 'row ' || i FROM generate_series(1, 100) i;"
        ));
        (cluster, db)
    })
}

/// `postgres://app[:password]@127.0.0.1:PORT/db`.
fn app_url(db: &TestDb, password: Option<&str>) -> String {
    let password = password.map(|p| format!(":{p}")).unwrap_or_default();
    format!("postgres://app{password}@127.0.0.1:{}/{}", db.port, db.name)
}

/// Writes a password file with the given mode, a line that does not match before the one
/// that does.
fn password_file(name: &str, db: &TestDb, mode: u32) -> PathBuf {
    let dir = scratch_dir("pgpass");
    std::fs::create_dir_all(&dir).expect("creating the password file directory");
    let path = dir.join(name);
    let text = format!(
        "# a comment\n\
         127.0.0.1:{port}:{db}:someone_else:wrong\n\
         127.0.0.1:{port}:*:app:{PASSWORD}\n",
        port = db.port,
        db = db.name,
    );
    std::fs::write(&path, text).expect("writing the password file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .expect("setting the password file's mode");
    path
}

#[test]
fn connects_with_the_password_in_the_url() {
    let (_, db) = password_cluster();
    let out = util::run(&mut list(&app_url(db, Some(PASSWORD))));
    assert_lists(&out, "password_marker");
}

#[test]
fn connects_with_pgpassword() {
    let (_, db) = password_cluster();
    let out = util::run(list(&app_url(db, None)).env("PGPASSWORD", PASSWORD));
    assert_lists(&out, "password_marker");
}

#[test]
fn connects_with_a_password_file_of_mode_0600() {
    let (_, db) = password_cluster();
    let file = password_file("mode-0600", db, 0o600);
    let out = util::run(list(&app_url(db, None)).env("PGPASSFILE", &file));
    assert_lists(&out, "password_marker");
    assert!(!out.stderr.contains("group or world"), "{out:?}");

    // The same file as `passfile` in the string.
    let url = format!("{}?passfile={}", app_url(db, None), file.display());
    let out = util::run(&mut list(&url));
    assert_lists(&out, "password_marker");
}

#[test]
fn ignores_a_password_file_others_can_read_and_warns() {
    let (_, db) = password_cluster();
    let file = password_file("mode-0644", db, 0o644);
    let out = util::run(list(&app_url(db, None)).env("PGPASSFILE", &file));
    assert_fails_saying(&out, "no password supplied");
    assert!(
        out.stderr.contains("has group or world access")
            && out
                .stderr
                .contains("permissions should be u=rw (0600) or less"),
        "no warning about the file's permissions:{out:?}"
    );
}

#[test]
fn a_wrong_password_fails_with_exit_2_and_says_so() {
    let (_, db) = password_cluster();
    let wrong = "Wrong-9c1e-Leak-Check";
    let out = util::run(&mut list(&app_url(db, Some(wrong))));
    assert_fails_saying(&out, "password authentication failed for user \"app\"");
    assert!(
        !out.stderr.contains(wrong) && !out.stdout.contains(wrong),
        "{out:?}"
    );
}

#[test]
fn never_prints_the_password() {
    let (cluster, source) = password_cluster();
    let dest = cluster.create_db(&test_name!());
    dest.exec("CREATE TABLE password_marker (id int PRIMARY KEY, note text)");
    let copy = |dest: &TestDb| {
        util::run(
            util::pgcopy()
                .args(["copy", "--yes", "--source"])
                .arg(app_url(source, Some(PASSWORD)))
                .arg("--dest")
                .arg(app_url(dest, Some(PASSWORD)))
                // Everything pgcopy and its libraries log.
                .env("RUST_LOG", "trace"),
        )
    };
    let leaked = |out: &Output| out.stdout.contains(PASSWORD) || out.stderr.contains(PASSWORD);

    let out = copy(&dest);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dest.count("password_marker"), 100);
    assert!(!leaked(&out), "the password was printed:{out:?}");

    // A failing copy: the destination lacks the table.
    let empty = cluster.create_db(&test_name!("empty"));
    let out = copy(&empty);
    assert_exit!(out, exit::USAGE);
    assert!(!leaked(&out), "the password was printed:{out:?}");

    // A failing connection, with the password in the string.
    let out = util::run(&mut list(&format!(
        "host=127.0.0.1 port={} user=app password={PASSWORD} dbname=no_such_database",
        source.port
    )));
    assert_fails_saying(&out, "no_such_database");
    assert!(!leaked(&out), "the password was printed:{out:?}");
}

#[test]
fn never_prints_the_password_of_a_connection() {
    let (src, _dst) = pair!();
    let url = src.url().replace("postgres@", "postgres:hunter2secret@");
    let out = copy_to(
        &url,
        "postgres://someone:hunter2secret@127.0.0.1:1/nowhere?connect_timeout=2",
        &[],
    );
    assert_exit!(out, exit::USAGE);
    assert!(
        !out.stdout.contains("hunter2secret") && !out.stderr.contains("hunter2secret"),
        "{out:?}"
    );
}

/// The readers speak the wire protocol themselves (src/wire.rs): every way the server may ask
/// a client in must work for them too, not only SCRAM (above) and TLS (below).
#[test]
fn copies_from_a_source_that_asks_for_md5_or_plain_passwords_or_over_a_unix_socket() {
    let cluster = util::start_cluster(
        ClusterOptions::default()
            .conf("password_encryption", "md5")
            .hba(
                "local all all trust\n\
                 host all plainuser 127.0.0.1/32 password\n\
                 host all all 127.0.0.1/32 md5\n",
            ),
    );
    let source = cluster.create_db(&test_name!("source"));
    source.exec(&format!(
        "CREATE ROLE md5user LOGIN SUPERUSER PASSWORD '{PASSWORD}';
         CREATE ROLE plainuser LOGIN SUPERUSER PASSWORD '{PASSWORD}';
         CREATE TABLE auth_marker (id int PRIMARY KEY);
         INSERT INTO auth_marker SELECT generate_series(1, 70);"
    ));
    let dest = cluster.create_db(&test_name!("dest"));
    dest.exec("CREATE TABLE auth_marker (id int PRIMARY KEY)");
    let socket = |db: &TestDb| {
        format!(
            "host={} port={} user=postgres dbname={}",
            cluster.socket_dir().display(),
            db.port,
            db.name
        )
    };
    let tcp = |user: &str| {
        format!(
            "postgres://{user}:{PASSWORD}@127.0.0.1:{}/{}",
            source.port, source.name
        )
    };
    for from in [tcp("md5user"), tcp("plainuser"), socket(&source)] {
        dest.exec("TRUNCATE auth_marker");
        let out = copy_to(&from, &socket(&dest), TWO_LANES);
        assert_exit!(out, exit::SUCCESS, "{from}");
        assert_eq!(dest.count("auth_marker"), 70, "{from}");
    }
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// A cluster with TLS on and plain TCP refused, the CA that signed its certificate (issued for
/// `localhost` only), another CA, and a client certificate for the role `certuser`, which may
/// log in only with it.
struct TlsCluster {
    cluster: Cluster,
    db: TestDb,
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl TlsCluster {
    /// `postgres://USER@HOST:PORT/DB?QUERY`.
    fn url(&self, user: &str, host: &str, query: &str) -> String {
        format!(
            "postgres://{user}@{host}:{}/{}?{query}",
            self.cluster.port, self.db.name
        )
    }
}

fn tls_cluster() -> &'static TlsCluster {
    static CLUSTER: OnceLock<TlsCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = certificates();
        let cluster = util::start_cluster(
            with_tls(ClusterOptions::default())
                .conf("ssl_ca_file", "ca.crt")
                .file("ca.crt", read(&dir.join("ca.crt")))
                .hba(
                    "local all all trust\n\
                     hostssl all certuser 127.0.0.1/32 cert\n\
                     hostssl all all 127.0.0.1/32 trust\n\
                     hostnossl all all 127.0.0.1/32 reject\n",
                ),
        );
        let db = cluster.create_db("tls");
        db.exec(
            "CREATE ROLE certuser LOGIN SUPERUSER;
             CREATE TABLE tls_marker (id int PRIMARY KEY);
             INSERT INTO tls_marker SELECT generate_series(1, 50);",
        );
        TlsCluster {
            cluster,
            db,
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    })
}

/// The certificates of `make_certificates`, made once.
fn certificates() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("certificates");
        make_certificates(&dir);
        dir
    })
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// TLS on, with the server certificate for `localhost`.
fn with_tls(options: ClusterOptions) -> ClusterOptions {
    let dir = certificates();
    options
        .conf("ssl", "on")
        .conf("ssl_cert_file", "server.crt")
        .conf("ssl_key_file", "server.key")
        .file("server.crt", read(&dir.join("server.crt")))
        .file("server.key", read(&dir.join("server.key")))
}

/// The extensions of the test certificates, for `openssl -config/-extfile`.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
";

/// Two CAs, a server certificate for `localhost` (not 127.0.0.1) signed by the first, and a
/// client certificate for `certuser` signed by it too. P-256 keys: quick to make.
fn make_certificates(dir: &Path) {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!(
            "the TLS tests make their certificates with the `openssl` command-line tool, which \
             is missing: apt-get install openssl. They never skip."
        );
    }
    std::fs::create_dir_all(dir).expect("creating the certificate directory");
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).expect("writing openssl.cnf");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, subject) in [("ca", "/CN=pgcopy test CA"), ("other-ca", "/CN=another CA")] {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
        ];
        args.extend(new_key);
        args.extend([
            "-keyout", &key, "-out", &crt, "-days", "3", "-subj", subject,
        ]);
        openssl(&args);
    }
    for (name, subject, serial) in [
        ("server", "/CN=localhost", "2"),
        ("client", "/CN=certuser", "3"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let mut args = vec!["req", "-new", "-config", "openssl.cnf"];
        args.extend(new_key);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(&args);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            "3",
            "-extfile",
            "openssl.cnf",
            "-extensions",
            name,
            "-out",
            &crt,
        ]);
    }
}

#[test]
fn sslmode_require_and_the_default_prefer_connect_over_tls() {
    let tls = tls_cluster();
    // pg_hba.conf rejects plain TCP, so each of these used TLS.
    let out = util::run(&mut list(&tls.url(
        "postgres",
        "127.0.0.1",
        "sslmode=require",
    )));
    assert_lists(&out, "tls_marker");
    let out = util::run(&mut list(&tls.url("postgres", "127.0.0.1", "")));
    assert_lists(&out, "tls_marker");
    let out = util::run(list(&tls.url("postgres", "127.0.0.1", "")).env("PGSSLMODE", "allow"));
    assert_lists(&out, "tls_marker");
}

/// `target_session_attrs=read-write` with two hosts, the first of which only reads: every
/// session, the readers' own included, goes to the second, where the snapshot is.
#[test]
fn target_session_attrs_sends_every_session_to_the_same_server() {
    let read_only = util::start_cluster(ClusterOptions::default());
    let replica = read_only.create_db(&test_name!());
    replica.exec(&format!(
        "CREATE TABLE attrs_marker (id int PRIMARY KEY);
         INSERT INTO attrs_marker SELECT generate_series(1, 5);
         ALTER DATABASE {} SET default_transaction_read_only = on;",
        replica.quoted_name()
    ));
    let primary = util::source().create_db(&test_name!());
    primary.exec(
        "CREATE TABLE attrs_marker (id int PRIMARY KEY);
         INSERT INTO attrs_marker SELECT generate_series(1, 20);",
    );
    let dest = util::dest().create_db(&test_name!());
    dest.exec("CREATE TABLE attrs_marker (id int PRIMARY KEY)");
    let source = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname={} \
         target_session_attrs=read-write",
        replica.port, primary.port, primary.name
    );
    let out = copy_to(&source, &dest.url(), TWO_LANES);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dest.count("attrs_marker"), 20, "copied from the primary");
}

/// `channel_binding=require`: SCRAM bound to the TLS session, on every session, the readers'
/// own included (a wrong binding would make the server refuse the login).
#[test]
fn copies_with_channel_binding_required() {
    let cluster = util::start_cluster(
        with_tls(ClusterOptions::default())
            .conf("password_encryption", "scram-sha-256")
            .hba("local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n"),
    );
    let source = cluster.create_db(&test_name!("source"));
    source.exec(&format!(
        "CREATE ROLE binder LOGIN SUPERUSER PASSWORD '{PASSWORD}';
         CREATE TABLE bound_marker (id int PRIMARY KEY);
         INSERT INTO bound_marker SELECT generate_series(1, 30);"
    ));
    let dest = cluster.create_db(&test_name!("dest"));
    dest.exec("CREATE TABLE bound_marker (id int PRIMARY KEY)");
    let url = |db: &TestDb, binding: &str| {
        format!(
            "postgres://binder:{PASSWORD}@127.0.0.1:{}/{}?sslmode=require&channel_binding={binding}",
            db.port, db.name
        )
    };
    let out = copy_to(&url(&source, "require"), &url(&dest, "require"), TWO_LANES);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dest.count("bound_marker"), 30);
}

/// libpq's two fallbacks: `prefer` tries TLS first and goes on without it when the server
/// refuses TLS connections; `allow` tries without TLS first (the TLS cluster above refuses
/// that, and `allow` still connects there, through TLS).
#[test]
fn prefer_goes_on_without_tls_when_the_server_refuses_tls_connections() {
    let cluster = util::start_cluster(with_tls(ClusterOptions::default()).hba(
        "local all all trust\n\
         hostssl all all 127.0.0.1/32 reject\n\
         hostnossl all all 127.0.0.1/32 trust\n",
    ));
    let source = cluster.create_db(&test_name!("source"));
    source.exec(
        "CREATE TABLE plain_marker (id int PRIMARY KEY);
         INSERT INTO plain_marker SELECT generate_series(1, 40);",
    );
    let dest = cluster.create_db(&test_name!("dest"));
    dest.exec("CREATE TABLE plain_marker (id int PRIMARY KEY)");

    let out = util::run(&mut list(&source.url()));
    assert_lists(&out, "plain_marker");
    assert!(out.stderr.contains("connecting without TLS"), "{out:?}");
    // The readers' and writers' sessions follow: the copy goes through without TLS too.
    let out = copy_to(&source.url(), &dest.url(), TWO_LANES);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dest.count("plain_marker"), 40);

    let out = util::run(list(&source.url()).env("PGSSLMODE", "allow"));
    assert_lists(&out, "plain_marker");
    assert!(
        !out.stderr.contains("TLS"),
        "allow tried plain first: {out:?}"
    );
    let out = util::run(list(&source.url()).env("PGSSLMODE", "require"));
    assert_fails_saying(&out, "pg_hba.conf rejects connection");
}

#[test]
fn sslmode_disable_is_refused_by_a_server_that_wants_tls() {
    let tls = tls_cluster();
    let out = util::run(&mut list(&tls.url(
        "postgres",
        "127.0.0.1",
        "sslmode=disable",
    )));
    // The server's words: "no encryption" from PostgreSQL 14 on, "SSL off" before.
    assert_fails_saying(&out, "pg_hba.conf");
    assert!(out.stderr.contains("only over TLS"), "{out:?}");
}

#[test]
fn sslmode_require_fails_against_a_server_without_tls() {
    let db = util::source().create_db(&test_name!());
    let out = util::run(&mut list(&format!("{}?sslmode=require", db.url())));
    assert_fails_saying(&out, "the server does not support TLS");
}

#[test]
fn verify_full_connects_to_the_host_its_certificate_names() {
    let tls = tls_cluster();
    let query = format!("sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let out = util::run(&mut list(&tls.url("postgres", "localhost", &query)));
    assert_lists(&out, "tls_marker");

    // The same from PGSSLMODE and PGSSLROOTCERT, with a key=value string.
    let conn = format!(
        "host=localhost port={} user=postgres dbname={}",
        tls.cluster.port, tls.db.name
    );
    let out = util::run(
        list(&conn)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", &tls.ca),
    );
    assert_lists(&out, "tls_marker");

    // Without a root certificate there is nothing to verify against.
    let out = util::run(list(&conn).env("PGSSLMODE", "verify-full"));
    assert_fails_saying(&out, "sslrootcert");
}

#[test]
fn verify_full_refuses_a_certificate_signed_by_another_ca() {
    let tls = tls_cluster();
    let query = format!("sslmode=verify-full&sslrootcert={}", tls.other_ca.display());
    let out = util::run(&mut list(&tls.url("postgres", "localhost", &query)));
    assert_fails_saying(
        &out,
        "the server's certificate is not signed by a CA in sslrootcert",
    );

    // require with a root certificate checks the chain as verify-ca does.
    let query = format!("sslmode=require&sslrootcert={}", tls.other_ca.display());
    let out = util::run(&mut list(&tls.url("postgres", "localhost", &query)));
    assert_fails_saying(&out, "not signed by a CA");
}

#[test]
fn verify_ca_skips_the_host_name_that_verify_full_checks() {
    let tls = tls_cluster();
    // The certificate names localhost only.
    let query = format!("sslmode=verify-ca&sslrootcert={}", tls.ca.display());
    let out = util::run(&mut list(&tls.url("postgres", "127.0.0.1", &query)));
    assert_lists(&out, "tls_marker");

    let query = format!("sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let out = util::run(&mut list(&tls.url("postgres", "127.0.0.1", &query)));
    assert_fails_saying(&out, "does not name the host");
}

#[test]
fn logs_in_with_a_client_certificate() {
    let tls = tls_cluster();
    let query = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        tls.ca.display(),
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let out = util::run(&mut list(&tls.url("certuser", "localhost", &query)));
    assert_lists(&out, "tls_marker");

    // Without it the server refuses certuser.
    let out = util::run(&mut list(&tls.url(
        "certuser",
        "localhost",
        "sslmode=require",
    )));
    assert_exit!(out, exit::USAGE);
    assert!(out.stderr.contains("certificate"), "{out:?}");
}

#[test]
fn copies_over_verified_tls() {
    let tls = tls_cluster();
    let dest = tls.cluster.create_db(&test_name!());
    dest.exec("CREATE TABLE tls_marker (id int PRIMARY KEY)");
    let query = format!("sslmode=verify-full&sslrootcert={}", tls.ca.display());
    let url = |db: &TestDb| {
        format!(
            "postgres://postgres@localhost:{}/{}?{query}",
            db.port, db.name
        )
    };
    // The source as certuser, who may log in only with its client certificate: the readers'
    // own sessions present it too.
    let source = format!(
        "postgres://certuser@localhost:{}/{}?{query}&sslcert={}&sslkey={}",
        tls.db.port,
        tls.db.name,
        tls.client_cert.display(),
        tls.client_key.display()
    );
    let out = copy_to(&source, &url(&dest), TWO_LANES);
    assert_exit!(out, exit::SUCCESS);
    assert_eq!(dest.count("tls_marker"), 50);
}

#[test]
fn prefer_falls_back_to_plain_when_the_tls_handshake_fails() {
    // The server offers TLS, but only a version rustls refuses; plain TCP is trusted.
    let cluster = util::start_cluster(
        with_tls(ClusterOptions::default())
            .conf("ssl_min_protocol_version", "TLSv1")
            .conf("ssl_max_protocol_version", "TLSv1.1"),
    );
    let db = cluster.create_db(&test_name!());
    db.exec("CREATE TABLE fallback_marker (a int)");
    let out = util::run(&mut list(&db.url()));
    assert_lists(&out, "fallback_marker");
    assert!(out.stderr.contains("connecting without TLS"), "{out:?}");

    let out = util::run(&mut list(&format!("{}?sslmode=require", db.url())));
    assert_fails_saying(&out, "the server offers no TLS version pgcopy speaks");
}
